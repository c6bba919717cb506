"""``plantwatch evaluate cmapss``: remaining useful life on NASA C-MAPSS FD001 (turbofan engines).

The data (read in place; see the dataset's README): 100 training engines run from healthy to
failure, 100 test engines cut off some time before failure, and ``RUL_FD001.txt``, the true
RUL (cycles) after the last test cycle of each test engine. Rows are
``unit, cycle, op_setting_1..3, sensor_1..21``; FD001 has one operating condition and one fault
mode, and sensors s1, s5, s6, s10, s16, s18, s19 are (nearly) constant, so the 14 others are
used.

Method (:mod:`plantwatch.detect.rul`): per engine and cycle, trailing-window features of the 14
sensors (last, mean, least-squares slope, std over the last ``W`` cycles) plus the cycle number;
gradient-boosted trees trained on the training engines' RUL capped at 125 cycles (the standard
piece-wise linear target). The test engines are scored at their last cycle.

Hyper-parameters are chosen on the training engines only: the window ``W`` is picked from
:data:`WINDOWS` by a 5-fold cross-validation grouped by engine (each fold fits on 80 engines
and scores every cycle >= 31 of the other 20 against the capped RUL — 31 is the shortest test
history). The regressor's own settings are the fixed defaults of
:class:`~plantwatch.detect.rul.RulRegressor`. ``--window`` skips the selection.

Scores over the 100 test engines, against the true (uncapped) RUL, ``d = predicted − true``:
RMSE and the PHM08 score ``Σ exp(−d/13) − 1`` (early, ``d < 0``) or ``exp(d/10) − 1`` (late).
Published FD001 RMSE: CNN 18.45 (Babu 2016), LSTM 16.14 (Zheng 2017), DCNN 12.61 and score ≈ 274
(Li 2018).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plantwatch.detect.rul import (
    CMAPSS_CAP,
    F64,
    RulRegressor,
    phm08_score,
    phm08_terms,
    rmse,
    rul_features,
    steps_to_end,
)
from plantwatch.evaluate.datasets import dataset
from plantwatch.evaluate.report import Report

HELP = "remaining useful life on NASA C-MAPSS FD001 (RMSE and PHM08 score over 100 test engines)"

NAME = "CMAPSS_FD001"
#: Sensors that carry information in FD001 (1-based; s1, s5, s6, s10, s16, s18, s19 are flat).
SENSORS: tuple[int, ...] = (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21)
#: Candidate trailing windows (cycles), chosen among by cross-validation on the training engines.
WINDOWS: tuple[int, ...] = (30, 60, 90, 120)
FOLDS = 5
MIN_HISTORY = 31  # the shortest test engine history, in cycles
BANDS: tuple[tuple[float, float], ...] = (
    (0, 25),
    (25, 50),
    (50, 75),
    (75, 100),
    (100, 125),
    (125, float("inf")),
)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--window",
        type=int,
        default=None,
        metavar="CYCLES",
        help=f"trailing feature window; default: chosen from {list(WINDOWS)} by 5-fold "
        "cross-validation on the training engines",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="random state of the regressor and the CV folds"
    )


def load(folder: Path, name: str) -> F64:
    """One of the space-separated FD001 files as an ``(n, 26)`` float array."""
    path = folder / name
    data: F64 = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if data.shape[1] < 26:
        raise ValueError(f"{path}: expected 26 columns, got {data.shape[1]}")
    return data


def sensor_matrix(rows: F64) -> F64:
    """The informative sensor columns of C-MAPSS rows."""
    out: F64 = rows[:, [4 + s for s in SENSORS]]
    return out


def cross_validate(train: F64, windows: tuple[int, ...], seed: int) -> dict[int, float]:
    """Grouped-by-engine CV RMSE (against the capped RUL, cycles >= 31) of each window."""
    units = train[:, 0]
    y = steps_to_end(units)
    ids = np.unique(units)
    fold_of = np.random.default_rng(seed).permutation(len(ids)) % FOLDS
    fold = fold_of[np.searchsorted(ids, units)]
    scored = train[:, 1] >= MIN_HISTORY
    out: dict[int, float] = {}
    for w in windows:
        x = rul_features(sensor_matrix(train), units, window=w, age=True)
        pred = np.empty(len(y))
        for f in range(FOLDS):
            held = fold == f
            model = RulRegressor(seed=seed).fit(x[~held], y[~held])
            pred[held] = model.predict(x[held])
        out[w] = rmse(pred[scored], np.minimum(y[scored], CMAPSS_CAP))
    return out


def _last_rows(units: F64) -> F64:
    return np.append(np.flatnonzero(np.diff(units) != 0), len(units) - 1).astype(np.float64)


def evaluate(folder: Path, *, window: int | None = None, seed: int = 0) -> Report:
    """Train on ``train_FD001``, score the last cycle of every test engine, report."""
    t0 = time.perf_counter()
    train = load(folder, "train_FD001.txt")
    test = load(folder, "test_FD001.txt")
    truth = np.loadtxt(folder / "RUL_FD001.txt", dtype=np.float64, ndmin=1)
    last = _last_rows(test[:, 0]).astype(np.int64)
    if len(last) != len(truth):
        raise ValueError(f"{len(last)} test engines but {len(truth)} lines in RUL_FD001.txt")
    cv: dict[int, float] = {}
    if window is None:
        cv = cross_validate(train, WINDOWS, seed)
        window = min(cv, key=lambda w: cv[w])
    model = RulRegressor(seed=seed).fit(
        rul_features(sensor_matrix(train), train[:, 0], window=window, age=True),
        steps_to_end(train[:, 0]),
    )
    x_test = rul_features(sensor_matrix(test), test[:, 0], window=window, age=True)
    pred = model.predict(x_test[last])
    err = pred - truth
    rows: list[Sequence[Any]] = []
    for lo, hi in BANDS:
        sel = (truth >= lo) & (truth < hi)
        label = f"{lo:.0f}–{hi:.0f}" if np.isfinite(hi) else f">= {lo:.0f}"
        rows.append(
            [
                label,
                int(sel.sum()),
                rmse(pred[sel], truth[sel]) if sel.any() else None,
                float(err[sel].mean()) if sel.any() else None,
                phm08_score(pred[sel], truth[sel]),
            ]
        )
    rows.append(["all", len(truth), rmse(pred, truth), float(err.mean()), phm08_score(pred, truth)])
    terms = phm08_terms(pred, truth)
    engines = [
        {
            "unit": int(test[i, 0]),
            "cycles_seen": int(test[i, 1]),
            "true_rul": float(t),
            "predicted_rul": float(p),
            "error": float(p - t),
            "phm08": float(s),
        }
        for i, t, p, s in zip(last.tolist(), truth, pred, terms, strict=True)
    ]
    return Report(
        title=f"C-MAPSS FD001 remaining useful life ({len(truth)} test engines, last cycle)",
        columns=("true RUL band", "engines", "RMSE", "mean error", "PHM08 score"),
        rows=rows,
        summary={
            "RMSE (cycles)": rmse(pred, truth),
            "PHM08 score": phm08_score(pred, truth),
            "RMSE vs RUL capped at 125": rmse(pred, np.minimum(truth, CMAPSS_CAP)),
            "late predictions": int((err > 0).sum()),
            "window (cycles)": window,
            "published RMSE": "CNN 18.45, LSTM 16.14, DCNN 12.61",
            "seconds": round(time.perf_counter() - t0, 1),
        },
        details={
            "method": "HistGradientBoosting on trailing-window features (last, mean, slope, std "
            "of 14 sensors, plus cycle), target RUL capped at 125",
            "sensors": [f"s{s}" for s in SENSORS],
            "cap": CMAPSS_CAP,
            "window": window,
            "cv_rmse_by_window": {str(w): v for w, v in cv.items()},
            "regressor": {
                k: getattr(model, k)
                for k in (
                    "max_iter",
                    "learning_rate",
                    "max_leaf_nodes",
                    "min_samples_leaf",
                    "l2_regularization",
                    "seed",
                )
            },
            "engines": engines,
        },
    )


def run(args: argparse.Namespace) -> Report:
    folder = dataset(NAME, getattr(args, "datasets", None))
    return evaluate(folder, window=getattr(args, "window", None), seed=getattr(args, "seed", 0))
