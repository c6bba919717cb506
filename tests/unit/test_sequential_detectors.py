"""Streaming scorers (``plantwatch.detect.sequential``): chunking invariance, NaN rows, pickling,
and a step change detected within a bounded delay."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from plantwatch.detect.sequential import SEQUENTIAL, Cusum, EwmaZ, Likelihood, make_sequential

NAMES = sorted(SEQUENTIAL)


def series(seed: int, n: int = 3000, step_at: int = 2000, step: float = 10.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1))
    x[step_at:] += step
    return x


def in_chunks(name: str, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    det = make_sequential(name)
    out, i = [], 0
    for size in sizes:
        out.append(det.update(x[i : i + size]))
        i += size
    out.append(det.update(x[i:]))
    return np.concatenate(out)


@pytest.mark.parametrize("name", NAMES)
def test_one_call_equals_many_calls(name: str) -> None:
    x = series(0)
    whole = make_sequential(name).update(x)
    rng = np.random.default_rng(1)
    sizes = [0, 1, 1, 7, 0, *rng.integers(1, 400, 20).tolist()]
    pieces = in_chunks(name, x, sizes)
    assert whole.shape == (len(x),)
    np.testing.assert_allclose(pieces, whole, rtol=1e-9, atol=1e-9)
    assert (whole >= 0).all() and np.isfinite(whole).all()
    assert whole.max() > 0


@pytest.mark.parametrize("name", NAMES)
def test_nan_rows_score_zero_and_leave_the_state_alone(name: str) -> None:
    x = series(2, n=2500)
    holes = np.array([0, 5, 700, 701, 1500, 2499])
    dirty = np.insert(x, holes, np.nan, axis=0)
    dirty[holes[2] + 2, 0] = np.inf  # an inf row too
    clean_scores = make_sequential(name).update(x)
    dirty_scores = make_sequential(name).update(dirty)
    bad = ~np.isfinite(dirty[:, 0])
    assert (dirty_scores[bad] == 0).all()
    np.testing.assert_allclose(dirty_scores[~bad], clean_scores[: (~bad).sum()], atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_pickle_mid_stream_continues_identically(name: str) -> None:
    x = series(3)
    det = make_sequential(name)
    det.update(x[:1234])
    clone = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(clone.update(x[1234:]), det.update(x[1234:]))


@pytest.mark.parametrize("name", NAMES)
def test_empty_and_all_nan_input(name: str) -> None:
    det = make_sequential(name)
    assert det.update(np.zeros((0, 1))).shape == (0,)
    assert (det.update(np.full((4, 1), np.nan)) == 0).all()


def test_a_big_step_alarms_at_once() -> None:
    """A 10-sigma step: the z-scores and the likelihood's novelty check fire on the step row."""
    x = series(4)
    for det in (EwmaZ(), Likelihood()):
        s = det.update(x)
        assert s[2000] >= det.alarm, det.name


def test_cusum_catches_a_small_step_within_a_bounded_delay() -> None:
    """A 2-sigma step gains about 2 - k = 1.5 per row: past the alarm (8) within ~6 rows; a
    z-score (alarm 6) misses it; on the noise before it CUSUM rarely alarms."""
    x = series(5, step=2.0)
    cusum = Cusum()
    s = cusum.update(x)
    first = int(np.argmax(s[2000:] >= cusum.alarm))
    assert s[2000 + first] >= cusum.alarm and first <= 10
    assert (s[100:2000] >= cusum.alarm).mean() < 0.01
    z = EwmaZ()
    assert (z.update(x)[2000:2010] < z.alarm).all()


def test_several_columns_score_the_worst_column() -> None:
    x = np.hstack([series(6, step=0.0), series(7)])
    both = EwmaZ().update(x)
    each = [EwmaZ().update(x[:, [j]]) for j in range(2)]
    np.testing.assert_allclose(both, np.maximum(*each))
    det = EwmaZ()
    det.update(x)
    with pytest.raises(ValueError, match="columns"):
        det.update(x[:, :1])


def test_unknown_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown streaming detector"):
        make_sequential("nope")


P = 48  # rows per day in the seasonal cases


def daily(seed: int, days: int = 30, flat_day: int = 20) -> np.ndarray:
    """A daily swing of amplitude 10 in unit noise, with one flattened day (no swing)."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * P)
    x = 10.0 * np.sin(2 * np.pi * t / P) + rng.normal(size=len(t))
    x[flat_day * P : (flat_day + 1) * P] = rng.normal(size=P)
    return x.reshape(-1, 1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_seasonal_likelihood_flags_a_missing_daily_swing(seed: int) -> None:
    """Every value of the flat day is within the range seen, so only a seasonal baseline sees
    it. With ``period`` the likelihood alarms on the flat day, stays quiet on the normal days
    (once a week is in) and on the day after (unlike yesterday, but like last week); without
    ``period`` it misses the flat day."""
    x = daily(seed)
    flat = slice(20 * P, 21 * P)
    det = Likelihood(period=P)
    s = det.update(x)
    assert s[flat].max() >= det.alarm
    assert s[7 * P : 20 * P].max() < det.alarm
    assert s[21 * P :].max() < det.alarm
    plain = Likelihood()
    assert plain.update(x)[flat].max() < plain.alarm


def test_seasonal_likelihood_chunks_and_pickles_like_one_call() -> None:
    x = daily(5)
    whole = Likelihood(period=P).update(x)
    det = Likelihood(period=P)
    parts, i = [], 0
    for size in [1, 0, 47, 48, 300, 7, 400]:
        parts.append(det.update(x[i : i + size]))
        i += size
    clone = pickle.loads(pickle.dumps(det))
    rest = clone.update(x[i:])
    np.testing.assert_allclose(np.concatenate([*parts, rest]), whole, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(rest, det.update(x[i:]))


def test_seasonal_likelihood_refuses_a_negative_period() -> None:
    with pytest.raises(ValueError, match="period"):
        Likelihood(period=-1)
