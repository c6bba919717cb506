"""De-duplication on (machine, sensor, seq): exact, bounded, restorable."""

from __future__ import annotations

import numpy as np
import pytest

from plantwatch.stream.dedupe import Deduper


def check(
    d: Deduper, sensor: list[int], seq: list[int]
) -> tuple[list[bool], list[bool], list[bool]]:
    r = d.check(np.array(sensor, np.int64), np.array(seq, np.int64))
    return r.new.tolist(), r.duplicate.tolist(), r.stale.tolist()


def test_in_order_seqs_are_new_once() -> None:
    d = Deduper()
    assert check(d, [0, 0, 0], [1, 2, 3])[0] == [True, True, True]
    new, dup, _ = check(d, [0, 0, 0, 0], [3, 4, 2, 5])
    assert new == [False, True, False, True]
    assert dup == [True, False, True, False]
    assert d.state_size() == 0  # no gaps: no per-seq state at all


def test_duplicates_inside_one_batch_keep_the_first() -> None:
    d = Deduper()
    new, dup, _ = check(d, [0, 1, 0, 0, 1], [1, 1, 1, 2, 1])
    assert new == [True, True, False, True, False]
    assert dup == [False, False, True, False, True]


def test_sensors_are_independent() -> None:
    d = Deduper()
    check(d, [0, 1], [1, 1])
    new, _, _ = check(d, [1, 0], [2, 2])
    assert new == [True, True]


def test_gaps_and_reordering_are_exact() -> None:
    d = Deduper()
    check(d, [0], [1])
    assert check(d, [0, 0], [5, 3])[0] == [True, True]  # gap at 2 and 4
    assert d.state_size() == 2
    assert check(d, [0, 0, 0], [4, 5, 2]) == (
        [True, False, True],
        [False, True, False],
        [False] * 3,
    )
    assert d.state_size() == 0  # gaps filled: back to the compact form
    assert check(d, [0], [6])[0] == [True]


def test_horizon_bounds_state_and_makes_older_seqs_stale() -> None:
    d = Deduper(horizon=10)
    check(d, [0], [1])
    check(d, [0, 0], [45, 50])  # gap 2..44, wider than the horizon: the state is cut below 45
    assert d.state_size() == 1  # only 50 is held (46..49 may still come)
    new, dup, stale = check(d, [0, 0, 0, 0], [30, 45, 47, 51])
    assert stale == [True, False, False, False]  # 30: cannot tell, so it is a dead letter
    assert new == [False, False, True, True]
    assert dup == [False, True, False, False]


def test_a_backlog_arriving_after_newer_readings_is_new() -> None:
    d = Deduper()
    check(d, [0, 0], [100, 101])  # a gateway sends live data first ...
    new, dup, stale = check(d, [0] * 99, list(range(1, 100)))  # ... then its backlog
    assert all(new) and not any(dup) and not any(stale)
    assert d.state_size() == 0


def test_a_counter_starting_high_is_cut_to_the_horizon() -> None:
    d = Deduper(horizon=100)
    assert check(d, [0, 0], [10**6, 10**6 + 1])[0] == [True, True]
    assert d.state_size() == 0
    new, _, stale = check(d, [0, 0, 0], [10**6 - 50, 10**6 - 500, 10**6 + 2])
    assert new == [False, False, True] and stale == [True, True, False]


def test_seq_zero_is_a_valid_first_seq() -> None:
    d = Deduper()
    assert check(d, [0, 0], [0, 1])[0] == [True, True]
    assert check(d, [0], [0])[1] == [True]


def test_restore_reproduces_the_state() -> None:
    live = Deduper()
    check(live, [0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 8])  # 6, 7 missing
    restored = Deduper()
    restored.restore(0, floor=0, contig=5, seen_above=[8])
    probe = ([0, 0, 0, 0, 0, 0], [2, 4, 6, 7, 8, 9])
    assert check(live, *probe) == check(restored, *probe)


def test_restore_folds_contiguous_seen_above() -> None:
    d = Deduper()
    d.restore(0, floor=0, contig=3, seen_above=[4, 5, 7])
    assert d.state_size() == 1  # 4, 5 joined the contiguous run; 7 waits for 6
    assert check(d, [0, 0], [6, 7])[0] == [True, False]


def test_invalid_horizon() -> None:
    with pytest.raises(ValueError, match="horizon"):
        Deduper(horizon=0)


def test_many_sensors_vectorised() -> None:
    rng = np.random.default_rng(7)
    d = Deduper()
    sensors = np.repeat(np.arange(500), 20)
    seqs = np.tile(np.arange(1, 21), 500)
    order = rng.permutation(len(sensors))
    r = d.check(sensors[order], seqs[order])
    assert r.new.all()
    again = d.check(sensors, seqs)
    assert again.duplicate.all()
