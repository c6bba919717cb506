"""Validation at the edge: one typed reading, or whole columns of a batch.

Errors are :class:`~plantwatch.core.errors.InvalidReadingError` (``UnitError`` and
``UnknownKindError`` are subclasses) naming the field, the value and, for batches, the row.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.core.errors import InvalidReadingError, UnitError, UnknownKindError
from plantwatch.core.kinds import KIND_NAMES, SensorKind, canonical_unit, parse_kind
from plantwatch.core.reading import QUALITY_NAMES, TS_TYPE, Quality, utc
from plantwatch.core.units import conversion, normalize

SensorKey = tuple[str, str]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_QUALITIES = ", ".join(QUALITY_NAMES)


@dataclass(frozen=True, slots=True)
class Checked:
    """One validated reading, ready for the column buffer."""

    kind: str
    value: float
    unit: str
    ts_ms: int
    quality: str


def check_id(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidReadingError(field, value, "must be a non-empty string")
    return value


def check_reading(
    kind: SensorKind | str,
    value: Any,
    *,
    unit: str | None,
    ts: datetime | None,
    quality: str,
    now: Callable[[], datetime],
) -> Checked:
    """Validate the fields of one reading (ids are checked by :func:`check_id`)."""
    k = parse_kind(kind)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidReadingError("value", value, "must be a number")
    v = float(value)
    if not math.isfinite(v):
        raise InvalidReadingError(
            "value", value, "must be finite; report a faulty sensor with quality='bad'"
        )
    u = canonical_unit(k) if unit is None else unit
    if not isinstance(u, str):
        raise UnitError(k.value, u, "must be a string")
    conversion(k, u)  # raises UnitError naming kind, unit and what to send instead
    if ts is None:
        ts = now()
    elif not isinstance(ts, datetime):
        raise InvalidReadingError("ts", ts, "must be a timezone-aware datetime")
    ts_ms = (utc(ts) - _EPOCH) // _MS
    try:
        q = Quality(quality).value
    except ValueError:
        raise InvalidReadingError("quality", quality, f"use one of {_QUALITIES}") from None
    return Checked(k.value, v, u, ts_ms, q)


# -- batches ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckedBatch:
    """Validated columns of a batch (all without nulls)."""

    machine_id: pa.Array
    sensor_id: pa.Array
    kind: pa.Array
    value: pa.Array
    unit: pa.Array
    ts: pa.Array
    quality: pa.Array


def _column(table: pa.Table, name: str, typ: pa.DataType) -> pa.Array:
    col = table.column(name)
    arr = pa.concat_arrays(col.chunks) if col.num_chunks else pa.array([], col.type)
    if arr.type == typ:
        return arr
    try:
        return arr.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidReadingError(name, str(arr.type), f"column cannot be cast to {typ}") from exc


def _first(mask: npt.NDArray[np.bool_]) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _mask(arr: pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.bool_)


def check_batch(table: pa.Table, *, now: datetime) -> CheckedBatch:
    """Validate whole columns; raise for the first bad row (the lowest row index)."""
    names = set(table.column_names)
    for name in ("machine_id", "sensor_id", "kind", "value", "unit"):
        if name not in names:
            raise InvalidReadingError(
                name, None, f"required column is missing (columns: {sorted(names)})"
            )
    if "seq" in names and table.column("seq").null_count < table.num_rows:
        raise InvalidReadingError(
            "seq", "column", "send_batch assigns seqs; use forward() to relay readings with one"
        )
    n = table.num_rows
    s = pa.string()
    cols = {name: _column(table, name, s) for name in ("machine_id", "sensor_id", "kind", "unit")}
    cols["value"] = _column(table, "value", pa.float64())
    cols["quality"] = (
        _column(table, "quality", s) if "quality" in names else pa.array(["good"] * n, s)
    )
    if "ts" in names:
        ts_col = table.column("ts")
        if not pa.types.is_timestamp(ts_col.type) or ts_col.type.tz is None:
            raise InvalidReadingError(
                "ts", str(ts_col.type), "use a timestamp column with a time zone (tz='UTC')"
            )
        cols["ts"] = pc.cast(pa.concat_arrays(ts_col.chunks), TS_TYPE, safe=False)
    else:
        stamp = (now - _EPOCH) // _MS
        cols["ts"] = pa.array(np.full(n, stamp, np.int64)).cast(TS_TYPE)

    problems: list[tuple[int, Callable[[int], InvalidReadingError]]] = []

    def bad(mask: npt.NDArray[np.bool_], make: Callable[[int], InvalidReadingError]) -> None:
        row = _first(mask)
        if row is not None:
            problems.append((row, make))

    for name, col in cols.items():
        if col.null_count:
            bad(_mask(col.is_null()), _error(name, None, "must not be null"))
    for name in ("machine_id", "sensor_id"):
        empty = _mask(pc.fill_null(pc.equal(pc.utf8_length(cols[name]), 0), False))
        bad(empty, _error(name, "", "must not be empty"))
    kinds, units, values = cols["kind"], cols["unit"], cols["value"]
    known = _mask(pc.is_in(kinds, value_set=pa.array(KIND_NAMES, s)))
    unknown = ~known & ~_mask(kinds.is_null())
    bad(unknown, lambda r: UnknownKindError("kind", kinds[r].as_py(), _kinds_hint(), row=r))
    vals = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    nonfinite = ~np.isfinite(vals) & ~_mask(values.is_null())
    bad(nonfinite, lambda r: InvalidReadingError("value", float(vals[r]), "must be finite", row=r))
    norm = normalize(kinds, units, vals)
    unconvertible = ~norm.ok & known & ~_mask(units.is_null())
    bad(
        unconvertible,
        lambda r: UnitError(kinds[r].as_py(), units[r].as_py(), norm.problems[r], row=r),
    )
    good_quality = _mask(pc.is_in(cols["quality"], value_set=pa.array(QUALITY_NAMES, s)))
    bad(
        ~good_quality & ~_mask(cols["quality"].is_null()),
        lambda r: InvalidReadingError(
            "quality", cols["quality"][r].as_py(), f"use one of {_QUALITIES}", row=r
        ),
    )
    if problems:
        row, make = min(problems, key=lambda p: p[0])
        raise make(row)
    return CheckedBatch(**cols)


def _error(field: str, value: Any, problem: str) -> Callable[[int], InvalidReadingError]:
    return functools.partial(_make_error, field, value, problem)


def _make_error(field: str, value: Any, problem: str, row: int) -> InvalidReadingError:
    return InvalidReadingError(field, value, problem, row=row)


def _kinds_hint() -> str:
    return f"unknown sensor kind; use one of {', '.join(KIND_NAMES)}"


@dataclass(frozen=True, slots=True)
class Ranked:
    """Per-row position within its sensor, and the distinct sensors of a batch."""

    keys: list[SensorKey]  # distinct (machine_id, sensor_id)
    inverse: npt.NDArray[np.int64]  # row -> index into keys
    rank: npt.NDArray[np.int64]  # 0, 1, 2, ... per sensor, in row order
    counts: npt.NDArray[np.int64]  # rows per key


def rank_by_sensor(machine_id: pa.Array, sensor_id: pa.Array) -> Ranked:
    """Vectorised: dictionary-encode the sensor key, then rank rows within each key."""
    m = pc.dictionary_encode(machine_id)
    s = pc.dictionary_encode(sensor_id)
    n_s = max(len(s.dictionary), 1)
    m_idx = np.asarray(m.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    s_idx = np.asarray(s.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    uniq, inverse = np.unique(m_idx * n_s + s_idx, return_inverse=True)
    inverse = inverse.astype(np.int64).reshape(-1)
    counts = np.bincount(inverse, minlength=len(uniq)).astype(np.int64)
    order = np.argsort(inverse, kind="stable")
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(inverse), np.int64)
    rank[order] = np.arange(len(inverse), dtype=np.int64) - np.repeat(starts, counts)
    machines = m.dictionary.take(pa.array(uniq // n_s)).to_pylist()
    sensors = s.dictionary.take(pa.array(uniq % n_s)).to_pylist()
    return Ranked(list(zip(machines, sensors, strict=True)), inverse, rank, counts)
