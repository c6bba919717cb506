"""Readings to and from bytes. Nobody else hand-rolls JSON or Arrow IPC.

Three encodings, named by content type:

* ``application/vnd.plantwatch.readings+arrow`` — the compact columnar batch: one Arrow IPC
  stream (``READING_SCHEMA``), zstd-compressed buffers. The hot path.
* ``application/x-ndjson`` — a batch as JSON lines, one reading per line, for interoperability
  and gateways that cannot link Arrow.
* ``application/json`` — a single reading as a JSON object.

Decoding a JSON batch is tolerant: lines that do not decode become :class:`Reject` items (with a
dead-letter reason) instead of failing the batch. Decoding Arrow is all-or-nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.core.deadletter import Reason
from plantwatch.core.errors import CodecError, InvalidReadingError
from plantwatch.core.kinds import parse_kind
from plantwatch.core.reading import (
    QUALITY_NAMES,
    READING_SCHEMA,
    SCHEMA_VERSION,
    TS_TYPE,
    Quality,
    Reading,
    conform,
)

ARROW = "application/vnd.plantwatch.readings+arrow"
NDJSON = "application/x-ndjson"
JSON = "application/json"
CONTENT_TYPES = (ARROW, NDJSON, JSON)

_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


@dataclass(frozen=True, slots=True)
class Reject:
    """A record that could not be decoded: the reason, what was wrong, the original text, and
    its key when that much was readable (so a re-sent reject is still recognised as one)."""

    reason: Reason
    detail: str
    payload: str
    machine_id: str = ""
    sensor_id: str = ""
    seq: int | None = None


@dataclass(slots=True)
class Decoded:
    """A decoded batch: readings that decoded (``READING_SCHEMA``) and the rejects.

    ``whole`` is True when nothing of the payload decoded (corrupt bytes, unknown content
    type): its one reject stands for the payload, which a dead-letter topic keeps as is.
    """

    table: pa.Table
    rejects: list[Reject] = field(default_factory=list)
    whole: bool = False


# -- Arrow -----------------------------------------------------------------------------------


def encode_arrow(table: pa.Table) -> bytes:
    """The compact columnar encoding of a batch (Arrow IPC stream, zstd)."""
    table = conform(table)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, READING_SCHEMA, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def decode_arrow(payload: bytes) -> pa.Table:
    """A batch table from :func:`encode_arrow` bytes; :class:`CodecError` if they are not."""
    try:
        with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
            table = reader.read_all()
        table.validate(full=True)
        return conform(table)
    except (pa.ArrowException, OSError, ValueError) as exc:  # ValueError: bad names, conform
        raise CodecError(
            f"not an Arrow IPC stream of readings ({len(payload)} bytes): {exc}"
        ) from exc


# -- JSON ------------------------------------------------------------------------------------


def format_ts(ts: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_ts(value: Any) -> datetime:
    """Event time from ISO 8601 (with offset or ``Z``) or epoch milliseconds; ValueError if not."""
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"not a timestamp: {value!r}")
        return datetime.fromtimestamp(value / 1000.0, UTC)
    if isinstance(value, str):
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if ts.tzinfo is None:
            raise ValueError(f"timestamp without a UTC offset: {value!r}")
        return ts.astimezone(UTC)
    raise ValueError(f"not a timestamp: {value!r}")


def reading_to_dict(r: Reading) -> dict[str, Any]:
    return {
        "machine_id": r.machine_id,
        "sensor_id": r.sensor_id,
        "kind": r.kind.value,
        "value": r.value,
        "unit": r.unit,
        "ts": format_ts(r.ts),
        "seq": r.seq,
        "quality": r.quality.value,
        "schema_version": r.schema_version,
    }


def encode_reading(r: Reading) -> bytes:
    """One reading as a JSON object."""
    return json.dumps(reading_to_dict(r), ensure_ascii=False, separators=(",", ":")).encode()


def decode_reading(payload: bytes) -> Reading:
    """One reading from a JSON object; raises CodecError or InvalidReadingError."""
    try:
        obj = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise CodecError(f"a reading is a JSON object, got {type(obj).__name__}")
    try:
        ts = parse_ts(obj.get("ts"))
    except (ValueError, OverflowError, OSError) as exc:
        raise CodecError(str(exc)) from exc
    value = obj.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidReadingError("value", value, "must be a number")
    seq, version = obj.get("seq"), obj.get("schema_version", SCHEMA_VERSION)
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise InvalidReadingError("seq", seq, "must be an integer >= 0")
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidReadingError("schema_version", version, "must be an integer")
    quality = obj.get("quality") or Quality.GOOD.value
    if quality not in QUALITY_NAMES:
        raise InvalidReadingError("quality", quality, f"use one of {', '.join(QUALITY_NAMES)}")
    return Reading(
        machine_id=str(obj.get("machine_id") or ""),
        sensor_id=str(obj.get("sensor_id") or ""),
        kind=parse_kind(str(obj.get("kind") or "")),
        value=float(value),
        unit=str(obj.get("unit") or ""),
        ts=ts,
        seq=seq,
        quality=Quality(quality),
        schema_version=version,
    )


def _json_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return format_ts(v)
    return v


def encode_json_batch(table: pa.Table) -> bytes:
    """A batch as JSON lines (``application/x-ndjson``), one reading per line."""
    cols = conform(table).to_pydict()
    names = list(cols)
    lines = [
        json.dumps(
            {k: _json_value(cols[k][i]) for k in names}, ensure_ascii=False, separators=(",", ":")
        )
        for i in range(table.num_rows)
    ]
    return ("\n".join(lines) + ("\n" if lines else "")).encode()


#: ``json.dumps(o, ensure_ascii=False)`` without building an encoder for every record
_RECORD_ENCODER = json.JSONEncoder(ensure_ascii=False)


def encode_records(records: list[dict[str, Any]]) -> bytes:
    """Arbitrary reading-like dicts as JSON lines, unchecked (gateways forward as received)."""
    encode = _RECORD_ENCODER.encode
    return "".join(
        encode({k: _json_value(v) for k, v in r.items()}) + "\n" for r in records
    ).encode()


_NUMERIC = {"value", "seq", "schema_version"}


def decode_json_batch(payload: bytes) -> Decoded:
    """Readings from JSON lines (or one JSON array of objects). Bad lines become rejects."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Decoded(
            READING_SCHEMA.empty_table(),
            [Reject(Reason.MALFORMED, f"not UTF-8: {exc}", payload.decode("utf-8", "replace"))],
        )
    stripped = text.lstrip()
    items: list[tuple[str, Any]] = []
    rejects: list[Reject] = []
    if stripped.startswith("["):
        try:
            arr = json.loads(stripped)
        except json.JSONDecodeError as exc:
            return Decoded(READING_SCHEMA.empty_table(), [Reject(Reason.MALFORMED, str(exc), text)])
        items = [(json.dumps(o, default=str), o) for o in arr]
    else:
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                items.append((line, json.loads(line)))
            except json.JSONDecodeError as exc:
                rejects.append(Reject(Reason.MALFORMED, f"not JSON: {exc}", line))
    good: list[dict[str, Any]] = []
    stamps: list[datetime | None] = []
    for raw, obj in items:
        problem, ts = _check_record(obj)
        if problem is not None:
            rejects.append(Reject(problem[0], problem[1], raw, *_key(obj)))
            continue
        good.append(obj)
        stamps.append(ts)
    cols: dict[str, list[Any]] = {}
    for name in READING_SCHEMA.names:
        if name == "ts":
            cols[name] = stamps
        elif name == "value":  # an integer beyond int64 is still a valid float64 value
            cols[name] = [None if (v := o.get(name)) is None else float(v) for o in good]
        else:
            cols[name] = [o.get(name) for o in good]
    table = pa.table(
        {name: pa.array(vals, READING_SCHEMA.field(name).type) for name, vals in cols.items()},
        schema=READING_SCHEMA,
    )
    return Decoded(table, rejects)


def _key(obj: Any) -> tuple[str, str, int | None]:
    """machine_id, sensor_id and seq of a record when they are well-formed."""
    if not isinstance(obj, dict):
        return "", "", None
    m, s, q = obj.get("machine_id"), obj.get("sensor_id"), obj.get("seq")
    if not (isinstance(m, str) and m and isinstance(s, str) and s):
        return "", "", None
    ok_seq = isinstance(q, int) and not isinstance(q, bool) and 0 <= q < 2**63
    return m, s, (q if ok_seq else None)


_Checked = tuple[tuple[Reason, str] | None, datetime | None]
_STRINGS = ("machine_id", "sensor_id", "kind", "unit", "quality")


def _check_record(obj: Any) -> _Checked:
    """Why a decoded JSON value cannot become a row (types only; validation does the rest),
    and its event time when it can (parsed once, here)."""
    if type(obj) is not dict:
        return (Reason.MALFORMED, f"a reading is a JSON object, got {type(obj).__name__}"), None
    get = obj.get
    for name in _STRINGS:
        v = get(name)
        if v is not None and type(v) is not str:
            return (Reason.MALFORMED, f"{name} must be a string, got {v!r}"), None
    for name in _NUMERIC:
        v = get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            return (Reason.MALFORMED, f"{name} must be a number, got {v!r}"), None
    for name in ("seq", "schema_version"):
        v = get(name)
        if v is not None and (not float(v).is_integer() or v < 0 or v >= 2**63):
            return (Reason.MALFORMED, f"{name} must be a non-negative integer, got {v!r}"), None
    value = get("value")
    if type(value) is int:
        try:
            float(value)
        except OverflowError:
            return (Reason.MALFORMED, f"value is too large for a float64, got {value!r}"), None
    version = get("schema_version")
    if version is not None and version > 255:
        return (Reason.UNSUPPORTED_SCHEMA, f"schema_version {version!r}"), None
    ts = get("ts")
    if ts is None:
        return None, None
    try:
        return None, parse_ts(ts)
    except (ValueError, OverflowError, OSError) as exc:
        return (Reason.BAD_TIMESTAMP, str(exc)), None


# -- dispatch --------------------------------------------------------------------------------


def decode(content_type: str, payload: bytes) -> Decoded:
    """Decode a bus payload of any content type into a batch and its rejects."""
    if content_type == ARROW:
        try:
            return Decoded(decode_arrow(payload))
        except CodecError as exc:
            return _malformed(str(exc), payload[:4096].hex())
    if content_type == NDJSON:
        return decode_json_batch(payload)
    if content_type == JSON:
        # One JSON value, which may span lines (pretty-printed): parse it whole, then decode it
        # as one compact line (or as an array of objects).
        try:
            obj = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _malformed(f"not JSON: {exc}", payload[:4096].decode("utf-8", "replace"))
        return decode_json_batch(json.dumps(obj, ensure_ascii=False).encode() + b"\n")
    return _malformed(
        f"unknown content type {content_type!r}; use one of {', '.join(CONTENT_TYPES)}",
        payload[:4096].decode("utf-8", "replace"),
    )


def _malformed(detail: str, payload: str) -> Decoded:
    """A payload that yields no readings at all: one MALFORMED reject for the whole of it."""
    return Decoded(
        READING_SCHEMA.empty_table(), [Reject(Reason.MALFORMED, detail, payload)], whole=True
    )


def table_to_json_rows(table: pa.Table) -> list[str]:
    """Each row of a reading table as a JSON object string (dead-letter payloads)."""
    cols = table.to_pydict()
    names = list(cols)
    return [
        json.dumps({k: _json_value(cols[k][i]) for k in names}, ensure_ascii=False, default=str)
        for i in range(table.num_rows)
    ]


def encode_table(table: pa.Table) -> bytes:
    """Any Arrow table as an IPC stream (zstd): how the stream's outputs travel on topics."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def decode_table(payload: bytes) -> pa.Table:
    """The table of :func:`encode_table` bytes; :class:`CodecError` if they are not one."""
    try:
        with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
            return reader.read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CodecError(f"not an Arrow IPC stream ({len(payload)} bytes): {exc}") from exc


def ts_ms(table: pa.Table, column: str = "ts") -> np.ndarray[Any, np.dtype[np.int64]]:
    """Event times of a batch as int64 epoch milliseconds (nulls as INT64_MIN)."""
    col = table.column(column)
    ints = (
        pc.cast(col, pa.int64())
        if col.type == TS_TYPE
        else pc.cast(pc.cast(col, TS_TYPE), pa.int64())
    )
    return np.asarray(ints.fill_null(np.iinfo(np.int64).min).to_numpy(), dtype=np.int64)
