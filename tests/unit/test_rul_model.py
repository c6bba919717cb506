"""RUL features, the capped target and the regressor: hand-made runs and synthetic degradation."""

from __future__ import annotations

import pickle

import numpy as np
import onnxruntime as ort
import pytest

from plantwatch.detect.rul import (
    RulRegressor,
    capped_rul,
    feature_names,
    rul_features,
    steps_to_end,
)


def test_features_of_a_tiny_run_by_hand() -> None:
    values = np.array([[1.0], [2.0], [4.0], [10.0], [10.0]])
    runs = np.array([7, 7, 7, 3, 3])
    x = rul_features(values, runs, window=2, age=True)
    assert feature_names(["s"], age=True) == ["s_last", "s_mean", "s_slope", "s_std", "age"]
    expected = np.array(
        [
            [1.0, 1.0, 0.0, 0.0, 1.0],  # one value: slope and std 0
            [2.0, 1.5, 1.0, 0.5, 2.0],
            [4.0, 3.0, 2.0, 1.0, 3.0],  # window [2, 4]: the 1 has left
            [10.0, 10.0, 0.0, 0.0, 1.0],  # a new run: the 4 of run 7 is not in its window
            [10.0, 10.0, 0.0, 0.0, 2.0],
        ]
    )
    np.testing.assert_allclose(x, expected)


def test_features_least_squares_and_nan_by_hand() -> None:
    x = rul_features(
        np.array([[1.0, 1.0], [2.0, np.nan], [4.0, 3.0]]), [0, 0, 0], window=3, age=False
    )
    # column 0, window [1, 2, 4]: mean 7/3; slope 3/2 (sxy = 3, sxx = 2); std sqrt(14/9)
    np.testing.assert_allclose(x[2, [0, 2, 4, 6]], [4.0, 7.0 / 3.0, 1.5, np.sqrt(14.0 / 9.0)])
    # column 1, [1, NaN, 3]: the NaN is left out; slope over t = 0, 2 is 1, std 1
    np.testing.assert_allclose(x[2, [1, 3, 5, 7]], [3.0, 2.0, 1.0, 1.0])
    # on row 1 column 1 the last finite value is still the 1 of row 0
    assert x[1, 1] == 1.0


def test_runs_must_be_contiguous() -> None:
    with pytest.raises(ValueError, match="not contiguous"):
        rul_features(np.zeros((3, 1)), [1, 2, 1], window=2, age=False)


def test_target_counts_down_and_is_capped() -> None:
    np.testing.assert_array_equal(steps_to_end([7, 7, 7, 3, 3]), [2.0, 1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(capped_rul([300.0, 125.0, 40.0], 125.0), [125.0, 125.0, 40.0])


def _degradation_runs(n_runs: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of 120-260 steps: two sensors flat until a random onset, then growing to failure."""
    rng = np.random.default_rng(seed)
    vals, runs, rul = [], [], []
    for r in range(n_runs):
        life = int(rng.integers(120, 260))
        t = np.arange(life)
        onset = life - int(rng.integers(60, 100))
        h = np.maximum(0.0, (t - onset) / (life - onset)) ** 2
        v = np.column_stack([1.0 + 2.0 * h, 5.0 - 1.5 * h]) + rng.normal(0, 0.05, (life, 2))
        vals.append(v)
        runs.append(np.full(life, r))
        rul.append(life - 1 - t)
    return np.concatenate(vals), np.concatenate(runs), np.concatenate(rul).astype(float)


@pytest.fixture(scope="module")
def fitted() -> tuple[RulRegressor, np.ndarray, np.ndarray, np.ndarray]:
    values, runs, rul = _degradation_runs(40, seed=1)
    x = rul_features(values, runs, window=10, age=False)
    np.testing.assert_array_equal(steps_to_end(runs), rul)
    model = RulRegressor(cap=100.0, max_iter=120, seed=3).fit(x, rul)
    tv, tr, trul = _degradation_runs(6, seed=2)
    return model, rul_features(tv, tr, window=10, age=False), tr, trul


def test_more_degraded_means_shorter_rul(
    fitted: tuple[RulRegressor, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    model, x, runs, rul = fitted
    pred = model.predict(x)
    assert pred.min() >= 0.0 and pred.max() <= 100.0
    for r in np.unique(runs):
        idx = np.flatnonzero(runs == r)
        early, mid, late = idx[len(idx) // 4], idx[-40], idx[-5]  # healthy, worn, nearly failed
        assert pred[early] > pred[mid] > pred[late]
        assert abs(pred[late] - rul[late]) < 15.0
    worn = rul <= 60
    assert np.sqrt(np.mean((pred[worn] - rul[worn]) ** 2)) < 15.0


def test_onnx_matches_scikit_learn(
    fitted: tuple[RulRegressor, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    model, x, _, _ = fitted
    x = x.copy()
    x[::9, 3] = np.nan  # missing values take the branch scikit-learn learned for them
    session = ort.InferenceSession(model.to_onnx(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["X"]
    (out,) = session.run(None, {"X": x.astype(np.float32)})
    assert out.dtype == np.float32 and out.shape == (len(x),)
    expected = model.predict(x)
    assert np.ptp(expected) > 50.0  # the comparison covers the whole range of predictions
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_pickle_round_trip_and_seeded_determinism(
    fitted: tuple[RulRegressor, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    model, x, _, _ = fitted
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    values, runs, rul = _degradation_runs(40, seed=1)
    again = RulRegressor(cap=100.0, max_iter=120, seed=3).fit(
        rul_features(values, runs, window=10, age=False), rul
    )
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="expected features"):
        model.predict(x[:, :-1])
