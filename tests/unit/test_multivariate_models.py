"""PCA (T², SPE) and isolation forest models: behaviour, ONNX parity, pickling, bad rows."""

from __future__ import annotations

import pickle

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from plantwatch.detect.multivariate import (
    IsolationForestModel,
    PCAModel,
    holdout_scores,
    lagged,
    threshold_from_normal,
)

MIX = np.array([[1.0, 0.5, -0.8, 0.3, 1.2], [0.2, -1.0, 0.4, 1.1, -0.3]])


def correlated(n: int, seed: int = 0) -> np.ndarray:
    """Five columns driven by two latent factors plus small noise: rank-2 normal variation."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    return latent @ MIX + 0.05 * rng.normal(size=(n, 5))


def run_onnx(blob: bytes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    (out,) = sess.run(["score"], {"X": x.astype(np.float32)})
    return np.asarray(out)


@pytest.fixture(scope="module")
def train() -> np.ndarray:
    return correlated(2000)


def test_pca_keeps_the_latent_dimension_and_limits_hold_on_normal_data(train: np.ndarray) -> None:
    m = PCAModel(variance=0.95).fit(train)
    assert m.k_ == 2
    fresh = correlated(4000, seed=1)
    # the 99 % control limits: about 1 % of fresh normal rows exceed each
    assert 0.003 < np.mean(m.t2(fresh) > m.t2_limit_) < 0.03
    assert 0.003 < np.mean(m.spe(fresh) > m.spe_limit_) < 0.03
    assert np.all(m.score(fresh) >= 0)


def test_broken_correlation_is_seen_by_spe_and_excursion_by_t2(train: np.ndarray) -> None:
    m = PCAModel(variance=0.95).fit(train)
    mean, std = train.mean(axis=0), train.std(axis=0)
    broken = mean.copy()
    broken[0] += 1.0 * std[0]  # column 0 alone moves: breaks its link to the others
    excursion = np.array([5.0, 5.0]) @ MIX  # 5 sigma in both factors, along the normal pattern
    x = np.vstack([broken, excursion])
    t2, spe = m.t2(x), m.spe(x)
    assert spe[0] > 10 * m.spe_limit_
    assert t2[0] < m.t2_limit_
    assert t2[1] > 4 * m.t2_limit_
    assert spe[1] < m.spe_limit_
    s = m.score(x)
    assert s[0] == pytest.approx(spe[0] / m.spe_limit_)
    assert s[1] == pytest.approx(t2[1] / m.t2_limit_)


def test_rows_with_nan_or_inf_are_skipped_in_fit_and_score_nan(train: np.ndarray) -> None:
    dirty = train.copy()
    dirty[5, 1] = np.nan
    dirty[9, 3] = np.inf
    dirty[5] = 1e6  # only the NaN keeps this huge row out of the fit
    dirty[5, 1] = np.nan
    clean = np.delete(train, [5, 9], axis=0)
    for make in (lambda: PCAModel(variance=0.95), lambda: IsolationForestModel(n_estimators=20)):
        a, b = make().fit(dirty), make().fit(clean)
        x = correlated(50, seed=3)
        np.testing.assert_allclose(a.score(x), b.score(x))
        x[[2, 7], [0, 4]] = [np.nan, -np.inf]
        s = a.score(x)
        assert np.isnan(s[[2, 7]]).all()
        assert np.isfinite(np.delete(s, [2, 7])).all()


@pytest.mark.parametrize(
    "make",
    [lambda: PCAModel(variance=0.95), lambda: PCAModel(n_components=3)],
    ids=["pca-variance", "pca-k3"],
)
def test_pca_onnx_matches_score(train: np.ndarray, make: object) -> None:
    m = make().fit(train)  # type: ignore[operator]
    x = np.vstack([correlated(300, seed=5), correlated(20, seed=6) * 3 + 2])
    x[4, 2] = np.nan
    x[11, 0] = np.inf
    blob = m.to_onnx()
    model = onnx.load_from_string(blob)
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["score"]
    got, want = run_onnx(blob, x), m.score(x)
    assert got.shape == (len(x),)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-4, equal_nan=True)


@pytest.mark.parametrize("standardize", [True, False])
def test_iforest_onnx_matches_score(train: np.ndarray, standardize: bool) -> None:
    m = IsolationForestModel(n_estimators=50, standardize=standardize, random_state=3).fit(train)
    x = np.vstack([correlated(300, seed=7), correlated(20, seed=8) * 4])
    x[6, 1] = np.nan
    blob = m.to_onnx()
    model = onnx.load_from_string(blob)
    assert [o.name for o in model.graph.output] == ["score"]
    got, want = run_onnx(blob, x), m.score(x)
    assert got.shape == (len(x),)
    assert np.isnan(got[6])
    assert np.isnan(want[6])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
    finite = want[np.isfinite(want)]
    assert np.all((finite > 0) & (finite <= 1))
    # the scaled-up rows are isolated sooner: higher scores
    assert np.median(want[-20:]) > np.nanmedian(want[:300])


def test_pickle_round_trip_gives_identical_scores(train: np.ndarray) -> None:
    x = correlated(100, seed=9)
    for m in (PCAModel().fit(train), IsolationForestModel(n_estimators=30).fit(train)):
        again = pickle.loads(pickle.dumps(m))
        np.testing.assert_array_equal(again.score(x), m.score(x))
        assert again.to_onnx() == m.to_onnx()


def test_iforest_is_deterministic_given_seed(train: np.ndarray) -> None:
    x = correlated(100, seed=10)
    a = IsolationForestModel(n_estimators=30, random_state=1).fit(train).score(x)
    b = IsolationForestModel(n_estimators=30, random_state=1).fit(train).score(x)
    c = IsolationForestModel(n_estimators=30, random_state=2).fit(train).score(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unfitted_and_wrong_width_are_clear_errors(train: np.ndarray) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        PCAModel().score(train)
    with pytest.raises(RuntimeError, match="not fitted"):
        IsolationForestModel().to_onnx()
    with pytest.raises(ValueError, match="fitted on 5 columns"):
        PCAModel().fit(train).score(train[:, :3])


def test_lagged_stacks_current_then_previous_rows() -> None:
    x = np.arange(10.0).reshape(5, 2)
    out = lagged(x, 2)
    assert out.shape == (3, 6)
    np.testing.assert_array_equal(out[0], [4, 5, 2, 3, 0, 1])
    np.testing.assert_array_equal(out[-1], [8, 9, 6, 7, 4, 5])
    np.testing.assert_array_equal(lagged(x, 0), x)
    assert lagged(x, 5).shape == (0, 12)


def test_threshold_from_normal_is_the_quantile_of_finite_scores() -> None:
    s = np.r_[np.arange(101.0), np.nan, np.inf]
    assert threshold_from_normal(s, 0.99) == pytest.approx(99.0)
    assert threshold_from_normal(s, 0.5) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="no finite scores"):
        threshold_from_normal(np.array([np.nan]))
    with pytest.raises(ValueError, match="quantile"):
        threshold_from_normal(s, 1.0)


def test_holdout_scores_come_from_models_not_fitted_on_the_block(train: np.ndarray) -> None:
    x = train[:500].copy()
    x[100:110] += 5.0 * train.std(axis=0)  # an odd stretch in the second block
    held = holdout_scores(lambda: PCAModel(variance=0.95), x, folds=5)
    insample = PCAModel(variance=0.95).fit(x).score(x)
    assert held.shape == (500,)
    assert np.isfinite(held).all()
    # scored by a model that never saw it, the odd stretch stands out more than in-sample
    assert held[100:110].mean() > insample[100:110].mean()
