"""Alert instances per (rule, sensor): pending → firing → resolved, driven once per closed window.

Windows are 10 s long and contiguous; window ``i`` covers ``[T0 + 10 s·i, T0 + 10 s·(i+1))``. A
condition true in a window has held since the window's start, so with ``for_s=20`` an instance
that turns true in window 0 fires at the end of window 1, 20 s after it began.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from plantwatch.alert import AlertStates, Rule, Transition

T0 = 1_800_000_000_000
W = 10_000


def step(
    states: AlertStates,
    rule: Rule,
    i: int,
    levels: Sequence[int] | np.ndarray,
    *,
    sensors: Sequence[int] | np.ndarray | None = None,
    size_ms: int = W,
) -> list[Transition]:
    """Window ``i`` for the given sensors (default 0..n-1). Value 100 + i, threshold 7.1,
    score 1.5 × level, so a transition shows which window it came from."""
    lv = np.asarray(levels, np.int8)
    n = len(lv)
    s = np.arange(n, dtype=np.int64) if sensors is None else np.asarray(sensors, np.int64)
    start = np.full(n, T0 + i * size_ms, np.int64)
    return states.evaluate(
        rule,
        sensor=s,
        start_ms=start,
        end_ms=start + size_ms,
        level=lv,
        value=np.full(n, 100.0 + i),
        threshold=np.full(n, 7.1),
        score=lv.astype(np.float64) * 1.5,
    )


def run(rule: Rule, levels: Sequence[int]) -> list[tuple[int, str, int, int]]:
    """One sensor through consecutive windows: (window, state, level, window active since)."""
    states = AlertStates([rule])
    out = []
    for i, lv in enumerate(levels):
        for t in step(states, rule, i, [lv]):
            assert t.ts_ms == T0 + (i + 1) * W  # transitions happen at the window's end
            since = (t.active_since_ms - T0) // W
            out.append((i, t.state, t.level, since))
    return out


def rule(for_s: float = 0.0, resolve_after_s: float = 0.0, min_level: int = 1) -> Rule:
    return Rule("r", "static_limit", for_s, resolve_after_s, min_level)


# -- pending → firing ---------------------------------------------------------------------------


def test_fires_only_after_for() -> None:
    # true from window 0; held 10 s at the end of window 0, 20 s at the end of window 1
    assert run(rule(for_s=20), [1, 1, 1, 1]) == [(1, "firing", 1, 0)]


def test_a_break_before_for_resets_pending() -> None:
    assert run(rule(for_s=20), [1, 0, 1, 1]) == [(3, "firing", 1, 2)]
    assert run(rule(for_s=20), [1, 0, 1, 0, 1, 0]) == []


def test_for_zero_fires_on_the_first_true_window() -> None:
    assert run(rule(for_s=0), [0, 1, 1]) == [(1, "firing", 1, 1)]


def test_for_is_not_truncated() -> None:
    # for 2.01 s = 2010 ms: a window of 2009 ms is not enough, one of 2010 ms is
    r = rule(for_s=2.01)
    short, exact = AlertStates([r]), AlertStates([r])
    assert step(short, r, 0, [1], size_ms=2_009) == []
    assert [t.state for t in step(exact, r, 0, [1], size_ms=2_010)] == ["firing"]


def test_min_level_two_ignores_warnings() -> None:
    r = rule(for_s=0, min_level=2)
    assert run(r, [1, 1, 1]) == []
    assert run(r, [1, 2]) == [(1, "firing", 2, 1)]


# -- severity -----------------------------------------------------------------------------------


def test_level_is_the_highest_seen_while_pending() -> None:
    assert run(rule(for_s=20), [2, 1]) == [(1, "firing", 2, 0)]
    assert run(rule(for_s=20), [1, 1]) == [(1, "firing", 1, 0)]
    assert run(rule(for_s=30), [1, 2, 1]) == [(2, "firing", 2, 0)]


def test_a_break_forgets_the_pending_level() -> None:
    assert run(rule(for_s=20), [2, 0, 1, 1]) == [(3, "firing", 1, 2)]


def test_a_new_episode_starts_from_level_zero() -> None:
    assert run(rule(), [2, 0, 1]) == [
        (0, "firing", 2, 0),
        (1, "resolved", 2, 0),
        (2, "firing", 1, 2),
    ]


# -- firing → resolved --------------------------------------------------------------------------


def test_resolves_only_after_resolve_after_of_clear_windows() -> None:
    # clear since the start of window 1: 10 s, 20 s, 30 s at the ends of windows 1, 2, 3
    assert run(rule(resolve_after_s=30), [1, 0, 0, 0, 0]) == [
        (0, "firing", 1, 0),
        (3, "resolved", 1, 0),
    ]


def test_a_true_window_restarts_the_clear_time() -> None:
    assert run(rule(resolve_after_s=30), [1, 0, 0, 1, 0, 0, 0]) == [
        (0, "firing", 1, 0),
        (6, "resolved", 1, 0),
    ]


def test_resolve_after_zero_resolves_on_the_first_clear_window() -> None:
    assert run(rule(), [1, 1, 0]) == [(0, "firing", 1, 0), (2, "resolved", 1, 0)]


def test_fires_again_after_resolution() -> None:
    assert run(rule(for_s=20), [1, 1, 0, 1, 1, 1]) == [
        (1, "firing", 1, 0),
        (2, "resolved", 1, 0),
        (4, "firing", 1, 3),
    ]


def test_min_level_two_counts_warnings_as_clear() -> None:
    assert run(rule(resolve_after_s=10, min_level=2), [2, 1, 1]) == [
        (0, "firing", 2, 0),
        (1, "resolved", 2, 0),
    ]


def test_transition_carries_the_window_it_happened_in() -> None:
    r = rule(for_s=10, resolve_after_s=10)
    states = AlertStates([r])
    (fired,) = step(states, r, 0, [2], sensors=[4])
    assert fired == Transition(
        rule=r,
        sensor=4,
        state="firing",
        ts_ms=T0 + W,
        active_since_ms=T0,
        level=2,
        value=100.0,
        threshold=7.1,
        score=3.0,
    )
    (resolved,) = step(states, r, 1, [0], sensors=[4])
    assert (resolved.state, resolved.ts_ms, resolved.active_since_ms) == (
        "resolved",
        T0 + 2 * W,
        T0,
    )
    assert (resolved.value, resolved.score) == (101.0, 0.0)


# -- many instances -----------------------------------------------------------------------------


def test_instances_are_independent_per_sensor() -> None:
    r = rule(for_s=20)
    states = AlertStates([r])
    seq = {0: [1, 1, 1], 1: [0, 1, 1], 2: [1, 0, 1]}
    fired = []
    for i in range(3):
        for t in step(states, r, i, [seq[s][i] for s in (0, 1, 2)]):
            fired.append((i, t.sensor))
    assert fired == [(1, 0), (2, 1)]


def test_instances_are_independent_per_rule() -> None:
    fast = Rule("fast", "static_limit", for_s=0.0, resolve_after_s=0.0)
    slow = Rule("slow", "static_limit", for_s=20.0, resolve_after_s=0.0)
    critical = Rule("critical", "static_limit", min_level=2)
    states = AlertStates([fast, slow, critical])
    levels = [1, 1, 0]
    seen = []
    for i, lv in enumerate(levels):
        for r in states.rules_for("static_limit"):
            seen += [(i, t.rule.name, t.state) for t in step(states, r, i, [lv])]
    assert seen == [
        (0, "fast", "firing"),
        (1, "slow", "firing"),
        (2, "fast", "resolved"),
        (2, "slow", "resolved"),
    ]


def test_sparse_unordered_sensor_indexes() -> None:
    r = rule()
    states = AlertStates([r])
    ts = step(states, r, 0, [1, 0, 2], sensors=[900, 3, 41])
    assert [(t.sensor, t.level) for t in ts] == [(900, 1), (41, 2)]
    assert states.firing()["r"].tolist() == [41, 900]


def test_many_sensors_at_once() -> None:
    n = 1000
    r = rule(for_s=20, resolve_after_s=10)
    states = AlertStates([r])
    s = np.arange(n)
    # window 0: multiples of 5 warn, multiples of 7 are critical; window 1: the multiples of 3
    # among them drop out (pending broken); window 2: multiples of 7 are clear again
    w0 = np.where(s % 7 == 0, 2, np.where(s % 5 == 0, 1, 0))
    w1 = np.where(s % 3 == 0, 0, w0)
    w2 = np.where(s % 7 == 0, 0, w1)
    assert step(states, r, 0, w0) == []
    fired = step(states, r, 1, w1)
    expect = [i for i in range(n) if (i % 5 == 0 or i % 7 == 0) and i % 3 != 0]
    assert [t.sensor for t in fired] == expect
    assert all(t.state == "firing" for t in fired)
    assert all(t.level == (2 if t.sensor % 7 == 0 else 1) for t in fired)
    assert states.firing()["r"].tolist() == expect
    resolved = step(states, r, 2, w2)
    gone = [i for i in expect if i % 7 == 0]
    assert [(t.sensor, t.state) for t in resolved] == [(i, "resolved") for i in gone]
    assert states.firing()["r"].tolist() == [i for i in expect if i % 7 != 0]


def test_firing_reports_every_rule() -> None:
    a, b = Rule("a", "stuck"), Rule("b", "no_data")
    states = AlertStates([a, b])
    assert {k: v.tolist() for k, v in states.firing().items()} == {"a": [], "b": []}
    step(states, a, 0, [0, 1, 1])
    assert {k: v.tolist() for k, v in states.firing().items()} == {"a": [1, 2], "b": []}


def test_empty_input() -> None:
    r = rule()
    states = AlertStates([r])
    assert step(states, r, 0, []) == []
    assert states.firing()["r"].tolist() == []


def test_duplicate_rule_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="rule names must be unique"):
        AlertStates([Rule("x", "stuck"), Rule("x", "no_data")])


def test_rules_for_a_detector() -> None:
    a, b, c = Rule("a", "stuck"), Rule("b", "no_data"), Rule("c", "stuck", for_s=5.0)
    states = AlertStates([a, b, c])
    assert states.rules_for("stuck") == [a, c]
    assert states.rules_for("baseline") == []
