"""Sensor health detectors (stuck, no data, out of range) and the default detector set."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from plantwatch.detect import (
    NONE,
    WARNING,
    NoData,
    OutOfRange,
    RobustBaseline,
    StaticLimits,
    Stuck,
    Windows,
    default_detectors,
)
from plantwatch.detect.base import KIND_INDEX


def win(
    *,
    count: Sequence[int],
    lo: Sequence[float] | None = None,
    hi: Sequence[float] | None = None,
    last: Sequence[float] | None = None,
    end_ms: int = 100_000,
    last_seen_ms: Sequence[int] | None = None,
    out_of_range: Sequence[int] | None = None,
) -> Windows:
    n = len(count)
    c = np.asarray(count, np.int64)
    has = c > 0
    low = np.where(has, np.asarray(lo if lo is not None else [1.0] * n, np.float64), np.nan)
    high = np.where(has, np.asarray(hi if hi is not None else [2.0] * n, np.float64), np.nan)
    seen = np.asarray(last_seen_ms if last_seen_ms is not None else [end_ms - 1] * n, np.int64)
    return Windows(
        sensor=np.arange(n, dtype=np.int64),
        kind=np.full(n, KIND_INDEX["temperature"], np.int8),
        machine_type=np.full(n, "centrifugal_pump", dtype=object),
        start_ms=np.full(n, end_ms - 10_000, np.int64),
        end_ms=np.full(n, end_ms, np.int64),
        count=c,
        mean=(low + high) / 2,
        std=np.where(has, (high - low) / 4, np.nan),
        min=low,
        max=high,
        last=np.asarray(last, np.float64) if last is not None else high.copy(),
        last_seen_ms=seen,
        out_of_range=np.asarray(out_of_range if out_of_range is not None else [0] * n, np.int64),
    )


# -- stuck --------------------------------------------------------------------------------------


def test_stuck_exact_repeats() -> None:
    f = Stuck().evaluate(
        win(
            count=[5, 5, 3, 2, 0],
            lo=[3.3, 3.3, 7.0, 7.0, 0.0],
            hi=[3.3, 3.3000001, 7.0, 7.0, 0.0],
            last=[3.3, 3.3, 7.0, 7.0, math.nan],
        )
    )
    # all five the same: stuck; one differing value: not; exactly min_count (3): stuck;
    # two readings are too few to tell; no data: no verdict
    assert f.level.tolist() == [WARNING, NONE, WARNING, NONE, NONE]
    np.testing.assert_array_equal(f.score, [5.0, 0.0, 3.0, 0.0, 0.0])
    np.testing.assert_array_equal(f.threshold, [0.0, np.nan, 0.0, np.nan, np.nan])
    np.testing.assert_array_equal(f.value[:4], [3.3, 3.3, 7.0, 7.0])  # the repeated value


def test_stuck_min_count() -> None:
    w = win(count=[4, 5], lo=[1.0, 1.0], hi=[1.0, 1.0])
    assert Stuck(min_count=5).evaluate(w).level.tolist() == [NONE, WARNING]
    assert Stuck(min_count=2).evaluate(w).level.tolist() == [WARNING, WARNING]


@pytest.mark.parametrize("min_count", [1, 0, -3])
def test_stuck_rejects_min_count_below_two(min_count: int) -> None:
    with pytest.raises(ValueError, match="min_count must be >= 2"):
        Stuck(min_count=min_count)


# -- no data ------------------------------------------------------------------------------------


def test_no_data_after_silence() -> None:
    # window ends at 100 s; last reading at 39.999 s: silent 60.001 s > 60 s; at 40 s exactly
    # 60 s (not more); at 95 s silent 5 s; never seen: nothing to miss yet
    f = NoData(after_s=60.0).evaluate(
        win(count=[0, 0, 0, 0], end_ms=100_000, last_seen_ms=[39_999, 40_000, 95_000, -1])
    )
    assert f.level.tolist() == [WARNING, NONE, NONE, NONE]
    np.testing.assert_allclose(f.value, [60.001, 60.0, 5.0, 0.0])
    np.testing.assert_array_equal(f.threshold, [60.0, np.nan, np.nan, np.nan])
    np.testing.assert_allclose(f.score, [60.001 / 60.0, 1.0, 5.0 / 60.0, 0.0])


def test_no_data_threshold_is_not_truncated() -> None:
    # 2.01 s is 2010 ms: silence of exactly 2010 ms is not more than 2.01 s
    f = NoData(after_s=2.01).evaluate(
        win(count=[0, 0], end_ms=10_000, last_seen_ms=[10_000 - 2_010, 10_000 - 2_011])
    )
    assert f.level.tolist() == [NONE, WARNING]


def test_no_data_quiet_while_readings_arrive() -> None:
    f = NoData(after_s=5.0).evaluate(win(count=[3], end_ms=100_000, last_seen_ms=[99_000]))
    assert f.level.tolist() == [NONE]


@pytest.mark.parametrize("after_s", [0.0, -1.0])
def test_no_data_rejects_non_positive_after(after_s: float) -> None:
    with pytest.raises(ValueError, match="after_s must be > 0"):
        NoData(after_s=after_s)


# -- out of range -------------------------------------------------------------------------------


def test_out_of_range() -> None:
    # out-of-range readings are left out of the statistics, so a sensor reporting only
    # impossible values has count 0 and is still flagged
    f = OutOfRange().evaluate(win(count=[5, 5, 0, 0], out_of_range=[2, 0, 3, 0]))
    assert f.level.tolist() == [WARNING, NONE, WARNING, NONE]
    np.testing.assert_array_equal(f.value, [2.0, 0.0, 3.0, 0.0])
    np.testing.assert_array_equal(f.threshold, [0.0, np.nan, 0.0, np.nan])


# -- the default set ----------------------------------------------------------------------------


def test_default_detectors() -> None:
    dets = default_detectors()
    assert [d.name for d in dets] == [
        "static_limit",
        "baseline",
        "stuck",
        "no_data",
        "out_of_range",
    ]
    assert [type(d) for d in dets] == [StaticLimits, RobustBaseline, Stuck, NoData, OutOfRange]
    no_data = dets[3]
    assert isinstance(no_data, NoData)
    assert no_data.after_ms == 60_000


def test_default_detectors_no_data_after() -> None:
    no_data = default_detectors(no_data_after_s=90.0)[3]
    assert isinstance(no_data, NoData)
    assert no_data.after_ms == 90_000


def test_default_detectors_are_fresh_instances() -> None:
    # detectors hold state: two pipelines must not share a baseline
    a, b = default_detectors(), default_detectors()
    assert all(x is not y for x, y in zip(a, b, strict=True))
