"""``plantwatch evaluate csv``: detection quality on any labelled multivariate CSV runs.

Each CSV file is one run: a time column, a 0/1 label column (non-zero = anomalous) and numeric
feature columns (all the others, minus ``--exclude``). The delimiter is detected from the
header line when ``--sep`` is not given (one of ``,`` ``;`` tab ``|``).

Method
    1. The model (``--model``, PCA by default) is fitted on the rows of the ``--train`` runs
       whose label is 0.
    2. Threshold, from the training rows only: they are cut into ``--folds`` contiguous blocks,
       each scored by a model fitted on the other blocks; the threshold is the ``--quantile``
       of these held-out scores (:func:`plantwatch.detect.multivariate.holdout_scores`).
    3. Each ``--test`` run is scored row by row (optionally smoothed by a causal moving average
       of ``--smooth`` scores); a row alarms when its score exceeds the threshold. A row
       with a missing or non-finite feature has no score and does not alarm.

Metrics, per test file and in total (point-wise, anomalous = label != 0)
    * precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``, F1;
    * false alarm rate ``FP / (FP + TN)`` (share of normal rows that alarm), missed alarm rate
      ``FN / (TP + FN)``;
    * detection delay: per labelled anomaly segment (a maximal run of anomalous rows), the time
      from the segment's first row to its first alarming row, in the time column's units
      (seconds when the time column holds date-times); segments with no alarm inside count as
      missed and do not enter the mean delay.
"""

from __future__ import annotations

import argparse
import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from plantwatch.core.errors import ConfigError
from plantwatch.detect.base import F64, Model
from plantwatch.detect.multivariate import (
    IsolationForestModel,
    PCAModel,
    holdout_scores,
    threshold_from_normal,
)
from plantwatch.evaluate.report import Report
from plantwatch.evaluate.tep import moving_average

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

HELP = "precision, recall, false/missed alarms and detection delay on labelled CSV runs"

SEPARATORS = (",", ";", "\t", "|")
MODELS = ("pca", "iforest")
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, metavar="GLOB", help="CSV runs to train on")
    p.add_argument("--test", required=True, metavar="GLOB", help="CSV runs to score")
    p.add_argument("--time-column", required=True, metavar="C", help="time column")
    p.add_argument("--label-column", required=True, metavar="L", help="0/1 label column")
    p.add_argument("--sep", default=None, help="delimiter (default: detected)")
    p.add_argument(
        "--exclude", default="", metavar="COLS", help="comma-separated columns to leave out"
    )
    p.add_argument("--model", choices=MODELS, default="pca", help="model (default pca)")
    p.add_argument(
        "--variance", type=float, default=0.9, help="PCA explained variance (default 0.9)"
    )
    p.add_argument(
        "--quantile",
        type=float,
        default=0.99,
        help="threshold = this quantile of held-out normal training scores (default 0.99)",
    )
    p.add_argument("--folds", type=int, default=5, help="held-out blocks (default 5)")
    p.add_argument(
        "--smooth", type=int, default=1, help="moving average of the last N scores (default 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the isolation forest")


# ---------------------------------------------------------------------------------- reading


def detect_separator(lines: list[str], path: str = "<csv>") -> str:
    """The delimiter of a CSV from its first lines (header first): the candidate of
    :data:`SEPARATORS` that occurs in the header and the same number of times in each following
    line. ConfigError when none or several qualify."""
    lines = [ln.rstrip("\r\n") for ln in lines if ln.strip()]
    if not lines:
        raise ConfigError(f"{path}: the file is empty")
    header, rest = lines[0], lines[1:]
    fits = [
        s
        for s in SEPARATORS
        if header.count(s) > 0 and all(ln.count(s) == header.count(s) for ln in rest)
    ]
    if len(fits) == 1:
        return fits[0]
    names = " ".join(repr(s) for s in (fits or SEPARATORS))
    what = "ambiguous between" if fits else "none of"
    raise ConfigError(f"{path}: cannot detect the delimiter ({what} {names}); pass --sep")


def expand(pattern: str, option: str) -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise ConfigError(f"{option} {pattern!r}: no file matches")
    return files


def read_run(path: Path, sep: str | None) -> pd.DataFrame:
    import pandas as pd

    if sep is None:
        with path.open(encoding="utf-8", errors="replace") as fh:
            head = [ln for _, ln in zip(range(20), fh, strict=False)]
        sep = detect_separator(head, str(path))
    try:
        frame = pd.read_csv(path, sep=sep)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{path}: cannot read as CSV with delimiter {sep!r}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


@dataclass(frozen=True, slots=True)
class Run:
    """One CSV file: time, label (bool, True = anomalous) and the feature matrix."""

    path: Path
    time: F64
    label: BoolArray
    x: F64


def _columns(
    frame: pd.DataFrame, path: Path, time_col: str, label_col: str, exclude: list[str]
) -> list[str]:
    missing = [c for c in (time_col, label_col) if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{path}: column(s) {', '.join(map(repr, missing))} not found; "
            f"the columns are {', '.join(map(repr, frame.columns))}"
        )
    features = [c for c in frame.columns if c not in (time_col, label_col, *exclude)]
    if not features:
        raise ConfigError(f"{path}: no feature columns left besides time and label")
    return features


def _numeric_time(col: pd.Series[Any], path: Path) -> F64:
    import pandas as pd

    num = pd.to_numeric(col, errors="coerce")
    if num.notna().all():
        out: F64 = num.to_numpy(np.float64)
        return out
    try:
        ts = pd.to_datetime(col, utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path}: time column {col.name!r} is neither numeric nor date-time: {exc}"
        ) from exc
    ns = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    sec: F64 = ns.astype(np.float64) / 1e9
    return sec


def to_run(
    frame: pd.DataFrame, path: Path, time_col: str, label_col: str, features: list[str]
) -> Run:
    import pandas as pd

    absent = [c for c in features if c not in frame.columns]
    if absent:
        raise ConfigError(
            f"{path}: feature column(s) {', '.join(map(repr, absent))} of the training runs "
            "are missing"
        )
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise ConfigError(
            f"{path}: column(s) {', '.join(map(repr, bad))} are not numeric; "
            "leave them out with --exclude"
        )
    label = pd.to_numeric(frame[label_col], errors="coerce")
    if label.isna().any():
        raise ConfigError(f"{path}: label column {label_col!r} must hold numbers (0 = normal)")
    return Run(
        path=path,
        time=_numeric_time(frame[time_col], path),
        label=label.to_numpy(np.float64) != 0,
        x=frame[features].to_numpy(np.float64),
    )


# ---------------------------------------------------------------------------------- scoring


def segments(label: BoolArray) -> list[tuple[int, int]]:
    """Maximal runs of True in ``label`` as ``(start, stop)`` index pairs (stop exclusive)."""
    lab = np.asarray(label, dtype=np.int8)
    edges = np.diff(np.concatenate([[0], lab, [0]]))
    return list(
        zip(
            np.flatnonzero(edges == 1).tolist(),
            np.flatnonzero(edges == -1).tolist(),
            strict=True,
        )
    )


@dataclass(slots=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    segments: int = 0
    detected: int = 0
    delay_sum: float = 0.0

    def add(self, other: Counts) -> None:
        for f in ("tp", "fp", "fn", "tn", "segments", "detected", "delay_sum"):
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def metrics(self) -> dict[str, float]:
        def ratio(a: float, b: float) -> float:
            return a / b if b else float("nan")

        precision = ratio(self.tp, self.tp + self.fp)
        recall = ratio(self.tp, self.tp + self.fn)
        f1 = ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)
        return {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "false_alarm_rate": ratio(self.fp, self.fp + self.tn),
            "missed_alarm_rate": ratio(self.fn, self.tp + self.fn),
            "mean_delay": ratio(self.delay_sum, self.detected),
        }


def count(alarm: BoolArray, label: BoolArray, time: F64) -> Counts:
    """Point-wise confusion counts and per-segment detection delays of one run."""
    a = np.asarray(alarm, dtype=bool)
    y = np.asarray(label, dtype=bool)
    c = Counts(
        tp=int((a & y).sum()),
        fp=int((a & ~y).sum()),
        fn=int((~a & y).sum()),
        tn=int((~a & ~y).sum()),
    )
    for start, stop in segments(y):
        c.segments += 1
        hit = np.flatnonzero(a[start:stop])
        if len(hit):
            c.detected += 1
            c.delay_sum += float(time[start + hit[0]] - time[start])
    return c


def _factory(args: argparse.Namespace) -> Callable[[], Model]:
    if args.model == "pca":
        return lambda: PCAModel(variance=args.variance)
    return lambda: IsolationForestModel(random_state=args.seed)


def run(args: argparse.Namespace) -> Report:
    if args.smooth < 1 or args.folds < 2:
        raise ConfigError("need --smooth >= 1 and --folds >= 2")
    train_files = expand(args.train, "--train")
    test_files = expand(args.test, "--test")
    exclude = [c.strip() for c in args.exclude.split(",") if c.strip()]
    tcol, lcol = args.time_column, args.label_column

    first = read_run(train_files[0], args.sep)
    features = _columns(first, train_files[0], tcol, lcol, exclude)
    train = [to_run(first, train_files[0], tcol, lcol, features)]
    for path in train_files[1:]:
        frame = read_run(path, args.sep)
        _columns(frame, path, tcol, lcol, exclude)
        train.append(to_run(frame, path, tcol, lcol, features))
    normal = [r.x[~r.label] for r in train]
    xtr = np.concatenate(normal) if normal else np.zeros((0, len(features)))
    xtr = xtr[np.isfinite(xtr).all(axis=1)]
    if len(xtr) == 0:
        raise ConfigError(
            f"no anomaly-free training rows ({lcol} == 0 with finite features) in {args.train!r}"
        )
    if len(xtr) < 4 * args.folds:
        raise ConfigError(
            f"only {len(xtr)} anomaly-free training rows: too few to fit and hold out "
            f"{args.folds} blocks"
        )

    factory = _factory(args)
    try:
        held = holdout_scores(factory, xtr, args.folds)
        blocks = np.array_split(np.arange(len(xtr)), args.folds)
        held = np.concatenate([moving_average(held[b], args.smooth) for b in blocks])
        threshold = threshold_from_normal(held, args.quantile)
        model = factory().fit(xtr)
    except ValueError as exc:
        raise ConfigError(f"cannot fit the {args.model} model on the training rows: {exc}") from exc

    rows: list[Sequence[Any]] = []
    total = Counts()
    per_file: dict[str, dict[str, Any]] = {}
    for path in test_files:
        frame = read_run(path, args.sep)
        _columns(frame, path, tcol, lcol, exclude)
        r = to_run(frame, path, tcol, lcol, features)
        s = moving_average(np.nan_to_num(model.score(r.x), nan=0.0), args.smooth)
        c = count(s > threshold, r.label, r.time)
        total.add(c)
        m = c.metrics()
        per_file[str(path)] = {**m, "segments": c.segments, "detected": c.detected}
        rows.append(_row(path.name, len(r.x), c, m))
    tm = total.metrics()
    rows.append(_row("total", total.tp + total.fp + total.fn + total.tn, total, tm))
    return Report(
        title=f"CSV runs: {args.model}, threshold = q{args.quantile:g} of held-out normal "
        f"training scores ({len(xtr)} rows, {len(features)} features)",
        columns=[
            "file",
            "rows",
            "precision",
            "recall",
            "F1",
            "false alarms",
            "missed alarms",
            "segments found",
            "mean delay",
        ],
        rows=rows,
        summary={
            "precision": tm["precision"],
            "recall": tm["recall"],
            "F1": tm["f1"],
            "false alarm rate": tm["false_alarm_rate"],
            "missed alarm rate": tm["missed_alarm_rate"],
            "mean detection delay": tm["mean_delay"],
            "threshold": threshold,
        },
        details={
            "files": per_file,
            "features": features,
            "settings": {
                "model": args.model,
                "quantile": args.quantile,
                "folds": args.folds,
                "smooth": args.smooth,
                "train": [str(p) for p in train_files],
            },
        },
    )


def _row(name: str, n: int, c: Counts, m: dict[str, float]) -> list[Any]:
    return [
        name,
        n,
        m["precision"],
        m["recall"],
        m["f1"],
        m["false_alarm_rate"],
        m["missed_alarm_rate"],
        f"{c.detected}/{c.segments}",
        m["mean_delay"],
    ]
