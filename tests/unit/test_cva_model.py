"""Canonical variate analysis model: dynamics it learns, limits on fresh normal data, the
automatic state order and past length, ONNX parity, pickling, bad rows."""

from __future__ import annotations

import pickle

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from plantwatch.detect.multivariate import CVAModel, lagged, select_cva_lags

MIX = np.array(
    [[1.0, 0.5, -0.8, 0.3, 1.2, 0.0], [0.2, -1.0, 0.4, 1.1, -0.3, 0.7]],
)


def oscillator(
    n: int, seed: int = 0, a1: float = 1.5, a2: float = -0.8, *, previous: bool = True
) -> np.ndarray:
    """Six sensors watching one latent AR(2) oscillation ``s_t = a1 s_{t-1} + a2 s_{t-2} + e``
    (and its previous value ``s_{t-1}`` unless ``previous`` is false), plus small sensor noise:
    two states drive the sensors."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n + 200)
    s = np.zeros(n + 200)
    for t in range(2, n + 200):  # 1-d recursion on a small synthetic series
        s[t] = a1 * s[t - 1] + a2 * s[t - 2] + e[t]
    lat = np.column_stack([s[200:], s[199:-1] if previous else np.zeros(n)])
    return lat @ MIX + 0.1 * rng.normal(size=(n, 6))


def run_onnx(blob: bytes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    (out,) = sess.run(["score"], {"X": x.astype(np.float32)})
    return np.asarray(out)


@pytest.fixture(scope="module")
def fitted() -> CVAModel:
    return CVAModel(lags=1).fit(lagged(oscillator(3000), 1))


def test_state_order_found_and_limits_hold_on_fresh_normal_data(fitted: CVAModel) -> None:
    # two latent states drive the sensors: the held-out one-step error bottoms out there
    assert fitted.k_ == 2
    assert fitted.correlations_ is not None
    assert fitted.correlations_[1] > 0.5 > fitted.correlations_[2]
    fresh = lagged(oscillator(6000, seed=1), 1)
    s = fitted.score(fresh)
    assert np.all(s >= 0)
    # each limit is the 99 % quantile of held-out training values: ~1 % (each) exceed it
    assert 0.003 < np.mean(fitted.t2_states(fresh) > fitted.t2s_limit_) < 0.03
    assert 0.003 < np.mean(fitted.t2_residual(fresh) > fitted.t2r_limit_) < 0.03
    assert 0.005 < np.mean(s > 1.0) < 0.05


def test_a_change_in_dynamics_alone_is_detected(fitted: CVAModel) -> None:
    """Same sensors and correlations, but the oscillation is slower: every single sample is
    ordinary, only the sequence is not. A static view barely sees it; CVA does."""
    slow = lagged(oscillator(3000, seed=2, a1=1.9, a2=-0.95), 1)
    normal = lagged(oscillator(3000, seed=3), 1)
    assert np.mean(fitted.score(slow) > 1.0) > 5 * np.mean(fitted.score(normal) > 1.0)
    # a sensor drifting off the shared pattern is seen by the residual variates
    broken = normal.copy()
    broken[:, [2, 8]] += 1.0  # sensor 2 in both the current and the lagged block
    assert np.mean(fitted.t2_residual(broken) > fitted.t2r_limit_) > 0.9


def test_select_cva_lags_needs_history_for_an_oscillation() -> None:
    # the sensors see only s_t, so the state needs the previous sample too
    lags, errors = select_cva_lags(oscillator(1500, seed=4, previous=False), max_lags=3)
    assert set(errors) == {0, 1, 2, 3}
    assert lags >= 1
    assert errors[lags] < 0.8 * errors[0]


def test_given_state_order_is_kept() -> None:
    m = CVAModel(lags=1, n_states=3).fit(lagged(oscillator(800), 1))
    assert m.k_ == 3
    assert m.states_ is not None
    assert m.states_.shape == (12, 3)


def test_onnx_matches_score(fitted: CVAModel) -> None:
    x = lagged(np.vstack([oscillator(300, seed=5), oscillator(30, seed=6) * 3 + 2]), 1)
    x[4, 2] = np.nan
    x[11, 7] = np.inf
    blob = fitted.to_onnx()
    model = onnx.load_from_string(blob)
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["score"]
    got, want = run_onnx(blob, x), fitted.score(x)
    assert got.shape == (len(x),)
    assert got.dtype == np.float32
    assert np.isnan(got[[4, 11]]).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-4, equal_nan=True)


def test_onnx_with_every_variate_kept_as_a_state() -> None:
    m = CVAModel(lags=0, n_states=6).fit(oscillator(600))
    assert m.t2r_limit_ == np.inf
    x = oscillator(50, seed=7)
    np.testing.assert_allclose(run_onnx(m.to_onnx(), x), m.score(x), rtol=2e-4, atol=1e-4)


def test_bad_rows_are_left_out_and_score_nan(fitted: CVAModel) -> None:
    train = lagged(oscillator(3000), 1)
    dirty = np.vstack([train, [[np.nan] * 12, [np.inf] + [1.0] * 11]])
    m = CVAModel(lags=1).fit(dirty)
    x = lagged(oscillator(40, seed=8), 1)
    np.testing.assert_allclose(m.score(x), fitted.score(x), rtol=1e-9)
    x[3, 0] = np.nan
    s = m.score(x)
    assert np.isnan(s[3])
    assert np.isfinite(np.delete(s, 3)).all()
    assert m.score(np.zeros((0, 12))).shape == (0,)


def test_pickle_round_trip(fitted: CVAModel) -> None:
    x = lagged(oscillator(100, seed=9), 1)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.score(x), fitted.score(x))
    assert again.to_onnx() == fitted.to_onnx()


def test_clear_errors() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        CVAModel().score(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="lagged blocks"):
        CVAModel(lags=1).fit(np.zeros((50, 7)))
    with pytest.raises(ValueError, match="consecutive finite rows"):
        CVAModel().fit(oscillator(10))
    m = CVAModel(lags=1).fit(lagged(oscillator(300), 1))
    with pytest.raises(ValueError, match="fitted on 12 columns"):
        m.score(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="n_states"):
        CVAModel(n_states=0)
