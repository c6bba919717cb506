"""``plantwatch evaluate nab``: the Numenta Anomaly Benchmark, scored as NAB scores it.

Each of the 58 NAB series is fed, in time order, to a fresh streaming detector (a
:class:`~plantwatch.detect.base.Sequential` from :mod:`plantwatch.detect.sequential`); its
per-row scores are then turned into detections by a threshold and scored against the labelled
anomaly windows with NAB's rules (``nab/sweeper.py`` of the NAB repository, re-implemented and
vectorised here):

* **Probation.** The first ``min(floor(0.15 * N), 0.15 * 5000)`` rows of a file are ignored:
  neither detections nor windows there count.
* **True positives.** Row ``i`` inside a window ``[l, r]`` (``w = r - l + 1`` rows) has the
  relative position ``y = -(r - i + 1) / w`` (``-1`` at the left edge, ``-1/w`` at the right
  edge) and is worth ``A_TP * σ(y) / σ(-1)`` with the scaled sigmoid
  ``σ(y) = 2 / (1 + exp(5 y)) - 1`` (``-1`` when ``y >= 3``). Only the earliest detection of a
  window counts (the sigmoid falls along the window, so this is the best one); a window with no
  detection costs ``-A_FN``.
* **False positives.** A detection outside every window is worth ``A_FP * σ(y)`` (negative),
  with ``y = |i - r_prev| / (w_prev - 1)`` measured from the right edge ``r_prev`` of the
  preceding window (width ``w_prev``); with no preceding window, ``y = 3`` (full cost
  ``-A_FP``). Every false positive counts.
* **Raw score** of a file: the sum of the above; of the corpus: the sum over files.
* **Normalised score:** ``100 * (S - S_null) / (S_perfect - S_null)``, where the null detector
  detects nothing (``S_null = -A_FN * windows``) and the perfect detector detects every window at
  its left edge (``S_perfect = A_TP * windows``).

Two thresholds are reported. **Tuned**: like NAB's optimiser, the one threshold (for the whole
corpus) that maximises the raw score, found by an exact sweep over every distinct score value
(so it has seen the labels: this is how the published scoreboard is made). **Fixed**: the
detector's own alarm level, set a priori from its score's meaning and never adjusted to the
labels (for the likelihood detector, anomaly likelihood ``0.99999``, NuPIC's documented alarm
level, i.e. a log-likelihood score of 0.5).

**Seasonality.** NAB gives timestamps; the scorers only see values. With ``--season daily``
(the default) a detector that takes a ``period`` (the likelihood) is told the daily period in
rows, ``86400 s / median spacing`` (288 at 5 minutes, 48 at 30 minutes, 24 hourly), and then
judges each value against the same time yesterday and last week. ``--season off`` scores the
values alone, as a stream without a clock would be.

**Honesty note.** The fixed threshold is a priori, but the detector's other settings
(seasonal lags and how they combine, ``z_scale``, the debounce, the range-novelty margin)
were *compared on the NAB corpus itself* (about a dozen variants, by tuned and fixed score;
see the module docstring of :mod:`plantwatch.detect.sequential`). The fixed-threshold figure
is therefore optimistic: it is not a held-out estimate of performance on new data.
"""

from __future__ import annotations

import argparse
import fnmatch
import inspect
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plantwatch.detect.base import F64, I64, Sequential
from plantwatch.detect.sequential import DEFAULT_DETECTOR, SEQUENTIAL, make_sequential
from plantwatch.evaluate.datasets import dataset
from plantwatch.evaluate.report import Report

HELP = "Numenta Anomaly Benchmark: streaming detectors scored with NAB's windowed rules"

PROBATION_PERCENT = 0.15
#: The profiles of ``config/profiles.json`` (used if the dataset does not ship the file).
PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, 0.11, 1.0),
    "reward_low_FP_rate": (1.0, 0.22, 1.0),
    "reward_low_FN_rate": (1.0, 0.11, 2.0),
}
#: Marks of :attr:`Sweep.window`: outside every window, and in the probationary period.
OUTSIDE, PROBATION = -1, -2


@dataclass(frozen=True, slots=True)
class Weights:
    tp: float
    fp: float
    fn: float


def scaled_sigmoid(y: F64) -> F64:
    """NAB's ``2 * sigmoid(-5 y) - 1``, and ``-1`` from ``y >= 3`` on."""
    with np.errstate(over="ignore"):
        s = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.asarray(np.where(y >= 3.0, -1.0, s), np.float64)


def probation_length(n: int, percent: float = PROBATION_PERCENT) -> float:
    return min(math.floor(percent * n), percent * 5000)


@dataclass(frozen=True, slots=True)
class Sweep:
    """What each row of a file is worth if it is a detection: ``value`` (weighted), and the
    window it falls in (``window`` index, :data:`OUTSIDE` or :data:`PROBATION`)."""

    value: F64
    window: I64
    n_windows: int  # windows with at least one row after probation
    weights: Weights

    @property
    def null(self) -> float:
        return -self.weights.fn * self.n_windows

    @property
    def perfect(self) -> float:
        return self.weights.tp * self.n_windows


def sweep_values(
    n: int, windows: list[tuple[int, int]], weights: Weights, probation: float | None = None
) -> Sweep:
    """Row values for a file of ``n`` rows with windows ``[(left, right), ...]`` (row indices,
    inclusive, sorted, not overlapping)."""
    i = np.arange(n, dtype=np.float64)
    value = np.empty(n, np.float64)
    window = np.full(n, OUTSIDE, np.int64)
    max_tp = float(scaled_sigmoid(np.array([-1.0]))[0])
    for k, (left, right) in enumerate(windows):
        width = float(right - left + 1)
        rows = slice(left, right + 1)
        value[rows] = weights.tp * scaled_sigmoid(-(right - i[rows] + 1.0) / width) / max_tp
        window[rows] = k
    out = window == OUTSIDE
    rights = np.array([r for _, r in windows], np.float64)
    widths = np.array([r - left + 1 for left, r in windows], np.float64)
    prev = np.searchsorted(rights, i[out], side="left") - 1
    has_prev = prev >= 0
    y = np.full(int(out.sum()), 3.0)
    p = prev[has_prev]
    y[has_prev] = np.abs(i[out][has_prev] - rights[p]) / np.maximum(widths[p] - 1.0, 1.0)
    value[out] = weights.fp * scaled_sigmoid(y)
    cut = probation_length(n) if probation is None else probation
    window[i < cut] = PROBATION
    scorable = np.unique(window[window >= 0])
    return Sweep(value, window, len(scorable), weights)


@dataclass(frozen=True, slots=True)
class FileScore:
    score: float
    detected: int  # windows with a detection
    windows: int
    false_positives: int


def score_file(sw: Sweep, detections: npt_bool) -> FileScore:
    """The raw NAB score of one file for boolean ``detections`` per row."""
    det = detections & (sw.window != PROBATION)
    fp = det & (sw.window == OUTSIDE)
    total = float(sw.value[fp].sum())
    ids = np.unique(sw.window[sw.window >= 0])
    detected = 0
    for k in ids:
        hit = np.flatnonzero(det & (sw.window == k))
        if len(hit):
            total += float(sw.value[hit[0]])  # the earliest detection
            detected += 1
        else:
            total -= sw.weights.fn
    return FileScore(total, detected, len(ids), int(fp.sum()))


npt_bool = np.ndarray[Any, np.dtype[np.bool_]]


def threshold_sweep(sweeps: list[Sweep], scores: list[F64]) -> tuple[F64, F64]:
    """Corpus raw score for every threshold worth trying: ``(thresholds, totals)``, thresholds
    descending; a row is a detection when its score is ``>= threshold``. The first entry is
    ``+inf`` (no detection). Exact and vectorised: each row contributes a step to the total
    where the threshold passes its score (a false positive its value; a window row the rise of
    the window's best value so far)."""
    keys: list[F64] = []
    deltas: list[F64] = []
    base = 0.0
    for sw, sc in zip(sweeps, scores, strict=True):
        sc = np.nan_to_num(np.asarray(sc, np.float64), nan=0.0)
        base += sw.null
        out = sw.window == OUTSIDE
        keys.append(sc[out])
        deltas.append(sw.value[out])
        for k in np.unique(sw.window[sw.window >= 0]):
            rows = np.flatnonzero(sw.window == k)
            order = rows[np.argsort(-sc[rows], kind="stable")]
            best = np.maximum.accumulate(np.maximum(sw.value[order], -sw.weights.fn))
            keys.append(sc[order])
            deltas.append(np.diff(best, prepend=-sw.weights.fn))
    key = np.concatenate(keys) if keys else np.zeros(0)
    delta = np.concatenate(deltas) if deltas else np.zeros(0)
    order = np.argsort(-key, kind="stable")
    key, cum = key[order], np.cumsum(delta[order])
    # the total at threshold t includes every row with score >= t: the last row of each run
    last = np.flatnonzero(np.append(key[1:] != key[:-1], True)) if len(key) else np.zeros(0, int)
    thresholds = np.concatenate([[np.inf], key[last]])
    totals = base + np.concatenate([[0.0], cum[last]])
    return thresholds, totals


def normalised(raw: float, null: float, perfect: float) -> float:
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else float("nan")


# -- the corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NabFile:
    name: str  # "<category>/<file>.csv"
    values: F64
    windows: list[tuple[int, int]]
    step: float = 0.0  # median timestamp spacing, seconds (0: unknown)

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]


def load_corpus(root: Path, pattern: str = "*") -> list[NabFile]:
    """The NAB files matching ``pattern`` (a glob on ``<category>/<file>.csv``) with their
    windows as row indices."""
    import pandas as pd  # type: ignore[import-untyped]

    labels: dict[str, list[list[str]]] = json.loads(
        (root / "labels" / "combined_windows.json").read_text()
    )
    out = []
    for name in sorted(labels):
        if not fnmatch.fnmatch(name, pattern) and not fnmatch.fnmatch(name, f"*{pattern}*"):
            continue
        frame = pd.read_csv(root / "data" / name)
        ts = pd.to_datetime(frame["timestamp"]).to_numpy("datetime64[ns]").astype(np.int64)
        windows = []
        for start, end in labels[name]:
            s = pd.Timestamp(start).to_datetime64().astype("datetime64[ns]").astype(np.int64)
            e = pd.Timestamp(end).to_datetime64().astype("datetime64[ns]").astype(np.int64)
            left, right = int(np.searchsorted(ts, s, "left")), int(np.searchsorted(ts, e, "right"))
            if right > left:
                windows.append((left, right - 1))
        step = float(np.median(np.diff(ts))) / 1e9 if len(ts) > 1 else 0.0
        out.append(NabFile(name, frame["value"].to_numpy(np.float64), windows, step))
    return out


def rows_per_day(step: float) -> int:
    """The daily period in rows for a series sampled every ``step`` seconds: ``86400 / step``
    when that is a whole number of at least 4 (hourly or finer), else 0 (no daily period)."""
    if not step > 0:
        return 0
    per = 86400.0 / step
    return round(per) if per >= 4 and abs(per - round(per)) < 1e-6 else 0


def make_detector(name: str, step: float, season: bool = True) -> Sequential:
    """A fresh detector ``name``; one that takes a ``period`` (the likelihood) is told the
    series' daily period from its timestamp spacing (unless ``season`` is false)."""
    params = inspect.signature(SEQUENTIAL[name]).parameters
    if season and "period" in params:
        return make_sequential(name, period=rows_per_day(step))
    return make_sequential(name)


def load_weights(root: Path, profile: str) -> Weights:
    path = root / "config" / "profiles.json"
    if path.is_file():
        cost = json.loads(path.read_text())[profile]["CostMatrix"]
        return Weights(cost["tpWeight"], cost["fpWeight"], cost["fnWeight"])
    tp, fp, fn = PROFILES[profile]
    return Weights(tp, fp, fn)


def score_series(det: Sequential, values: F64, chunk: int = 0) -> F64:
    """Stream ``values`` through ``det`` (in chunks of ``chunk`` rows; 0: one call)."""
    x = values.reshape(-1, 1)
    if chunk <= 0:
        return det.update(x)
    return np.concatenate([det.update(x[i : i + chunk]) for i in range(0, len(x), chunk)])


# -- the evaluator ------------------------------------------------------------------------------


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--detector",
        default=DEFAULT_DETECTOR,
        choices=sorted(SEQUENTIAL),
        help=f"streaming detector to score (default {DEFAULT_DETECTOR})",
    )
    p.add_argument(
        "--profile",
        default="standard",
        choices=sorted(PROFILES),
        help="NAB cost profile (default standard)",
    )
    p.add_argument(
        "--files",
        default="*",
        metavar="GLOB",
        help="only the files matching GLOB on '<category>/<file>.csv' (default all)",
    )
    p.add_argument(
        "--season",
        default="daily",
        choices=["daily", "off"],
        help="tell the detector the daily period implied by the timestamp spacing (default "
        "daily; off: values only)",
    )


def run(args: argparse.Namespace) -> Report:
    root = dataset("NAB", args.datasets)
    season = getattr(args, "season", "daily")
    weights = load_weights(root, args.profile)
    files = load_corpus(root, args.files)
    t0 = time.perf_counter()
    scores, sweeps = [], []
    fixed = float("nan")
    for f in files:
        det = make_detector(args.detector, f.step, season == "daily")
        fixed = float(getattr(det, "alarm", float("nan")))
        scores.append(score_series(det, f.values))
        sweeps.append(sweep_values(len(f.values), f.windows, weights))
    seconds = time.perf_counter() - t0
    thresholds, totals = threshold_sweep(sweeps, scores)
    best = int(np.argmax(totals))
    tuned = float(thresholds[best])
    return build_report(args.detector, args.profile, files, sweeps, scores, tuned, fixed, seconds)


def build_report(
    detector: str,
    profile: str,
    files: list[NabFile],
    sweeps: list[Sweep],
    scores: list[F64],
    tuned: float,
    fixed: float,
    seconds: float,
) -> Report:
    per_file: dict[str, Any] = {}
    cats: dict[str, dict[str, float]] = {}
    for f, sw, sc in zip(files, sweeps, scores, strict=True):
        t = score_file(sw, sc >= tuned)
        x = score_file(sw, sc >= fixed)
        per_file[f.name] = {
            "rows": len(f.values),
            "windows": t.windows,
            "tuned": {"raw": t.score, "detected": t.detected, "false_positives": t.false_positives},
            "fixed": {"raw": x.score, "detected": x.detected, "false_positives": x.false_positives},
        }
        c = cats.setdefault(f.category, dict.fromkeys(_CAT_KEYS, 0.0))
        for key, val in (
            ("files", 1),
            ("rows", len(f.values)),
            ("windows", t.windows),
            ("null", sw.null),
            ("perfect", sw.perfect),
            ("tuned", t.score),
            ("tuned_det", t.detected),
            ("tuned_fp", t.false_positives),
            ("fixed", x.score),
            ("fixed_det", x.detected),
            ("fixed_fp", x.false_positives),
        ):
            c[key] += val
    rows: list[Sequence[Any]] = []
    tot = dict.fromkeys(_CAT_KEYS, 0.0)
    for name in sorted(cats):
        c = cats[name]
        for key in _CAT_KEYS:
            tot[key] += c[key]
        rows.append(_row(name, c))
    rows.append(_row("all", tot))
    summary = {
        "detector": detector,
        "profile": profile,
        "files": int(tot["files"]),
        "windows": int(tot["windows"]),
        "tuned threshold": tuned,
        "normalised score, tuned threshold": normalised(tot["tuned"], tot["null"], tot["perfect"]),
        "fixed threshold (a priori)": fixed,
        "normalised score, fixed threshold": normalised(tot["fixed"], tot["null"], tot["perfect"]),
        "detector seconds": round(seconds, 2),
    }
    return Report(
        title=f"NAB {profile} profile, detector {detector}",
        columns=[
            "category",
            "files",
            "windows",
            "tuned: detected",
            "tuned: FP",
            "tuned: score",
            "fixed: detected",
            "fixed: FP",
            "fixed: score",
        ],
        rows=rows,
        summary=summary,
        details={"per_file": per_file, "raw_null": tot["null"], "raw_perfect": tot["perfect"]},
    )


_CAT_KEYS = (
    "files",
    "rows",
    "windows",
    "null",
    "perfect",
    "tuned",
    "tuned_det",
    "tuned_fp",
    "fixed",
    "fixed_det",
    "fixed_fp",
)


def _row(name: str, c: dict[str, float]) -> list[Any]:
    """A category row; the scores are normalised within the category."""
    return [
        name,
        int(c["files"]),
        int(c["windows"]),
        int(c["tuned_det"]),
        int(c["tuned_fp"]),
        normalised(c["tuned"], c["null"], c["perfect"]) if c["windows"] else None,
        int(c["fixed_det"]),
        int(c["fixed_fp"]),
        normalised(c["fixed"], c["null"], c["perfect"]) if c["windows"] else None,
    ]
