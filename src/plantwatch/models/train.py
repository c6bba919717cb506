"""``plantwatch train``: a model per machine type from stored history, into the registry.

1. **History**: processed readings from a store (``chdb://DIR``, the data folder or its
   ``clickhouse`` folder; ``http(s)://`` ClickHouse) or Parquet (``parquet://PATH``: an export
   or archive root with a ``readings`` dataset, a folder of Parquet files or one file), limited
   to ``--since``/``--until`` and the machine type.
2. **Features with the stream's own code**: the readings go, in event-time order, through the
   stream's :class:`~plantwatch.stream.pipeline.Pipeline` (windows of the configured size,
   no detectors or rules), whose window features are pivoted per (machine, window) by
   :func:`~plantwatch.models.features.machine_matrix` — exactly what the stream does live.
3. **Fit and threshold on training data only**: the windows are split in time; the model is
   fitted on the first ``1 - holdout`` (80 %) and scores the last 20 %, which it has not seen.
   The **warning threshold is 1.25 × the 99.9th percentile of those held-out scores**, the
   critical threshold twice that. The held-out windows are normal history too, so this bounds
   the false alarm rate at roughly 0.1 % of windows per machine before the margin; no label and
   no fault is looked at.
4. **Register**: the ONNX graph and its metadata (feature spec with training means, the
   training range and counts, thresholds and how they were chosen, score quantiles, library
   versions) as a new version; ``--promote`` also makes it the machine type's model.

Train on a period you know to be normal: faults in the training history become "normal".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import glob
import importlib.metadata
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from plantwatch.batch.layout import LayoutError, parse_instant
from plantwatch.core.clock import iso_ms
from plantwatch.core.codec import ts_ms
from plantwatch.core.errors import ConfigError
from plantwatch.core.reading import TS_TYPE
from plantwatch.core.settings import Settings
from plantwatch.detect.base import Model
from plantwatch.models.features import (
    DEFAULT_STATS,
    FeatureSpec,
    machine_matrix,
    spec_from_features,
)
from plantwatch.models.registry import ModelRef, Registry

F64 = npt.NDArray[np.float64]
ALGORITHMS = ("pca", "iforest")
#: the processed readings training reads (the store's ``readings`` columns it needs)
HISTORY_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("machine_type", pa.string()),
        ("sensor_id", pa.string()),
        ("kind", pa.string()),
        ("ts", TS_TYPE),
        ("seq", pa.uint64()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("quality", pa.string()),
    ]
)
READING_COLUMNS: tuple[str, ...] = tuple(HISTORY_SCHEMA.names)
HOLDOUT = 0.2
QUANTILE = 0.999
MARGIN = 1.25
CHUNK_ROWS = 100_000
THRESHOLD_METHOD = (
    f"warning = {MARGIN} × the {QUANTILE * 100:g}th percentile of the scores of the last "
    f"{HOLDOUT:.0%} of the training windows (in time; not used to fit); critical = 2 × warning"
)


def make_model(name: str, seed: int = 0) -> Model:
    from plantwatch.detect.multivariate import IsolationForestModel, PCAModel

    if name == "pca":
        return PCAModel()
    if name == "iforest":
        return IsolationForestModel(random_state=seed)
    raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(ALGORITHMS)}")


# -- history --------------------------------------------------------------------------------


def _parse_time(text: str | None) -> dt.datetime | None:
    """``--since``/``--until`` as export and replay read them (ISO 8601 or a span back)."""
    try:
        return None if text is None else parse_instant(text)
    except LayoutError as exc:
        raise ConfigError(str(exc)) from None


def read_history(
    source: str,
    settings: Settings,
    *,
    machine_type: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> pa.Table:
    """Processed readings (``READING_COLUMNS``) of ``source``, sorted by event time."""
    t0, t1 = _parse_time(since), _parse_time(until)
    if source.startswith("parquet://"):
        table = _select(_parquet(source.removeprefix("parquet://")), machine_type, t0, t1)
    elif source.startswith(("chdb://", "http://", "https://")):
        table = _store(source, settings, machine_type, t0, t1)  # selected by the query
    else:
        raise ConfigError(
            f"unsupported source {source!r}: use chdb://DIR (a data folder or its clickhouse "
            "folder), parquet://PATH (an export root, a folder of Parquet files or a file) "
            "or http(s)://clickhouse-host:port"
        )
    if table.num_rows == 0:
        what = f" of machine type {machine_type!r}" if machine_type else ""
        raise ConfigError(
            f"no readings{what} in {source} between {since or 'the start'} and {until or 'the end'}"
        )
    return table.sort_by([("ts", "ascending"), ("machine_id", "ascending")])


def _select(
    table: pa.Table, machine_type: str | None, t0: dt.datetime | None, t1: dt.datetime | None
) -> pa.Table:
    """The rows of one machine type in ``[t0, t1)`` (as the store query selects them)."""
    ts = table.column("ts")
    conds: list[Any] = []
    if t0 is not None:
        conds.append(pc.greater_equal(ts, pa.scalar(t0, TS_TYPE)))
    if t1 is not None:
        conds.append(pc.less(ts, pa.scalar(t1, TS_TYPE)))
    if machine_type is not None:
        conds.append(pc.equal(table.column("machine_type"), machine_type))
    return table.filter(functools.reduce(pc.and_, conds)) if conds else table


def _parquet(path: str) -> pa.Table:
    root = Path(path)
    if root.is_file():
        files = [str(root)]
    else:
        base = root / "readings" if (root / "readings").is_dir() else root
        files = sorted(glob.glob(os.path.join(base, "**", "*.parquet"), recursive=True))
    if not files:
        raise ConfigError(f"no Parquet files at {path} (nor under {path}/readings)")
    parts = []
    for f in files:
        t = pq.ParquetFile(f).read()  # the file alone: no Hive partition columns added
        missing = [c for c in READING_COLUMNS if c not in t.column_names]
        if missing:
            raise ConfigError(f"{f} is not a readings file: it lacks {', '.join(missing)}")
        parts.append(t.select(list(READING_COLUMNS)).cast(HISTORY_SCHEMA))
    return pa.concat_tables(parts)


def _store(
    source: str,
    settings: Settings,
    machine_type: str | None,
    t0: dt.datetime | None,
    t1: dt.datetime | None,
) -> pa.Table:
    from plantwatch.store.client import open_configured

    url = source
    if source.startswith("chdb://"):
        folder = Path(source.removeprefix("chdb://"))
        if (folder / "clickhouse").is_dir():
            folder = folder / "clickhouse"
        if not (folder / "metadata").is_dir():  # not a chDB folder: do not create one
            raise ConfigError(
                f"no chDB data at {folder}: give the data folder or its clickhouse folder"
            )
        url = f"chdb://{folder.resolve()}"
    store = open_configured(settings.model_copy(update={"store_url": url}))
    try:
        db = store.database
        where: list[str] = ["1"]
        params: dict[str, Any] = {}
        if machine_type is not None:
            where.append("machine_type = {t:String}")
            params["t"] = machine_type
        if t0 is not None:
            where.append("ts >= fromUnixTimestamp64Milli({t0:Int64})")
            params["t0"] = int(t0.timestamp() * 1000)
        if t1 is not None:
            where.append("ts < fromUnixTimestamp64Milli({t1:Int64})")
            params["t1"] = int(t1.timestamp() * 1000)
        cols = ", ".join(
            f"toString({c}) AS {c}"
            if c in ("machine_id", "machine_type", "sensor_id", "kind", "unit", "quality")
            else c
            for c in READING_COLUMNS
        )
        table = store.query_arrow(
            f"SELECT {cols} FROM {db}.readings FINAL WHERE {' AND '.join(where)} ORDER BY ts",
            params,
        )
    finally:
        store.close()
    return table.cast(HISTORY_SCHEMA)


# -- features -------------------------------------------------------------------------------


def window_features(readings: pa.Table, settings: Settings) -> tuple[pa.Table, npt.NDArray[Any]]:
    """The stream's window features of ``readings`` (processed readings in time order) and
    each feature row's machine type: the stream's Pipeline over the history, in chunks."""
    from plantwatch.batch.replay import raw_readings, replay_config
    from plantwatch.stream.pipeline import Pipeline

    pairs = (
        readings.select(["machine_id", "machine_type"])
        .group_by(["machine_id", "machine_type"])
        .aggregate([])
    )
    types = dict(
        zip(
            pairs.column("machine_id").to_pylist(),
            pairs.column("machine_type").to_pylist(),
            strict=True,
        )
    )
    config = dataclasses.replace(replay_config(settings), idle_source_s=3600.0)
    pipeline = Pipeline(config, machine_types=types, detectors=[], rules=[], models=None)
    feats = []
    ts = ts_ms(readings)
    for start in range(0, readings.num_rows, CHUNK_ROWS):
        chunk = readings.slice(start, CHUNK_ROWS)
        now = int(ts[min(start + CHUNK_ROWS, readings.num_rows) - 1])
        out = pipeline.process(raw_readings(chunk), now_ms=now, arrival_ms=now)
        feats.append(out.features)
    feats.append(pipeline.flush(now_ms=int(ts[-1])).features)
    features = pa.concat_tables(feats)
    machine = np.asarray(features.column("machine_id").to_numpy(zero_copy_only=False), object)
    names, inverse = np.unique(machine.astype(str), return_inverse=True)
    of_name = np.array([types.get(str(m), "unknown") for m in names], dtype=object)
    return features, of_name[inverse] if len(machine) else np.zeros(0, object)


# -- fit, threshold, register ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fitted:
    model: Model
    onnx: bytes
    spec: FeatureSpec
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Trained:
    ref: ModelRef
    metadata: dict[str, Any]
    promoted: bool


def _versions() -> dict[str, str]:
    out = {}
    for pkg in (
        "plantwatch",
        "numpy",
        "scikit-learn",
        "skl2onnx",
        "onnx",
        "onnxruntime",
        "pyarrow",
    ):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def fit_type(
    features: pa.Table,
    types: npt.NDArray[Any],
    machine_type: str,
    algorithm: str,
    *,
    window_s: float,
    stats: Sequence[str] = DEFAULT_STATS,
    seed: int = 0,
) -> Fitted:
    """Fit one machine type's model; the metadata it is registered with (minus the source)."""
    from plantwatch.models.scoring import run_scores, session

    spec = spec_from_features(features, types, machine_type, stats=stats, window_s=window_s)
    if not spec.sensors:
        raise ConfigError(f"no windows of machine type {machine_type!r} in the history")
    rows = machine_matrix(features, types, spec)
    order = np.argsort(rows.window_end_ms, kind="stable")
    x_all = rows.x[order]
    ends = rows.window_end_ms[order]
    spec = spec.with_moments(x_all)
    x, usable = spec.impute(x_all)
    x, ends = x[usable], ends[usable]
    if len(x) < 50:
        raise ConfigError(
            f"only {len(x)} usable windows of {machine_type!r}: train on a longer history "
            "(at least 50 windows; a few hours of a machine is better)"
        )
    cut = int(len(x) * (1 - HOLDOUT))
    model = make_model(algorithm, seed).fit(x[:cut])
    onnx = model.to_onnx()
    held = run_scores(session(onnx), x[cut:])  # the graph the stream runs, on unseen windows
    fit_scores = model.score(x[:cut])
    q = float(np.quantile(held, QUANTILE))
    warning = MARGIN * q
    meta: dict[str, Any] = {
        "algorithm": algorithm,
        "features": spec.as_json(),
        "threshold": {
            "warning": warning,
            "critical": 2 * warning,
            "method": THRESHOLD_METHOD,
        },
        "training": {
            "from": iso_ms(dt.datetime.fromtimestamp(ends[0] / 1000, dt.UTC)),
            "to": iso_ms(dt.datetime.fromtimestamp(ends[-1] / 1000, dt.UTC)),
            "windows": len(x),
            "fit_windows": cut,
            "holdout_windows": len(x) - cut,
            "machines": sorted({str(m) for m in rows.machine_id}),
            "seed": seed,
        },
        "metrics": {
            "fit_score_quantiles": _quantiles(fit_scores),
            "holdout_score_quantiles": _quantiles(held),
            "holdout_false_alarm_rate": float(np.mean(held > warning)),
        },
        "libraries": _versions(),
    }
    return Fitted(model, onnx, spec, meta)


def _quantiles(s: F64) -> dict[str, float]:
    s = s[np.isfinite(s)]
    if not len(s):
        return {}
    return {
        k: float(np.quantile(s, q))
        for k, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999), ("max", 1.0))
    }


def train(
    source: str,
    settings: Settings,
    *,
    algorithm: str,
    machine_type: str | None = None,
    since: str | None = None,
    until: str | None = None,
    registry_url: str | None = None,
    name: str | None = None,
    promote: bool = False,
    seed: int = 0,
) -> list[Trained]:
    """Train, register (and promote) one model per machine type in the history (or only
    ``machine_type``); see the module docstring."""
    make_model(algorithm)  # an unknown name fails before the history is read
    readings = read_history(source, settings, machine_type=machine_type, since=since, until=until)
    features, types = window_features(readings, settings)
    registry = Registry(registry_url or settings.resolved_model_registry())
    wanted = [machine_type] if machine_type else sorted({str(t) for t in types} - {"unknown", ""})
    out = []
    for mtype in wanted:
        fitted = fit_type(
            features, types, mtype, algorithm, window_s=settings.stream.window_s, seed=seed
        )
        fitted.metadata["training"].update(source=source, since=since, until=until)
        ref = registry.register(mtype, name or algorithm, fitted.onnx, fitted.metadata)
        if promote:
            registry.promote(ref)
        out.append(Trained(ref, registry.metadata(ref), promote))
    return out
