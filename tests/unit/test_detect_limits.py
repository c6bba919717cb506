"""Static limits on crafted windows: expected levels and thresholds come from ``DEFAULT_LIMITS``
as documented (ISO 10816 zones, rated currents), worked out by hand."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Sequence

import numpy as np
import pytest

from plantwatch.detect import CRITICAL, NONE, WARNING, Limit, StaticLimits, Windows
from plantwatch.detect.base import F64, KIND_INDEX

Col = float | Sequence[float]


def win(
    machine_type: str | Sequence[str],
    kind: str | Sequence[str],
    *,
    mean: Col = math.nan,
    hi: Col | None = None,
    lo: Col | None = None,
    count: int = 10,
) -> Windows:
    """Windows; scalars repeat over the rows, ``hi``/``lo`` (max, min) default to the mean."""
    cols = (machine_type, kind, mean, hi, lo)
    n = max([len(c) for c in cols if isinstance(c, Sequence) and not isinstance(c, str)] or [1])
    types = [machine_type] * n if isinstance(machine_type, str) else list(machine_type)
    kinds = [kind] * n if isinstance(kind, str) else list(kind)

    def col(x: Col | None, default: F64) -> F64:
        if x is None:
            return default.copy()
        return np.asarray([x] * n if isinstance(x, float | int) else x, np.float64)

    mean_ = col(mean, np.full(n, math.nan))
    return Windows(
        sensor=np.arange(n, dtype=np.int64),
        kind=np.array([KIND_INDEX.get(k, -1) for k in kinds], np.int8),
        machine_type=np.array(types, dtype=object),
        start_ms=np.zeros(n, np.int64),
        end_ms=np.full(n, 10_000, np.int64),
        count=np.where(np.isnan(mean_), 0, count).astype(np.int64),
        mean=mean_,
        std=np.full(n, 0.1),
        min=col(lo, mean_),
        max=col(hi, mean_),
        last=mean_.copy(),
        last_seen_ms=np.full(n, 9_000, np.int64),
        out_of_range=np.zeros(n, np.int64),
    )


def test_pump_vibration_mean_zones() -> None:
    # ISO 10816-3 group 2: 4.5 mm/s (B/C) warns, 7.1 mm/s (C/D) is critical; mean is judged
    f = StaticLimits().evaluate(win("centrifugal_pump", "vibration", mean=[8.0, 5.0, 4.4, 2.0]))
    assert f.level.tolist() == [CRITICAL, WARNING, NONE, NONE]
    np.testing.assert_array_equal(f.threshold, [7.1, 4.5, np.nan, np.nan])
    np.testing.assert_array_equal(f.value, [8.0, 5.0, 4.4, 2.0])
    np.testing.assert_allclose(f.score, [8.0 / 7.1, 5.0 / 4.5, 0.0, 0.0])


def test_mean_stat_ignores_a_high_window_max() -> None:
    f = StaticLimits().evaluate(win("motor_fan", "vibration", mean=3.0, hi=12.0))
    assert f.level.tolist() == [NONE]
    assert f.value.tolist() == [3.0]


def test_current_is_judged_on_the_window_max() -> None:
    # pump rated 40 A: warning at 56 A, critical at 64 A, on the max (inrush peaks matter)
    f = StaticLimits().evaluate(
        win("centrifugal_pump", "current", mean=[40.0, 40.0, 60.0], hi=[60.0, 65.0, 50.0])
    )
    assert f.level.tolist() == [WARNING, CRITICAL, NONE]
    np.testing.assert_array_equal(f.threshold, [56.0, 64.0, np.nan])
    np.testing.assert_array_equal(f.value, [60.0, 65.0, 50.0])


def test_hydraulic_press_pressure_low_limit_on_the_max() -> None:
    # every window holds a stroke peak: a max below 160 bar warns, below 140 bar is critical;
    # a low mean between strokes is normal
    f = StaticLimits().evaluate(
        win(
            "hydraulic_press",
            "pressure",
            mean=[60.0, 60.0, 60.0, 20.0],
            hi=[150.0, 130.0, 180.0, 181.0],
            lo=[0.0, 0.0, 0.0, 0.0],
        )
    )
    assert f.level.tolist() == [WARNING, CRITICAL, NONE, NONE]
    np.testing.assert_array_equal(f.threshold, [160.0, 140.0, np.nan, np.nan])
    np.testing.assert_array_equal(f.value, [150.0, 130.0, 180.0, 181.0])
    np.testing.assert_allclose(f.score[:2], [150.0 / 160.0, 130.0 / 140.0])


def test_air_compressor_pressure_low_limit_on_the_mean() -> None:
    f = StaticLimits().evaluate(
        win("air_compressor", "pressure", mean=[5.8, 5.0, 7.0], hi=[9.0, 9.0, 9.0])
    )
    assert f.level.tolist() == [WARNING, CRITICAL, NONE]
    np.testing.assert_array_equal(f.threshold, [6.0, 5.5, np.nan])


def test_rows_judged_independently_in_one_batch() -> None:
    w = win(
        ["centrifugal_pump", "motor_fan", "hydraulic_press", "air_compressor", "motor_fan"],
        ["temperature", "temperature", "temperature", "temperature", "current"],
        mean=[90.0, 110.0, 70.0, 100.0, 20.0],
        hi=[91.0, 111.0, 71.0, 101.0, 41.0],
    )
    f = StaticLimits().evaluate(w)
    # pump 90 °C ≥ 85 → crit; fan 110 ≥ 105 → warn (class F, crit 120); press oil 70 ≥ 65 → warn;
    # compressor 100 < 110 → none; fan current max 41 A ≥ 40 → crit
    assert f.level.tolist() == [CRITICAL, WARNING, WARNING, NONE, CRITICAL]
    np.testing.assert_array_equal(f.threshold, [85.0, 105.0, 65.0, np.nan, 40.0])


def test_types_and_kinds_without_a_limit_are_untouched() -> None:
    w = win(
        ["unknown", "motor_fan", "centrifugal_pump", "centrifugal_pump"],
        ["vibration", "pressure", "humidity", "no-such-kind"],
        mean=[50.0, 0.0, 100.0, 1e6],
    )
    f = StaticLimits().evaluate(w)
    assert f.level.tolist() == [NONE] * 4
    assert np.isnan(f.value).all()
    assert np.isnan(f.threshold).all()
    assert np.isnan(f.score).all()


def test_windows_without_data_get_no_verdict() -> None:
    f = StaticLimits().evaluate(win("centrifugal_pump", "vibration", mean=[math.nan, 8.0]))
    assert f.level.tolist() == [NONE, CRITICAL]
    assert math.isnan(f.threshold[0])


def test_custom_limits_replace_the_defaults() -> None:
    det = StaticLimits({("mixer", "temperature"): Limit("mean", warn_high=40.0, crit_high=50.0)})
    f = det.evaluate(
        win(
            ["mixer", "mixer", "centrifugal_pump"],
            ["temperature", "vibration", "vibration"],
            mean=[45.0, 20.0, 8.0],
        )
    )
    assert f.level.tolist() == [WARNING, NONE, NONE]
    assert f.threshold[0] == 40.0


def test_custom_min_limit_low_side() -> None:
    det = StaticLimits({("chiller", "flow"): Limit("min", warn_low=10.0, crit_low=5.0)})
    f = det.evaluate(
        win("chiller", "flow", mean=[20.0, 20.0, 20.0], lo=[7.0, 4.0, 12.0], hi=[30.0] * 3)
    )
    assert f.level.tolist() == [WARNING, CRITICAL, NONE]
    np.testing.assert_array_equal(f.threshold, [10.0, 5.0, np.nan])
    np.testing.assert_array_equal(f.value, [7.0, 4.0, 12.0])


def test_equal_warning_and_critical_thresholds_report_critical() -> None:
    det = StaticLimits({("pump", "vibration"): Limit("mean", warn_high=5.0, crit_high=5.0)})
    f = det.evaluate(win("pump", "vibration", mean=[6.0, 4.0]))
    assert f.level.tolist() == [CRITICAL, NONE]
    assert f.threshold[0] == 5.0


def test_infinite_values_only_cross_limits_that_exist() -> None:
    # the press pressure limit has no high side and vibration limits no low side
    f = StaticLimits().evaluate(
        win(
            ["hydraulic_press", "hydraulic_press", "centrifugal_pump", "centrifugal_pump"],
            ["pressure", "pressure", "vibration", "vibration"],
            mean=[100.0, 100.0, math.inf, -math.inf],
            hi=[math.inf, -math.inf, math.inf, -math.inf],
        )
    )
    assert f.level.tolist() == [NONE, CRITICAL, CRITICAL, NONE]
    np.testing.assert_array_equal(f.threshold, [np.nan, 140.0, 7.1, np.nan])


def test_machine_types_changed_in_place_are_picked_up() -> None:
    det = StaticLimits()
    types = np.array(["unknown", "unknown"], dtype=object)
    w = win(["unknown", "unknown"], "vibration", mean=8.0)
    w = dataclasses.replace(w, machine_type=types)
    assert det.evaluate(w).level.tolist() == [NONE, NONE]
    types[1] = "centrifugal_pump"  # e.g. the machine registry arrived after the first readings
    assert det.evaluate(w).level.tolist() == [NONE, CRITICAL]


def test_limits_follow_the_rows_from_call_to_call() -> None:
    det = StaticLimits()
    assert det.evaluate(win("centrifugal_pump", "vibration", mean=5.0)).level.tolist() == [1]
    f = det.evaluate(win(["motor_fan", "centrifugal_pump"], "temperature", mean=[110.0, 110.0]))
    assert f.level.tolist() == [WARNING, CRITICAL]
    f = det.evaluate(win(["motor_fan", "centrifugal_pump"], "current", mean=[110.0, 110.0]))
    assert f.level.tolist() == [CRITICAL, CRITICAL]
    np.testing.assert_array_equal(f.threshold, [40.0, 64.0])


def test_pickle_keeps_custom_limits() -> None:
    det = StaticLimits({("mixer", "temperature"): Limit("mean", warn_high=40.0, crit_high=50.0)})
    det.evaluate(win("mixer", "temperature", mean=20.0))
    clone = pickle.loads(pickle.dumps(det))
    assert clone.limits == det.limits
    assert clone.evaluate(win("mixer", "temperature", mean=55.0)).level.tolist() == [CRITICAL]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"warn_high": 8.0, "crit_high": 7.0},  # critical below warning
        {"warn_low": 5.0, "crit_low": 6.0},  # critical low above warning low
        {"warn_low": 5.0, "warn_high": 5.0},  # no normal band left
        {"warn_low": 9.0, "warn_high": 5.0},
        {"warn_high": math.nan},
        {"crit_low": math.nan},
    ],
)
def test_limit_validation_rejects(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="crit_low <= warn_low < warn_high <= crit_high"):
        Limit("mean", **kwargs)


def test_limit_validation_accepts() -> None:
    assert Limit().warn_high == math.inf  # no limit on either side
    Limit("max", warn_low=160.0, crit_low=140.0)
    Limit("mean", warn_high=4.5, crit_high=7.1)
    Limit("min", crit_low=1.0, warn_low=1.0, warn_high=2.0, crit_high=2.0)
