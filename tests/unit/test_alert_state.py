"""Alert instances per (rule, sensor): normal → pending → firing → recovering → normal, driven
once per closed window.

Windows are 10 s long and contiguous; window ``i`` covers ``[T0 + 10 s·i, T0 + 10 s·(i+1))``. A
condition true in a window has held since the window's start, so with ``for_s=20`` an instance
that turns true in window 0 fires at the end of window 1, 20 s after it began.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from plantwatch.alert import AlertStates, Level, Rule, Threshold, Transition
from plantwatch.alert.state import Instance

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
    hold: Sequence[bool] | np.ndarray | None = None,
) -> list[Transition]:
    """Window ``i`` for the given sensors (default 0..n-1); ``levels`` are the severity ranks a
    window breaches. Value 100 + i, threshold 7.1, so a transition shows its window."""
    lv = np.asarray(levels, np.int8)
    n = len(lv)
    s = np.arange(n, dtype=np.int64) if sensors is None else np.asarray(sensors, np.int64)
    start = np.full(n, T0 + i * size_ms, np.int64)
    return states.evaluate(
        rule,
        sensor=s,
        start_ms=start,
        end_ms=start + size_ms,
        enter=lv,
        hold=lv > 0 if hold is None else np.asarray(hold, np.bool_),
        value=np.full(n, 100.0 + i),
        threshold=np.full(n, 7.1),
    )


def run(
    rule: Rule, levels: Sequence[int], *, every: bool = False
) -> list[tuple[int, str, int, int]]:
    """One sensor through consecutive windows: (window, state, level, window active since);
    firing and resolved only, unless ``every``."""
    states = AlertStates([rule])
    out = []
    for i, lv in enumerate(levels):
        for t in step(states, rule, i, [lv]):
            if not every and t.state not in ("firing", "resolved"):
                continue
            assert t.ts_ms == T0 + (i + 1) * W  # transitions happen at the window's end
            since = (t.active_since_ms - T0) // W
            out.append((i, t.state, t.level, since))
    return out


def rule(for_s: float = 0.0, keep_firing_for_s: float = 0.0, name: str = "r") -> Rule:
    cond = Threshold("mean", (Level("info", high=1.0), Level("warning", high=2.0)))
    return Rule(name, cond, for_s=for_s, keep_firing_for_s=keep_firing_for_s)


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
    assert [t.state for t in step(short, r, 0, [1], size_ms=2_009)] == ["pending"]
    assert [t.state for t in step(exact, r, 0, [1], size_ms=2_010)] == ["firing"]


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


def test_resolves_only_after_keep_firing_for_of_clear_windows() -> None:
    # clear since the start of window 1: 10 s, 20 s, 30 s at the ends of windows 1, 2, 3
    assert run(rule(keep_firing_for_s=30), [1, 0, 0, 0, 0]) == [
        (0, "firing", 1, 0),
        (3, "resolved", 1, 0),
    ]


def test_a_true_window_restarts_the_clear_time() -> None:
    assert run(rule(keep_firing_for_s=30), [1, 0, 0, 1, 0, 0, 0]) == [
        (0, "firing", 1, 0),
        (3, "firing", 1, 0),  # back from recovering
        (6, "resolved", 1, 0),
    ]


def test_keep_firing_for_zero_resolves_on_the_first_clear_window() -> None:
    assert run(rule(), [1, 1, 0]) == [(0, "firing", 1, 0), (2, "resolved", 1, 0)]


def test_fires_again_after_resolution() -> None:
    assert run(rule(for_s=20), [1, 1, 0, 1, 1, 1]) == [
        (1, "firing", 1, 0),
        (2, "resolved", 1, 0),
        (4, "firing", 1, 3),
    ]


def test_transition_carries_the_window_it_happened_in() -> None:
    r = rule(for_s=10, keep_firing_for_s=20)
    states = AlertStates([r])
    (fired,) = step(states, r, 0, [2], sensors=[4])
    assert fired == Transition(
        rule=r,
        sensor=4,
        state="firing",
        previous="normal",
        ts_ms=T0 + W,
        active_since_ms=T0,
        level=2,
        value=100.0,
        threshold=7.1,
    )
    (recovering,) = step(states, r, 1, [0], sensors=[4])
    (resolved,) = step(states, r, 2, [0], sensors=[4])
    assert (recovering.state, recovering.previous) == ("recovering", "firing")
    assert (resolved.state, resolved.previous, resolved.ts_ms, resolved.active_since_ms) == (
        "resolved",
        "recovering",
        T0 + 3 * W,
        T0,
    )
    assert resolved.value == 102.0


# -- many instances -----------------------------------------------------------------------------


def test_instances_are_independent_per_sensor() -> None:
    r = rule(for_s=20)
    states = AlertStates([r])
    seq = {0: [1, 1, 1], 1: [0, 1, 1], 2: [1, 0, 1]}
    fired = []
    for i in range(3):
        for t in step(states, r, i, [seq[s][i] for s in (0, 1, 2)]):
            if t.state == "firing":
                fired.append((i, t.sensor))
    assert fired == [(1, 0), (2, 1)]


def test_instances_are_independent_per_rule() -> None:
    fast = rule(name="fast")
    slow = rule(for_s=20.0, name="slow")
    states = AlertStates([fast, slow])
    levels = [1, 1, 0]
    seen = []
    for i, lv in enumerate(levels):
        for r in (fast, slow):
            seen += [(i, t.rule.name, t.state) for t in step(states, r, i, [lv])]
    assert seen == [
        (0, "fast", "firing"),
        (0, "slow", "pending"),
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
    r = rule(for_s=20, keep_firing_for_s=10)
    states = AlertStates([r])
    s = np.arange(n)
    # window 0: multiples of 5 warn, multiples of 7 are critical; window 1: the multiples of 3
    # among them drop out (pending broken); window 2: multiples of 7 are clear again
    w0 = np.where(s % 7 == 0, 2, np.where(s % 5 == 0, 1, 0))
    w1 = np.where(s % 3 == 0, 0, w0)
    w2 = np.where(s % 7 == 0, 0, w1)
    assert {t.state for t in step(states, r, 0, w0)} == {"pending"}
    fired = [t for t in step(states, r, 1, w1) if t.state == "firing"]
    expect = [i for i in range(n) if (i % 5 == 0 or i % 7 == 0) and i % 3 != 0]
    assert [t.sensor for t in fired] == expect
    assert all(t.state == "firing" for t in fired)
    assert all(t.level == (2 if t.sensor % 7 == 0 else 1) for t in fired)
    assert states.firing()["r"].tolist() == expect
    resolved = [t for t in step(states, r, 2, w2) if t.state == "resolved"]
    gone = [i for i in expect if i % 7 == 0]
    assert [(t.sensor, t.state) for t in resolved] == [(i, "resolved") for i in gone]
    assert states.firing()["r"].tolist() == [i for i in expect if i % 7 != 0]


def test_firing_reports_every_rule() -> None:
    a, b = rule(name="a"), rule(name="b")
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
        AlertStates([rule(name="x"), rule(for_s=5, name="x")])


# -- states as Grafana has them ------------------------------------------------------------------


def test_pending_firing_recovering_resolved() -> None:
    assert run(rule(for_s=20, keep_firing_for_s=20), [1, 1, 0, 1, 0, 0, 0], every=True) == [
        (0, "pending", 1, 0),
        (1, "firing", 1, 0),
        (2, "recovering", 1, 0),
        (3, "firing", 1, 0),  # the condition returned within keep_firing_for
        (4, "recovering", 1, 0),
        (5, "resolved", 1, 0),
    ]


def test_a_pending_instance_that_gives_up_goes_back_to_normal() -> None:
    assert run(rule(for_s=30), [1, 1, 0], every=True) == [
        (0, "pending", 1, 0),
        (2, "normal", 1, 0),
    ]


def test_a_higher_level_while_firing_escalates_once() -> None:
    transitions = []
    r = rule()
    states = AlertStates([r])
    for i, lv in enumerate([1, 1, 2, 2, 1, 0]):
        transitions += [(i, t.state, t.previous, t.level) for t in step(states, r, i, [lv])]
    assert transitions == [
        (0, "firing", "normal", 1),
        (2, "firing", "firing", 2),  # escalated
        (5, "resolved", "firing", 2),  # a lower level while firing does not de-escalate
    ]


def test_hysteresis_keeps_an_active_instance_firing() -> None:
    r = rule()
    states = AlertStates([r])
    # window 1: below the limit but within the hysteresis band (hold); window 2: clear
    seen = [t.state for t in step(states, r, 0, [1], hold=[True])]
    seen += [t.state for t in step(states, r, 1, [0], hold=[True])]
    seen += [t.state for t in step(states, r, 2, [0], hold=[False])]
    assert seen == ["firing", "resolved"]
    # hold alone does not start a normal instance
    fresh = AlertStates([r])
    assert step(fresh, r, 0, [0], hold=[True]) == []


def test_instances_round_trip_through_restore() -> None:
    r = rule(for_s=20, keep_firing_for_s=30)
    states = AlertStates([r])
    step(states, r, 0, [1, 1, 0], sensors=[0, 1, 2])
    step(states, r, 1, [1, 0, 0], sensors=[0, 1, 2])  # 0 fires, 1 gives up
    step(states, r, 2, [0, 0, 2], sensors=[0, 1, 2])  # 0 recovering, 2 pending
    saved = states.instances()
    assert {(i.sensor, i.state) for i in saved} == {(0, "recovering"), (2, "pending")}
    again = AlertStates([r])
    for inst in saved:
        assert again.restore(inst)
    assert not again.restore(Instance("gone", 5, "firing", T0, 0, 1))  # unknown rule
    a = [(t.sensor, t.state) for t in step(again, r, 3, [0, 0, 2], sensors=[0, 1, 2])]
    b = [(t.sensor, t.state) for t in step(states, r, 3, [0, 0, 2], sensors=[0, 1, 2])]
    assert a == b == [(2, "firing")]
    a = [(t.sensor, t.state) for t in step(again, r, 4, [0, 0, 2], sensors=[0, 1, 2])]
    assert a == [(0, "resolved")]  # clear since window 2's start: 30 s at the end of window 4
