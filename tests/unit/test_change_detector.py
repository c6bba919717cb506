"""Page-Hinkley on window means (``plantwatch.detect.change``): a small lasting level shift on one
sensor is flagged after the warm-up while steady sensors stay quiet; pickling mid-stream
continues identically; windows without data get no verdict."""

from __future__ import annotations

import pickle

import numpy as np

from plantwatch.detect.base import CRITICAL, KIND_INDEX, WARNING, Windows
from plantwatch.detect.baseline import RobustBaseline
from plantwatch.detect.change import PageHinkley

WINDOW_MS = 10_000
N = 3
KIND = KIND_INDEX["temperature"]  # floor 0.5 °C; the noise below is 1.0 °C


def windows(step: int, mean: np.ndarray, count: np.ndarray | None = None) -> Windows:
    count = np.full(N, 5, np.int64) if count is None else count
    mean = np.where(count > 0, mean, np.nan)
    end = (step + 1) * WINDOW_MS
    return Windows(
        sensor=np.arange(N, dtype=np.int64),
        kind=np.full(N, KIND, np.int8),
        machine_type=np.array(["motor_fan"] * N, dtype=object),
        start_ms=np.full(N, step * WINDOW_MS, np.int64),
        end_ms=np.full(N, end, np.int64),
        count=count,
        mean=mean,
        std=np.where(count > 0, 0.5, np.nan),
        min=mean - 1.0,
        max=mean + 1.0,
        last=mean.copy(),
        last_seen_ms=np.full(N, end - 1, np.int64),
        out_of_range=np.zeros(N, np.int64),
    )


def stream(seed: int = 0, steps: int = 80, shift_at: int = 40, shift: float = 2.0) -> list[Windows]:
    """Three sensors around 60 °C with 1 °C noise; sensor 1 rises by ``shift`` at ``shift_at``."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps):
        mean = 60.0 + rng.normal(0.0, 1.0, N)
        if step >= shift_at:
            mean[1] += shift
        out.append(windows(step, mean))
    return out


def test_a_small_lasting_shift_is_flagged_after_warm_up() -> None:
    ws = stream()
    ph = PageHinkley()
    levels = np.array([ph.evaluate(w).level for w in ws])
    # quiet before the shift on every sensor, and on the steady sensors throughout
    assert (levels[:40] == 0).all()
    assert (levels[:, [0, 2]] == 0).all()
    flagged = np.flatnonzero(levels[40:, 1] >= WARNING)
    assert len(flagged) and flagged[0] <= 8
    assert (levels[40:, 1] == CRITICAL).any()
    # a 2-sigma shift is below the z-score baseline's warning level (4) most of the time
    rb = RobustBaseline()
    rb_levels = np.array([rb.evaluate(w).level[1] for w in ws])
    assert (rb_levels[40:48] == 0).sum() >= 6


def test_warm_up_gives_no_verdict() -> None:
    ph = PageHinkley(min_history=12)
    found = [ph.evaluate(w) for w in stream()[:13]]
    assert all(np.isnan(f.score).all() for f in found[:12])
    assert np.isfinite(found[12].score).all()


def test_pickle_mid_stream_continues_identically() -> None:
    ws = stream(seed=1)
    ph = PageHinkley()
    for w in ws[:45]:
        ph.evaluate(w)
    clone = pickle.loads(pickle.dumps(ph))
    for w in ws[45:]:
        a, b = ph.evaluate(w), clone.evaluate(w)
        np.testing.assert_array_equal(a.level, b.level)
        np.testing.assert_array_equal(a.score, b.score)
        np.testing.assert_array_equal(a.threshold, b.threshold)


def test_windows_without_data_leave_no_verdict_and_no_trace() -> None:
    ws = stream(seed=2)
    a, b = PageHinkley(), PageHinkley()
    for w in ws[:30]:
        a.evaluate(w)
        b.evaluate(w)
    gap = windows(30, np.full(N, 1e6), count=np.array([0, 0, 5], np.int64))
    f = a.evaluate(gap)
    assert np.isnan(f.score[:2]).all() and (f.level[:2] == 0).all()
    # sensors 0 and 1 continue as if the gap had not happened
    for w in ws[30:]:
        np.testing.assert_array_equal(a.evaluate(w).score[:2], b.evaluate(w).score[:2])
