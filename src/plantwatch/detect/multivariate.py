"""Multivariate models fitted offline on normal data: PCA (Hotelling T² and SPE), canonical
variate analysis (CVA) and an isolation forest, each exportable to ONNX with the same scores.

All implement :class:`plantwatch.detect.base.Model`: ``fit`` on rows of normal operation,
``score`` rows (``>= 0``, larger is more anomalous; a row with NaN or inf scores NaN and is left
out of ``fit``), ``to_onnx`` the same scoring as an ONNX graph (input ``X`` float32 ``(n, d)``,
output ``score`` float32 ``(n,)``), which is what the stream runs.

PCA (:class:`PCAModel`)
    Each column is standardised with the training mean and standard deviation (``z``). The
    first ``k`` principal directions ``P`` (``d × k``) of the training ``z`` span the normal
    variation; ``k`` is the smallest number explaining ``variance`` of the total (or given as
    ``n_components``). Two statistics judge a row:

    * Hotelling ``T² = Σ_j t_j² / λ_j`` with ``t = z P``: how far the row is *inside* the
      normal subspace (a large excursion along the usual correlations);
    * ``SPE = Q = |z - z P Pᵀ|²``: how far the row is *off* it (a broken correlation).

    Control limits at confidence ``alpha`` come from the training data: for T² the
    F distribution, ``k (n-1)(n+1) / (n (n-k)) · F_alpha(k, n-k)``; for SPE the
    Jackson–Mudholkar formula on the discarded eigenvalues (the Box ``g·χ²_h`` approximation
    when Jackson–Mudholkar is undefined, ``h0 <= 0``). The score is
    ``max(T² / T²_lim, SPE / SPE_lim)``, so ``1.0`` is the combined control limit.

    Dynamic PCA: :func:`lagged` stacks each row with its ``lags`` predecessors, so the model can
    also learn the serial correlations; fit and score the lagged matrix (the ONNX input is then
    the lagged matrix too).

Isolation forest (:class:`IsolationForestModel`)
    scikit-learn's ``IsolationForest`` on the (optionally standardised) rows; the score is
    ``-score_samples``, i.e. ``2^(-E[h(x)] / c(n))`` with ``E[h(x)]`` the mean isolation depth,
    in ``(0, 1]``; about 0.5 and below is ordinary, close to 1 clearly isolated. The ONNX graph
    is skl2onnx's conversion, edited so that its one output is this score.

Canonical variate analysis (:class:`CVAModel`; Russell, Chiang & Braatz 2000)
    A state-space view of a dynamic process. At each time ``t`` the *past* vector
    ``p_t = [x_t, x_{t-1}, ..., x_{t-lags}]`` (the :func:`lagged` row) and the *future*
    ``f_t = [x_{t+1}, ..., x_{t+lags+1}]`` are standardised; with ``Σpp``, ``Σff``, ``Σfp``
    their covariances, the SVD ``Σff^{-1/2} Σfp Σpp^{-1/2} = U S Vᵀ`` gives the canonical
    correlations ``S`` and the directions of the past most predictive of the future. The first
    ``k`` columns of ``Σpp^{-1/2} V`` map ``p_t`` to the *states* ``s_t`` (uncorrelated, unit
    variance in training), the rest to the *residual* canonical variates ``e_t``. Two
    statistics: ``T²_s = |s_t|²`` (the process moved within its normal dynamics) and
    ``T²_r = |e_t|²`` (past behaviour that the normal dynamics do not explain). ``k`` is chosen
    in ``fit`` by the held-out one-step error of predicting ``x_{t+1}`` from the first ``k``
    states (contiguous blocks), unless given. Each limit is the ``alpha`` quantile of its
    statistic on held-out blocks of the training rows (in-sample values of ``T²_r`` are far
    too small when the past has many columns); the score is
    ``max(T²_s / lim_s, T²_r / lim_r)``, 1.0 the combined limit. Fit and score the lagged
    matrix of *consecutive* rows: ``fit`` reads each row's future from the following rows.
    :func:`select_cva_lags` chooses ``lags`` by the same one-step criterion.

Alert threshold (:func:`threshold_from_normal`, :func:`holdout_scores`)
    A model's own control limit is exact only when its assumptions hold (Gaussian, independent
    rows); the threshold for alerts is better read from scores of *normal* data the model was
    not fitted on: :func:`holdout_scores` fits the model on all but one contiguous block of the
    training rows and scores that block, for each of ``folds`` blocks; the threshold is then a
    high quantile of those held-out scores (:func:`threshold_from_normal`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np

from plantwatch.detect.base import F64, Model

__all__ = [
    "CVAModel",
    "IsolationForestModel",
    "PCAModel",
    "holdout_scores",
    "lagged",
    "select_cva_lags",
    "threshold_from_normal",
]

OPSET = 17
#: IR version written into hand-built graphs (opset 17 pairs with IR 8; onnxruntime reads it).
IR_VERSION = 8


def _as_2d(x: F64) -> F64:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-d feature matrix (rows, columns), got shape {a.shape}")
    return a


def _finite_rows(x: F64) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return cast(np.ndarray[Any, np.dtype[np.bool_]], np.isfinite(x).all(axis=1))


def lagged(x: F64, lags: int) -> F64:
    """Rows of ``x`` (shape ``(n, d)``) stacked with their ``lags`` predecessors.

    Row ``i`` of the result is ``[x[i + lags], x[i + lags - 1], ..., x[i]]`` (current values
    first), so the result has ``n - lags`` rows and ``d * (lags + 1)`` columns: the first
    ``lags`` rows of ``x`` have no full history and give no row. ``lags = 0`` returns ``x``.
    """
    a = _as_2d(x)
    if lags < 0:
        raise ValueError(f"lags must be >= 0, got {lags}")
    n = len(a)
    if n <= lags:
        return np.zeros((0, a.shape[1] * (lags + 1)), np.float64)
    return np.hstack([a[lags - i : n - i] for i in range(lags + 1)])


def threshold_from_normal(scores: F64, quantile: float = 0.99) -> float:
    """The alert threshold: the ``quantile`` of the finite ``scores`` of *normal* rows (linear
    interpolation), so about ``1 - quantile`` of normal rows raise an alert. Use scores of rows
    the model was not fitted on (:func:`holdout_scores`): in-sample scores are optimistic."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    s = np.asarray(scores, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if len(s) == 0:
        raise ValueError("no finite scores of normal data to read a threshold from")
    return float(np.quantile(s, quantile))


def holdout_scores(factory: Callable[[], Model], x: F64, folds: int = 5) -> F64:
    """Out-of-fold scores of the rows of ``x``: the rows are cut into ``folds`` contiguous
    blocks; each block is scored by a model (``factory()``) fitted on the other blocks.
    Contiguous blocks (not shuffled rows) because rows of a time series are correlated: a
    shuffled split would score rows whose neighbours were in the fit, and look too good."""
    a = _as_2d(x)
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if len(a) < 2 * folds:
        raise ValueError(f"{len(a)} rows are too few for {folds} folds")
    out = np.full(len(a), np.nan)
    for block in np.array_split(np.arange(len(a)), folds):
        keep = np.ones(len(a), bool)
        keep[block] = False
        out[block] = factory().fit(a[keep]).score(a[block])
    return out


def _standardise_params(x: F64) -> tuple[F64, F64]:
    mean = x.mean(axis=0)
    std = x.std(axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1])
    std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
    return mean, std


class PCAModel:
    """PCA with Hotelling T² and SPE (module docstring); ``score = max(T²/T²_lim, SPE/SPE_lim)``.

    ``variance``: keep the fewest components explaining this fraction of the standardised
    variance, unless ``n_components`` is given. ``alpha``: confidence of the control limits.
    """

    name = "pca"

    def __init__(
        self, *, variance: float = 0.9, n_components: int | None = None, alpha: float = 0.99
    ) -> None:
        if not 0.0 < variance <= 1.0:
            raise ValueError(f"variance must be in (0, 1], got {variance}")
        if n_components is not None and n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.variance = variance
        self.n_components = n_components
        self.alpha = alpha
        self.mean_: F64 | None = None
        self.std_: F64 | None = None
        self.components_: F64 | None = None  # P, shape (d, k)
        self.eigenvalues_: F64 | None = None  # all d eigenvalues, descending
        self.k_ = 0
        self.n_train_ = 0
        self.t2_limit_ = np.nan
        self.spe_limit_ = np.nan

    def fit(self, x: F64) -> PCAModel:
        from scipy import stats  # type: ignore[import-untyped]

        a = _as_2d(x)
        a = a[_finite_rows(a)]
        n, d = a.shape
        if n < 3:
            raise ValueError(f"PCA needs at least 3 finite rows to fit, got {n}")
        mean, std = _standardise_params(a)
        z = (a - mean) / std
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        ev = np.zeros(d)
        ev[: len(s)] = s**2 / (n - 1)
        if self.n_components is not None:
            k = min(self.n_components, d, n - 2)
        else:
            frac = np.cumsum(ev) / max(ev.sum(), 1e-300)
            k = int(np.searchsorted(frac, self.variance - 1e-12) + 1)
            k = min(k, d, n - 2)
        k = max(k, 1)
        self.mean_, self.std_ = mean, std
        self.components_ = np.ascontiguousarray(vt[:k].T)
        self.eigenvalues_ = ev
        self.k_, self.n_train_ = k, n
        self.t2_limit_ = float(
            k * (n - 1) * (n + 1) / (n * (n - k)) * stats.f.ppf(self.alpha, k, n - k)
        )
        self.spe_limit_ = _spe_limit(ev[k:], self.alpha)
        return self

    def _check(self) -> tuple[F64, F64, F64, F64]:
        if self.mean_ is None or self.std_ is None or self.components_ is None:
            raise RuntimeError("PCAModel is not fitted: call fit() first")
        assert self.eigenvalues_ is not None
        return self.mean_, self.std_, self.components_, self.eigenvalues_[: self.k_]

    def _stats(self, x: F64) -> tuple[F64, F64]:
        mean, std, p, ev = self._check()
        a = _as_2d(x)
        if a.shape[1] != len(mean):
            raise ValueError(f"model was fitted on {len(mean)} columns, got {a.shape[1]}")
        bad = ~_finite_rows(a)
        z = (np.where(bad[:, None], 0.0, a) - mean) / std
        t = z @ p
        t2 = (t**2 / ev).sum(axis=1)
        r = z - t @ p.T
        spe = (r**2).sum(axis=1)
        t2[bad] = np.nan
        spe[bad] = np.nan
        return t2, spe

    def t2(self, x: F64) -> F64:
        """Hotelling T² of the rows (NaN for rows with NaN or inf)."""
        return self._stats(x)[0]

    def spe(self, x: F64) -> F64:
        """SPE (Q), the squared distance to the normal subspace (NaN for bad rows)."""
        return self._stats(x)[1]

    def score(self, x: F64) -> F64:
        t2, spe = self._stats(x)
        return np.maximum(t2 / self.t2_limit_, spe / self.spe_limit_)

    def to_onnx(self) -> bytes:
        from onnx import helper, numpy_helper

        mean, std, p, ev = self._check()
        d, k = p.shape
        f32 = np.float32

        def const(name: str, value: Any) -> Any:
            return numpy_helper.from_array(np.asarray(value, dtype=f32), name)

        inits = [
            const("pw_mean", mean),
            const("pw_std", std),
            const("P", p),
            const("inv_ev_t2lim", 1.0 / (ev * self.t2_limit_)),
            const("M", np.eye(d) - p @ p.T),  # residual projection I - P Pᵀ
            const("inv_spelim", 1.0 / self.spe_limit_),
            const("pw_zero", 0.0),
            numpy_helper.from_array(np.array([1], np.int64), "pw_axis1"),
        ]
        n = helper.make_node
        nodes = [
            n("Sub", ["X", "pw_mean"], ["pw_xc"]),
            n("Div", ["pw_xc", "pw_std"], ["z"]),
            n("MatMul", ["z", "P"], ["t"]),
            n("Mul", ["t", "t"], ["t_sq"]),
            n("Mul", ["t_sq", "inv_ev_t2lim"], ["t_w"]),
            n("ReduceSum", ["t_w", "pw_axis1"], ["t2_rel"], keepdims=0),
            n("MatMul", ["z", "M"], ["r"]),
            n("Mul", ["r", "r"], ["r_sq"]),
            n("ReduceSum", ["r_sq", "pw_axis1"], ["spe"], keepdims=0),
            n("Mul", ["spe", "inv_spelim"], ["spe_rel"]),
            n("Max", ["t2_rel", "spe_rel"], ["both"]),
            *_nan_guard_nodes("X", "both", "score"),
        ]
        return _scoring_model(
            nodes,
            inits,
            "plantwatch_pca",
            d,
            f"PCA score max(T2/T2_lim, SPE/SPE_lim); k={k}, alpha={self.alpha}, d={d}",
        )


def _spe_limit(rest: F64, alpha: float) -> float:
    """Control limit of SPE from the discarded eigenvalues ``rest`` (Jackson–Mudholkar; the Box
    ``g·χ²_h`` approximation when ``h0 <= 0``)."""
    from scipy import stats

    th1, th2, th3 = (float((rest**i).sum()) for i in (1, 2, 3))
    if th1 <= 1e-12:  # everything is explained: any residual is abnormal
        return 1e-12
    h0 = 1.0 - 2.0 * th1 * th3 / (3.0 * th2**2)
    if h0 > 0:
        ca = float(stats.norm.ppf(alpha))
        inner = ca * np.sqrt(2.0 * th2 * h0**2) / th1 + 1.0 + th2 * h0 * (h0 - 1.0) / th1**2
        if inner > 0:
            return float(th1 * inner ** (1.0 / h0))
    g, h = th2 / th1, th1**2 / th2
    return float(g * stats.chi2.ppf(alpha, h))


def _scoring_model(
    nodes: list[Any],
    inits: list[Any],
    name: str,
    d: int,
    doc: str,
    *,
    opsets: list[Any] | None = None,
    ir_version: int = IR_VERSION,
) -> bytes:
    """The serialized ONNX model of a scoring graph: input ``X`` float32 ``(N, d)``, output
    ``score`` float32 ``(N,)`` — the contract every fitted model's ``to_onnx`` keeps."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=opsets or [helper.make_opsetid("", OPSET)],
        producer_name="plantwatch",
        ir_version=ir_version,
    )
    model.doc_string = doc
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _nan_guard_nodes(x: str, value: str, out: str) -> list[Any]:
    """Nodes giving ``out = value + 0 * rowsum(x)``: NaN where a row of ``x`` has NaN or inf
    (``0 * inf`` is NaN), ``value`` unchanged elsewhere. ONNX ``Max`` and tree ensembles do not
    reliably propagate NaN, and the Model contract says a bad row scores NaN."""
    from onnx import helper

    return [
        helper.make_node("ReduceSum", [x, "pw_axis1"], [f"{out}_rowsum"], keepdims=0),
        helper.make_node("Mul", [f"{out}_rowsum", "pw_zero"], [f"{out}_nan"]),
        helper.make_node("Add", [value, f"{out}_nan"], [out]),
    ]


class IsolationForestModel:
    """scikit-learn ``IsolationForest`` (single-threaded, seeded); score ``-score_samples`` in
    ``(0, 1]``. ``standardize``: scale columns with the training mean and standard deviation
    first (done in float32, exactly as the ONNX graph does, so both see the same numbers)."""

    name = "iforest"

    def __init__(
        self,
        *,
        n_estimators: int = 200,
        max_samples: int | str = "auto",
        standardize: bool = True,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.standardize = standardize
        self.random_state = random_state
        self.forest_: Any = None
        self.mean_: F64 | None = None
        self.std_: F64 | None = None

    def _prepare(self, a: F64) -> np.ndarray[Any, np.dtype[np.float32]]:
        x32 = a.astype(np.float32)
        if self.standardize:
            assert self.mean_ is not None
            assert self.std_ is not None
            x32 = np.divide(
                np.subtract(x32, self.mean_.astype(np.float32)), self.std_.astype(np.float32)
            )
        return x32

    def fit(self, x: F64) -> IsolationForestModel:
        from sklearn.ensemble import IsolationForest

        a = _as_2d(x)
        a = a[_finite_rows(a)]
        if len(a) < 2:
            raise ValueError(f"an isolation forest needs at least 2 finite rows, got {len(a)}")
        self.mean_, self.std_ = _standardise_params(a)
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            random_state=self.random_state,
            n_jobs=1,
        )
        self.forest_ = forest.fit(self._prepare(a))
        return self

    def score(self, x: F64) -> F64:
        if self.forest_ is None or self.mean_ is None:
            raise RuntimeError("IsolationForestModel is not fitted: call fit() first")
        a = _as_2d(x)
        if a.shape[1] != len(self.mean_):
            raise ValueError(f"model was fitted on {len(self.mean_)} columns, got {a.shape[1]}")
        good = _finite_rows(a)
        out = np.full(len(a), np.nan)
        if good.any():
            out[good] = -self.forest_.score_samples(self._prepare(a[good]))
        return out

    def to_onnx(self) -> bytes:
        from onnx import helper, numpy_helper
        from skl2onnx import to_onnx

        if self.forest_ is None or self.mean_ is None or self.std_ is None:
            raise RuntimeError("IsolationForestModel is not fitted: call fit() first")
        d = len(self.mean_)
        conv = to_onnx(
            self.forest_,
            np.zeros((1, d), np.float32),
            target_opset={"": OPSET, "ai.onnx.ml": 3},
        )
        g = conv.graph
        # skl2onnx names its input "X" and outputs "label" and "scores" (decision_function =
        # score_samples - offset_, shape (N, 1)); rename the input, keep only the score.
        (inp,) = g.input
        forest_in = "forest_in"
        for node in g.node:
            node.input[:] = [forest_in if i == inp.name else i for i in node.input]
        scores = next(o.name for o in g.output if "score" in o.name)
        pre: list[Any] = []
        inits = [
            numpy_helper.from_array(np.array(self.forest_.offset_, np.float32), "pw_offset"),
            numpy_helper.from_array(np.array(0.0, np.float32), "pw_zero"),
            numpy_helper.from_array(np.array([1], np.int64), "pw_axis1"),
            numpy_helper.from_array(np.array([-1], np.int64), "pw_flat"),
        ]
        if self.standardize:
            inits += [
                numpy_helper.from_array(self.mean_.astype(np.float32), "pw_mean"),
                numpy_helper.from_array(self.std_.astype(np.float32), "pw_std"),
            ]
            pre = [
                helper.make_node("Sub", ["X", "pw_mean"], ["pw_xc"]),
                helper.make_node("Div", ["pw_xc", "pw_std"], [forest_in]),
            ]
        else:
            pre = [helper.make_node("Identity", ["X"], [forest_in])]
        post = [
            helper.make_node("Add", [scores, "pw_offset"], ["samples2d"]),  # score_samples
            helper.make_node("Neg", ["samples2d"], ["neg2d"]),
            helper.make_node("Reshape", ["neg2d", "pw_flat"], ["neg"]),
            *_nan_guard_nodes("X", "neg", "score"),
        ]
        nodes = [*pre, *g.node, *post]
        return _scoring_model(
            nodes,
            [*g.initializer, *inits],
            "plantwatch_iforest",
            d,
            "isolation forest score -score_samples in (0, 1]",
            opsets=list(conv.opset_import),
            ir_version=conv.ir_version,
        )


class CVAModel:
    """Canonical variate analysis (module docstring): ``score = max(T²_s/lim_s, T²_r/lim_r)``.

    Fit and score the *lagged* matrix ``lagged(x, lags)`` of consecutive rows (the past vector of
    each time step, current values first); ``fit`` reads the next ``future`` steps of each row
    from the current-value block of the following rows, so its rows must be consecutive.
    ``n_states``: the state order ``k``; ``None`` chooses it in ``fit`` by the held-out one-step
    prediction error (``cv_error_``). ``alpha``: quantile of the held-out training statistics
    used as each limit. ``folds``: contiguous blocks for both. ``eps``: past-covariance
    eigenvalues below ``eps`` × the largest are treated as zero (a numerical guard only).
    """

    name = "cva"

    def __init__(
        self,
        *,
        lags: int = 0,
        n_states: int | None = None,
        future: int | None = None,
        alpha: float = 0.99,
        folds: int = 5,
        eps: float = 1e-6,
    ) -> None:
        if lags < 0:
            raise ValueError(f"lags must be >= 0, got {lags}")
        if n_states is not None and n_states < 1:
            raise ValueError(f"n_states must be >= 1, got {n_states}")
        if future is not None and future < 1:
            raise ValueError(f"future must be >= 1, got {future}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if folds < 2:
            raise ValueError(f"folds must be >= 2, got {folds}")
        self.lags = lags
        self.n_states = n_states
        self.future = future
        self.alpha = alpha
        self.folds = folds
        self.eps = eps
        self.mean_: F64 | None = None
        self.std_: F64 | None = None
        self.states_: F64 | None = None  # J, (d_past, k): standardised past -> states
        self.residual_: F64 | None = None  # L, (d_past, r - k): -> residual canonical variates
        self.correlations_: F64 | None = None  # canonical correlations, descending
        self.k_ = 0
        self.cv_error_: F64 | None = None  # held-out one-step MSE for k = 1, 2, ...
        self.t2s_limit_ = np.nan
        self.t2r_limit_ = np.nan

    def _pairs(self, a: F64) -> tuple[F64, F64, F64]:
        """``(past, next sample, future block)`` of every row whose past and next
        ``future`` rows are all finite (raw, not standardised)."""
        n, dp = a.shape
        d, f = dp // (self.lags + 1), self.future or self.lags + 1
        ok = _finite_rows(a)
        m = n - f
        if m <= 0:
            return np.zeros((0, dp)), np.zeros((0, d)), np.zeros((0, d * f))
        good = ok[:m].copy()
        for j in range(1, f + 1):
            good &= ok[j : m + j]
        idx = np.flatnonzero(good)
        fut = np.hstack([a[idx + j, :d] for j in range(1, f + 1)])
        return a[idx], a[idx + 1, :d], fut

    def _canonical(self, p: F64, fut: F64) -> tuple[F64, F64, F64]:
        """``(Wp V, correlations, Vᵀ)`` for standardised past ``p`` and future ``fut``:
        the columns of ``Wp V`` map the past to canonical variates, most correlated first."""
        m = len(p)

        def inv_sqrt(s: F64) -> F64:
            w, v = np.linalg.eigh(s)
            keep = w > self.eps * max(float(w.max()), 1e-300)
            out: F64 = v[:, keep] / np.sqrt(w[keep])
            return out

        wp = inv_sqrt(p.T @ p / (m - 1))
        wf = inv_sqrt(fut.T @ fut / (m - 1))
        _, s, vt = np.linalg.svd(wf.T @ (fut.T @ p / (m - 1)) @ wp, full_matrices=True)
        corr = np.zeros(wp.shape[1])
        corr[: len(s)] = s[: wp.shape[1]]
        return wp @ vt.T, corr, vt

    def fit(self, x: F64) -> CVAModel:
        a = _as_2d(x)
        dp = a.shape[1]
        if dp % (self.lags + 1):
            raise ValueError(
                f"{dp} columns are not {self.lags + 1} lagged blocks (lags={self.lags})"
            )
        d = dp // (self.lags + 1)
        past, nxt, fut = self._pairs(a)
        if len(past) < 4 * self.folds:
            raise ValueError(f"CVA needs at least {4 * self.folds} consecutive finite rows")
        mean, std = _standardise_params(a[_finite_rows(a)])
        self.mean_, self.std_ = mean, std
        f = fut.shape[1] // d
        zp, zn = (past - mean) / std, (nxt - mean[:d]) / std[:d]
        zf = (fut - np.tile(mean[:d], f)) / np.tile(std[:d], f)

        # held-out canonical variates of every pair, block by block
        blocks = np.array_split(np.arange(len(zp)), self.folds)
        held: list[F64] = []
        errs: list[F64] = []
        for b in blocks:
            keep = np.ones(len(zp), bool)
            keep[b] = False
            c, _, _ = self._canonical(zp[keep], zf[keep])
            ztr, zte = zp[keep] @ c, zp[b] @ c
            held.append(zte)
            # states are uncorrelated with unit variance on the fit rows, so the regression of
            # the next sample on the first k states is the first k rows of Zᵀ Y / (m - 1)
            coef = ztr.T @ zn[keep] / (len(ztr) - 1)
            resid = zn[b].copy()
            e = np.empty(c.shape[1])
            for j in range(c.shape[1]):
                resid -= np.outer(zte[:, j], coef[j])
                e[j] = float((resid**2).sum())
            errs.append(e)
        width = min(len(e) for e in errs)
        self.cv_error_ = np.sum([e[:width] for e in errs], axis=0) / (len(zn) * d)
        c, corr, _ = self._canonical(zp, zf)
        r = c.shape[1]
        if self.n_states is not None:
            k = min(self.n_states, r)
        else:
            k = int(np.argmin(self.cv_error_)) + 1
        k = min(k, width)
        self.k_ = k
        self.states_ = np.ascontiguousarray(c[:, :k])
        self.residual_ = np.ascontiguousarray(c[:, k:])
        self.correlations_ = corr
        t2s = np.concatenate([(z[:, :k] ** 2).sum(axis=1) for z in held])
        t2r = np.concatenate([(z[:, k:] ** 2).sum(axis=1) for z in held])
        self.t2s_limit_ = float(np.quantile(t2s, self.alpha))
        # no residual variates (all kept as states): T²_r is 0 and never decides
        self.t2r_limit_ = float(np.quantile(t2r, self.alpha)) if r > k else np.inf
        return self

    def _check(self) -> tuple[F64, F64, F64, F64]:
        if self.mean_ is None or self.std_ is None or self.states_ is None:
            raise RuntimeError("CVAModel is not fitted: call fit() first")
        assert self.residual_ is not None
        return self.mean_, self.std_, self.states_, self.residual_

    def _stats(self, x: F64) -> tuple[F64, F64]:
        mean, std, j, ll = self._check()
        a = _as_2d(x)
        if a.shape[1] != len(mean):
            raise ValueError(f"model was fitted on {len(mean)} columns, got {a.shape[1]}")
        bad = ~_finite_rows(a)
        z = (np.where(bad[:, None], 0.0, a) - mean) / std
        t2s = ((z @ j) ** 2).sum(axis=1)
        t2r = ((z @ ll) ** 2).sum(axis=1)
        t2s[bad] = np.nan
        t2r[bad] = np.nan
        return t2s, t2r

    def t2_states(self, x: F64) -> F64:
        """T²_s: squared length of the ``k`` canonical states (NaN for bad rows)."""
        return self._stats(x)[0]

    def t2_residual(self, x: F64) -> F64:
        """T²_r: squared length of the residual canonical variates (NaN for bad rows)."""
        return self._stats(x)[1]

    def score(self, x: F64) -> F64:
        t2s, t2r = self._stats(x)
        return np.maximum(t2s / self.t2s_limit_, t2r / self.t2r_limit_)

    def to_onnx(self) -> bytes:
        from onnx import helper, numpy_helper

        mean, std, j, ll = self._check()
        dp = len(mean)
        f32 = np.float32
        # sum((z @ J)²) / lim = sum((z @ J / sqrt(lim))²); an empty L becomes one zero column
        res = ll / np.sqrt(self.t2r_limit_) if ll.shape[1] else np.zeros((dp, 1))
        inits = [
            numpy_helper.from_array(np.asarray(v, f32), name)
            for name, v in (
                ("pw_mean", mean),
                ("pw_std", std),
                ("Js", j / np.sqrt(self.t2s_limit_)),
                ("Lr", res),
                ("pw_zero", 0.0),
            )
        ]
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "pw_axis1"))
        n = helper.make_node
        nodes = [
            n("Sub", ["X", "pw_mean"], ["pw_xc"]),
            n("Div", ["pw_xc", "pw_std"], ["z"]),
            n("MatMul", ["z", "Js"], ["s"]),
            n("Mul", ["s", "s"], ["s_sq"]),
            n("ReduceSum", ["s_sq", "pw_axis1"], ["t2s_rel"], keepdims=0),
            n("MatMul", ["z", "Lr"], ["e"]),
            n("Mul", ["e", "e"], ["e_sq"]),
            n("ReduceSum", ["e_sq", "pw_axis1"], ["t2r_rel"], keepdims=0),
            n("Max", ["t2s_rel", "t2r_rel"], ["both"]),
            *_nan_guard_nodes("X", "both", "score"),
        ]
        return _scoring_model(
            nodes,
            inits,
            "plantwatch_cva",
            dp,
            f"CVA score max(T2s/lim, T2r/lim); lags={self.lags}, k={self.k_}, d={dp}",
        )


def select_cva_lags(x: F64, max_lags: int = 6, folds: int = 5) -> tuple[int, dict[int, float]]:
    """The CVA past length for the consecutive raw rows ``x``: for each ``lags`` in
    ``0..max_lags``, a :class:`CVAModel` with its state order chosen automatically is fitted
    on ``lagged(x, lags)``; the lag with the smallest held-out one-step prediction error
    (``min cv_error_``) wins. Uses only ``x``. Returns ``(lags, {lags: error})``."""
    errors: dict[int, float] = {}
    for lags in range(max_lags + 1):
        m = CVAModel(lags=lags, folds=folds).fit(lagged(x, lags))
        assert m.cv_error_ is not None
        errors[lags] = float(m.cv_error_.min())
    return min(errors, key=errors.__getitem__), errors
