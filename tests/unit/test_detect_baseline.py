"""The robust baseline on crafted window means.

Expected values follow the module's definition, worked out by hand: ``z = |mean - median| /
scale`` with ``scale = max(1.4826 * MAD, (q90 - q10) / 2.563, 0.02 * |median|, floor[kind])``,
quantiles by linear interpolation, warning at z ≥ 4, critical at z ≥ 6, judged only once a
sensor has ``min_history`` (12) windows. A constant history has MAD = q90 - q10 = 0, so its
scale is a floor: for 50 °C that is 0.02 * 50 = 1.0 (above the 0.5 °C floor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from plantwatch.detect import CRITICAL, NONE, WARNING, Finding, RobustBaseline, Windows
from plantwatch.detect.base import F64, KIND_INDEX

TEMP = KIND_INDEX["temperature"]
VIB = KIND_INDEX["vibration"]
POWER = KIND_INDEX["power"]
UNKNOWN = -1


def win(
    sensor: Sequence[int],
    mean: Sequence[float] | F64,
    *,
    kind: int = TEMP,
    end_ms: Sequence[int] | int = 10_000,
    std: float = 0.0,
) -> Windows:
    n = len(sensor)
    means = np.asarray(mean, np.float64)
    end = np.broadcast_to(np.asarray(end_ms, np.int64), (n,)).copy()
    has = np.isfinite(means)
    return Windows(
        sensor=np.asarray(sensor, np.int64),
        kind=np.full(n, kind, np.int8),
        machine_type=np.full(n, "air_compressor", dtype=object),
        start_ms=end - 10_000,
        end_ms=end,
        count=np.where(has, 10, 0).astype(np.int64),
        mean=means,
        std=np.where(has, std, np.nan),
        min=means.copy(),
        max=means.copy(),
        last=means.copy(),
        last_seen_ms=end - 1,
        out_of_range=np.zeros(n, np.int64),
    )


def feed(
    det: RobustBaseline, sensor: Sequence[int], mean: float | Sequence[float], **kw: int
) -> Finding:
    """One window per sensor (a single mean repeats); returns the finding."""
    means = [mean] * len(sensor) if isinstance(mean, float | int) else list(mean)
    return det.evaluate(win(sensor, means, **kw))


def warm(det: RobustBaseline, sensor: Sequence[int], value: float, n: int = 12, **kw: int) -> None:
    for _ in range(n):
        f = feed(det, sensor, value, **kw)
        assert (f.level == NONE).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"history": 10, "min_history": 11},
        {"min_history": 0},
        {"warn_z": 0.0},
        {"warn_z": 7.0, "crit_z": 6.0},
        {"warn_z": math.nan},
    ],
)
def test_invalid_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        RobustBaseline(**kwargs)  # type: ignore[arg-type]


def test_no_verdict_during_warm_up() -> None:
    det = RobustBaseline()
    for _ in range(11):
        f = feed(det, [0], 50.0)
        assert f.level.tolist() == [NONE]
        assert math.isnan(f.score[0])
    # the 12th window is judged against 11: still warm-up, however far off it is
    f = feed(det, [0], 80.0)
    assert f.level.tolist() == [NONE]
    assert math.isnan(f.score[0])
    assert math.isnan(f.threshold[0])
    assert f.value[0] == 80.0
    # now 12 in history (11 × 50, 80): median 50, MAD 0, q10 = q90 = 50, scale 1.0
    f = feed(det, [0], 80.0)
    assert f.level.tolist() == [CRITICAL]
    assert f.score[0] == pytest.approx(30.0)
    assert f.threshold[0] == pytest.approx(56.0)


def test_steps_up_and_down() -> None:
    det = RobustBaseline()
    sensors = [3, 7, 0, 12, 5]
    warm(det, sensors, 50.0)
    f = feed(det, sensors, [60.0, 40.0, 54.5, 50.3, 45.5])
    assert f.level.tolist() == [CRITICAL, CRITICAL, WARNING, NONE, WARNING]
    np.testing.assert_allclose(f.score, [10.0, 10.0, 4.5, 0.3, 4.5])
    # the threshold crossed lies on the side of the step: median ± z * scale
    np.testing.assert_allclose(f.threshold, [56.0, 44.0, 54.0, np.nan, 46.0])
    np.testing.assert_array_equal(f.value, [60.0, 40.0, 54.5, 50.3, 45.5])


def test_small_noise_stays_quiet() -> None:
    # |mean - median| ≤ 2 while scale ≥ 0.02 * 49 = 0.98: z ≤ 2.05 < 4, whatever the draw
    rng = np.random.default_rng(11)
    det = RobustBaseline()
    for _ in range(80):
        f = det.evaluate(win(range(20), rng.uniform(49.0, 51.0, 20)))
        assert (f.level == NONE).all()
    assert np.isfinite(f.score).all()  # judged, not in warm-up


def test_two_state_signal_alternating() -> None:
    # a compressor loading (72 kW) and unloading (24 kW)
    det = RobustBaseline()
    levels, scores = [], []
    for i in range(60):
        f = feed(det, [0], 24.0 if i % 2 == 0 else 72.0, kind=POWER)
        levels.append(int(f.level[0]))
        scores.append(float(f.score[0]))
    assert levels == [NONE] * 60
    assert np.nanmax(scores) < 4.0
    assert np.isfinite(scores[12:]).all()


def test_two_state_signal_uneven_needs_the_inter_decile_term() -> None:
    # 24, 24, 72, ...: two thirds at 24, so median 24 and MAD 0; q10 = 24 and q90 = 72 give
    # scale 48 / 2.563, and a 72 window scores exactly 2.563 (far below 4)
    det = RobustBaseline()
    for i in range(60):
        value = 72.0 if i % 3 == 2 else 24.0
        f = feed(det, [0], value, kind=POWER)
        assert f.level.tolist() == [NONE]
        if i >= 12:
            assert f.score[0] == pytest.approx(2.563 if value == 72.0 else 0.0)


def test_a_single_switch_after_a_steady_signal_alerts() -> None:
    # the contrast: steady at 24 kW the scale is 0.02 * 24 = 0.48 and a 72 kW window is z = 100
    det = RobustBaseline()
    warm(det, [0], 24.0, kind=POWER)
    f = feed(det, [0], 72.0, kind=POWER)
    assert f.level.tolist() == [CRITICAL]
    assert f.score[0] == pytest.approx(100.0)


def test_absolute_floor_per_kind() -> None:
    # steady 2.0 mm/s: the relative floor is 0.04, the vibration floor 0.15 mm/s wins:
    # 2.75 is z = 0.75 / 0.15 = 5 (warning, threshold 2 + 4 * 0.15); with no floor for an
    # unknown kind the scale stays 0.04: z = 18.75 (critical, threshold 2 + 6 * 0.04)
    vib, unknown = RobustBaseline(), RobustBaseline()
    warm(vib, [0], 2.0, kind=VIB)
    warm(unknown, [0], 2.0, kind=UNKNOWN)
    f = feed(vib, [0], 2.75, kind=VIB)
    assert f.level.tolist() == [WARNING]
    assert f.score[0] == pytest.approx(5.0)
    assert f.threshold[0] == pytest.approx(2.6)
    f = feed(unknown, [0], 2.75, kind=UNKNOWN)
    assert f.level.tolist() == [CRITICAL]
    assert f.score[0] == pytest.approx(18.75)
    assert f.threshold[0] == pytest.approx(2.24)


def test_the_baseline_follows_a_new_level() -> None:
    det = RobustBaseline()  # history 30
    warm(det, [0], 50.0, n=30)
    assert feed(det, [0], 60.0).level.tolist() == [CRITICAL]
    for _ in range(29):
        feed(det, [0], 60.0)
    f = feed(det, [0], 60.0)  # the history holds only 60s now
    assert f.level.tolist() == [NONE]
    assert f.score[0] == 0.0


def test_windows_without_data_never_enter_the_history() -> None:
    det = RobustBaseline()
    warm(det, [0], 50.0, n=11)
    f = feed(det, [0], math.nan)
    assert f.level.tolist() == [NONE]
    assert math.isnan(f.score[0])
    # still 11 in history: a 12th real window is not judged yet
    assert math.isnan(feed(det, [0], 80.0).score[0])


def test_several_windows_of_one_sensor_are_judged_in_end_time_order() -> None:
    # 11 in history: the window ending first (50) is the last warm-up window, the one ending
    # later (60) is then judged against 12 × 50: z = 10
    det = RobustBaseline()
    warm(det, [0], 50.0, n=11)
    f = det.evaluate(win([0, 0], [60.0, 50.0], end_ms=[120_000, 110_000]))
    assert f.level.tolist() == [CRITICAL, NONE]
    assert f.score[0] == pytest.approx(10.0)
    assert math.isnan(f.score[1])


def test_score_readings() -> None:
    det = RobustBaseline()
    warm(det, [0], 50.0)  # std 0: no noise term, scale 1.0
    warm(det, [3], 50.0, std=3)  # noise 3: scale sqrt(1.0² + 3²)
    warm(det, [1], 50.0, n=5)  # warm-up
    s = det.score_readings(
        np.array([0, 0, 1, 2, 3], np.int64), np.array([50.5, 80.0, 80.0, 80.0, 80.0])
    )
    assert s[:2] == pytest.approx([0.5, 30.0])
    assert math.isnan(s[2])  # warm-up
    assert math.isnan(s[3])  # never seen
    assert s[4] == pytest.approx(30.0 / math.sqrt(10.0))
    assert det.score_readings(np.zeros(0, np.int64), np.zeros(0)).shape == (0,)


def test_score_readings_before_any_window() -> None:
    s = RobustBaseline().score_readings(np.array([4, 4], np.int64), np.array([1.0, 2.0]))
    assert np.isnan(s).all()


def test_restore_starts_judging_at_once() -> None:
    det = RobustBaseline()
    det.restore(0, TEMP, [50.0] * 12)
    f = feed(det, [0], 60.0)
    assert f.level.tolist() == [CRITICAL]
    assert f.threshold[0] == pytest.approx(56.0)


def test_restore_drops_non_finite_means() -> None:
    det = RobustBaseline()
    det.restore(0, TEMP, [50.0] * 11 + [math.nan, math.inf])
    assert math.isnan(feed(det, [0], 60.0).score[0])  # 11 real means: still warm-up


def test_restore_keeps_the_newest_history() -> None:
    det = RobustBaseline(history=12, min_history=12)
    det.restore(0, TEMP, [100.0] * 12 + [50.0] * 12)  # oldest first: 50 is the recent level
    f = feed(det, [0], 60.0)
    assert f.level.tolist() == [CRITICAL]
    assert f.threshold[0] == pytest.approx(56.0)


def test_restore_then_the_next_window_replaces_the_oldest() -> None:
    # history [0, 0, 50 × 10]: q10 = 0.9 * 0 + 0.1 * 50 = 5, q90 = 50, scale 45 / 2.563 ≈ 17.6,
    # so 60 is z ≈ 0.57. It replaces the oldest 0: [0, 50 × 10, 60] has q10 = q90 = 50, scale
    # 1.0, and the next 60 is z = 10.
    det = RobustBaseline(history=12, min_history=12)
    det.restore(0, TEMP, [0.0, 0.0] + [50.0] * 10)
    f = feed(det, [0], 60.0)
    assert f.level.tolist() == [NONE]
    assert f.score[0] == pytest.approx(10.0 / (45.0 / 2.563))
    f = feed(det, [0], 60.0)
    assert f.level.tolist() == [CRITICAL]
    assert f.score[0] == pytest.approx(10.0)


def test_restore_kind_sets_the_floor() -> None:
    # restored as temperature: floor 0.5 (not vibration's 0.15), so 2.75 vs 2.0 scores 1.5
    det = RobustBaseline()
    det.restore(2, TEMP, [2.0] * 12)
    s = det.score_readings(np.array([2], np.int64), np.array([2.75]))
    assert s[0] == pytest.approx(1.5)
