"""Remaining useful life (RUL): how many cycles (or minutes) a degrading machine has left.

The method is the classic "health features + regressor" recipe for run-to-failure data:

1. **History.** A run is one machine (or engine) observed at regular steps — operating cycles
   for C-MAPSS, fixed time windows (e.g. 60 s sensor means) for the simulator — from a healthy
   start towards failure. Rows of all runs are stacked in one ``(n, d)`` matrix, each run's rows
   contiguous and in time order, with a run id per row.
2. **Features** (:func:`rul_features`, the one function used both to train and to score). For
   every row, the trailing window of the last ``window`` rows *of the same run* (fewer at the
   start of a run) gives, per sensor: the last value, the mean, the least-squares slope per
   step and the standard deviation (ddof 0). Optionally the row's age (steps since the run
   started, counting from 1) is appended. NaN readings are left out of every statistic. The
   computation is vectorised: the trailing windows are gathered into an ``(n, window, d)``
   block (in chunks of rows) and reduced with masked sums, no per-row Python loop.
3. **Target** (:func:`capped_rul`). Early in a run a machine shows no sign of the failure to
   come, so no model can tell 300 cycles from 200. The standard practice (Heimes 2008, and most
   C-MAPSS papers since) is a piece-wise linear target: the true RUL capped at a knee, e.g. 125
   cycles for C-MAPSS — "healthy" until the knee, then counting down linearly to 0.
4. **Regressor** (:class:`RulRegressor`). scikit-learn's ``HistGradientBoostingRegressor``
   (squared error, fixed iteration count, no early stopping, a fixed ``random_state``, fitted
   and run under a one-thread limit) on the features; predictions are clipped to
   ``[0, cap]``. :meth:`RulRegressor.to_onnx` exports the same trees as one ``ai.onnx.ml``
   TreeEnsembleRegressor, plus a Clip and a Reshape: input ``X`` float32 ``(n, d)``, output
   ``rul`` float32 ``(n,)`` (written directly: skl2onnx's converter for this estimator fails
   with onnx 1.23, see :meth:`RulRegressor.to_onnx`).

Scores (:func:`rmse`, :func:`phm08_score`): with ``d = predicted − true``, RMSE is
``sqrt(mean(d²))``; the PHM08 challenge score is ``Σ exp(−d/13) − 1`` for early predictions
(``d < 0``) and ``Σ exp(d/10) − 1`` for late ones (``d ≥ 0``): predicting failure too late
costs more than too early. Lower is better for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: The usual knee of the piece-wise linear C-MAPSS target, in cycles.
CMAPSS_CAP = 125.0
STATS: tuple[str, ...] = ("last", "mean", "slope", "std")
_CHUNK_ELEMS = 4_000_000  # rows × window × sensors gathered at once (32 MB of float64)


# -- runs and targets ---------------------------------------------------------------------------


def run_starts(runs: npt.ArrayLike) -> I64:
    """For each row, the index of the first row of its run.

    ``runs`` holds one run id per row; each run's rows must be contiguous (a ValueError says
    which id comes back after another run started).
    """
    r = np.asarray(runs)
    n = len(r)
    if n == 0:
        return np.zeros(0, np.int64)
    change = np.ones(n, np.bool_)
    change[1:] = r[1:] != r[:-1]
    firsts = np.flatnonzero(change)
    ids = r[firsts]
    if len(np.unique(ids)) != len(ids):
        uniq, counts = np.unique(ids, return_counts=True)
        raise ValueError(
            f"the rows of run {uniq[counts > 1][0]!r} are not contiguous: sort the rows by run, "
            "then by time"
        )
    starts: I64 = np.repeat(firsts, np.diff(np.append(firsts, n))).astype(np.int64)
    return starts


def steps_to_end(runs: npt.ArrayLike) -> F64:
    """For run-to-failure histories: steps left until each run's last row (0 on that row)."""
    r = np.asarray(runs)
    n = len(r)
    if n == 0:
        return np.zeros(0, np.float64)
    starts = run_starts(r)
    firsts = np.unique(starts)
    lasts = np.append(firsts[1:], n) - 1
    last_of_row = np.repeat(lasts, np.diff(np.append(firsts, n)))
    out: F64 = (last_of_row - np.arange(n)).astype(np.float64)
    return out


def capped_rul(rul: npt.ArrayLike, cap: float = CMAPSS_CAP) -> F64:
    """The piece-wise linear target: ``min(rul, cap)`` (the RUL is flat at ``cap`` before the
    knee, then falls linearly to 0 at failure)."""
    out: F64 = np.minimum(np.asarray(rul, np.float64), float(cap))
    return out


# -- features -------------------------------------------------------------------------------------


def feature_names(sensors: list[str] | tuple[str, ...], *, age: bool) -> list[str]:
    """Column names of :func:`rul_features` for sensors named ``sensors``."""
    names = [f"{s}_{stat}" for stat in STATS for s in sensors]
    return [*names, "age"] if age else names


def rul_features(values: npt.ArrayLike, runs: npt.ArrayLike, *, window: int, age: bool) -> F64:
    """Trailing-window features of every row (see the module docstring, step 2).

    ``values`` is ``(n, d)`` (rows of all runs, each run contiguous and in time order), ``runs``
    the run id of each row. Returns ``(n, 4 d [+ 1])``: last, mean, slope, std of each sensor
    over the last ``window`` rows of the row's run (the blocks in that order, sensors in column
    order), then the age (1 on a run's first row) when ``age``. A statistic with no finite value
    in its window is NaN; slope and std are 0 over a single value.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    x = np.asarray(values, np.float64)
    if x.ndim != 2:
        raise ValueError(f"values must be 2-D (rows, sensors), got shape {x.shape}")
    n, d = x.shape
    if len(np.asarray(runs)) != n:
        raise ValueError(f"runs has {len(np.asarray(runs))} ids for {n} rows")
    starts = run_starts(runs)
    out = np.empty((n, 4 * d + (1 if age else 0)), np.float64)
    if age:
        out[:, -1] = np.arange(n) - starts + 1
    step = max(1, _CHUNK_ELEMS // max(1, window * d))
    k = np.arange(window)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        rows = np.arange(lo, hi)
        idx = rows[:, None] - (window - 1) + k[None, :]  # (m, window), oldest first
        ok = idx >= starts[lo:hi, None]
        block = x[np.maximum(idx, 0)]  # (m, window, d)
        valid = ok[:, :, None] & np.isfinite(block)
        out[lo:hi, : 4 * d] = _reduce(block, valid, window, d)
    return out


def _reduce(block: F64, valid: npt.NDArray[np.bool_], window: int, d: int) -> F64:
    """``(m, 4 d)`` statistics of a gathered ``(m, window, d)`` block."""
    m = block.shape[0]
    xv = np.where(valid, block, 0.0)
    cnt = valid.sum(axis=1).astype(np.float64)  # (m, d)
    has = cnt > 0
    safe = np.where(has, cnt, 1.0)
    mean = xv.sum(axis=1) / safe
    t = np.arange(window, dtype=np.float64)[None, :, None]
    tv = np.where(valid, t, 0.0)
    tmean = tv.sum(axis=1) / safe
    dt = np.where(valid, t - tmean[:, None, :], 0.0)
    dx = np.where(valid, block - mean[:, None, :], 0.0)
    sxx = (dt * dt).sum(axis=1)
    sxy = (dt * dx).sum(axis=1)
    slope = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), 0.0)
    std = np.sqrt((dx * dx).sum(axis=1) / safe)
    # last finite value: the highest window position holding a valid reading
    pos = np.where(valid, np.arange(window)[None, :, None], -1).max(axis=1)  # (m, d)
    last = np.take_along_axis(block, np.maximum(pos, 0)[:, None, :], axis=1)[:, 0, :]
    stats = np.stack([last, mean, slope, std], axis=1)  # (m, 4, d)
    out: F64 = np.where(has[:, None, :], stats, np.nan).reshape(m, 4 * d)
    return out


# -- scores ---------------------------------------------------------------------------------------


def rmse(predicted: npt.ArrayLike, true: npt.ArrayLike) -> float:
    """Root mean squared error of the predictions."""
    e = np.asarray(predicted, np.float64) - np.asarray(true, np.float64)
    return float(np.sqrt(np.mean(e * e))) if len(e) else float("nan")


def phm08_terms(predicted: npt.ArrayLike, true: npt.ArrayLike) -> F64:
    """Per-unit PHM08 cost: ``exp(−d/13) − 1`` if early (``d < 0``), else ``exp(d/10) − 1``."""
    dd = np.asarray(predicted, np.float64) - np.asarray(true, np.float64)
    out: F64 = np.where(dd < 0, np.expm1(-dd / 13.0), np.expm1(dd / 10.0))
    return out


def phm08_score(predicted: npt.ArrayLike, true: npt.ArrayLike) -> float:
    """The PHM08 challenge score: the sum of :func:`phm08_terms` (lower is better)."""
    return float(phm08_terms(predicted, true).sum())


# -- the regressor --------------------------------------------------------------------------------


@dataclass
class RulRegressor:
    """Gradient-boosted trees on :func:`rul_features`, trained on the capped RUL.

    Deterministic for a given ``seed`` (no early stopping, no subsampling, one thread).
    """

    cap: float = CMAPSS_CAP
    max_iter: int = 300
    learning_rate: float = 0.05
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    seed: int = 0
    name: str = "rul_hgb"
    n_features: int = 0
    _est: Any = field(default=None, repr=False)

    def fit(self, features: npt.ArrayLike, rul: npt.ArrayLike) -> RulRegressor:
        """Fit on feature rows and their true RUL (capped here at ``cap``); returns ``self``.
        Rows whose RUL is not finite are left out."""
        from sklearn.ensemble import HistGradientBoostingRegressor

        x = np.asarray(features, np.float64)
        y = np.asarray(rul, np.float64)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"need features (n, d) and n targets, got {x.shape} and {y.shape}")
        keep = np.isfinite(y)
        if not keep.any():
            raise ValueError("no row with a finite RUL to fit on")
        est = HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            early_stopping=False,
            random_state=self.seed,
        )
        with _one_thread():
            # float32 inputs: the same numbers the ONNX graph sees
            est.fit(_f32(x[keep]), capped_rul(y[keep], self.cap))
        self._est = est
        self.n_features = x.shape[1]
        return self

    def predict(self, features: npt.ArrayLike) -> F64:
        """Predicted RUL of each row, in ``[0, cap]`` (NaN features are allowed)."""
        if self._est is None:
            raise RuntimeError("RulRegressor.predict before fit")
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected features (n, {self.n_features}), got shape {x.shape}")
        if len(x) == 0:
            return np.zeros(0, np.float64)
        with _one_thread():
            raw = np.asarray(self._est.predict(_f32(x)), np.float64)
        out: F64 = np.clip(raw, 0.0, self.cap)
        return out

    def to_onnx(self) -> bytes:
        """The fitted prediction as ONNX: input ``X`` float32 ``(n, d)``, output ``rul`` float32
        ``(n,)``: one ``ai.onnx.ml`` TreeEnsembleRegressor (all boosted trees, the baseline as
        base value), then Clip to ``[0, cap]``, then Reshape.

        skl2onnx 1.20 has a HistGradientBoostingRegressor converter, but with onnx 1.23 it fails
        (it passes a Python ``bool`` for the leaves' ``nodes_missing_value_tracks_true``, which
        onnx now rejects), so the same attributes are written here from the fitted trees. Each
        threshold is the largest float32 not above scikit-learn's float64 threshold, so a
        float32 input takes the same branch in both; NaN follows ``missing_go_to_left``.
        """
        if self._est is None:
            raise RuntimeError("RulRegressor.to_onnx before fit")
        return _hgb_onnx(self._est, self.n_features, self.cap)


def _hgb_onnx(est: Any, n_features: int, cap: float) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    tree_ids: list[int] = []
    node_ids: list[int] = []
    feats: list[int] = []
    thresholds: list[float] = []
    modes: list[str] = []
    lefts: list[int] = []
    rights: list[int] = []
    missing: list[int] = []
    leaf_tree: list[int] = []
    leaf_node: list[int] = []
    leaf_value: list[float] = []
    for tree, (predictor,) in enumerate(est._predictors):
        nodes = predictor.nodes
        n = len(nodes)
        leaf = nodes["is_leaf"].astype(bool)
        thr = nodes["num_threshold"].astype(np.float64)
        thr32 = thr.astype(np.float32)
        above = thr32.astype(np.float64) > thr
        thr32[above] = np.nextafter(thr32[above], np.float32(-np.inf))
        tree_ids += [tree] * n
        node_ids += list(range(n))
        feats += np.where(leaf, 0, nodes["feature_idx"]).astype(int).tolist()
        thresholds += np.where(leaf, 0.0, thr32).astype(float).tolist()
        modes += ["LEAF" if x else "BRANCH_LEQ" for x in leaf.tolist()]
        lefts += np.where(leaf, 0, nodes["left"]).astype(int).tolist()
        rights += np.where(leaf, 0, nodes["right"]).astype(int).tolist()
        missing += np.where(leaf, 0, nodes["missing_go_to_left"]).astype(int).tolist()
        where = np.flatnonzero(leaf)
        leaf_tree += [tree] * len(where)
        leaf_node += where.tolist()
        leaf_value += nodes["value"][where].astype(float).tolist()
    trees = helper.make_node(
        "TreeEnsembleRegressor",
        ["X"],
        ["raw"],
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function="SUM",
        base_values=[float(np.ravel(est._baseline_prediction)[0])],
        nodes_treeids=tree_ids,
        nodes_nodeids=node_ids,
        nodes_featureids=feats,
        nodes_values=thresholds,
        nodes_modes=modes,
        nodes_truenodeids=lefts,
        nodes_falsenodeids=rights,
        nodes_missing_value_tracks_true=missing,
        target_treeids=leaf_tree,
        target_nodeids=leaf_node,
        target_ids=[0] * len(leaf_tree),
        target_weights=leaf_value,
    )
    graph = helper.make_graph(
        [
            trees,
            helper.make_node("Clip", ["raw", "rul_lo", "rul_hi"], ["clipped"]),
            helper.make_node("Reshape", ["clipped", "rul_shape"], ["rul"]),
        ],
        "rul_hgb",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("rul", TensorProto.FLOAT, [None])],
        initializer=[
            helper.make_tensor("rul_lo", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("rul_hi", TensorProto.FLOAT, [], [float(cap)]),
            helper.make_tensor("rul_shape", TensorProto.INT64, [1], [-1]),
        ],
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="plantwatch",
    )
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    out: bytes = proto.SerializeToString()
    return out


def _one_thread() -> Any:
    """A context in which OpenMP/BLAS use one thread (the box is shared; results don't change)."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    return threadpool_limits(limits=1)


def _f32(x: F64) -> F64:
    """Values rounded to float32 (kept as float64 for scikit-learn)."""
    out: F64 = x.astype(np.float32).astype(np.float64)
    return out
