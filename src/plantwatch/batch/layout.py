"""The archive's layout: datasets, their Arrow schemas and Hive-style partitions.

An archive root holds ``<dataset>/date=YYYY-MM-DD/machine_id=<id>/part-<run>-<chunk>.<fmt>``
plus one ``_manifest.json`` per partition, ``_rejects/`` and ``_checkpoints/``. Export, archive
and replay all go through this module; changing a schema means bumping :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

import pyarrow as pa

from plantwatch.core.clock import iso_ms as iso_ms  # the archive writes instants this way
from plantwatch.core.errors import PlantwatchError

#: 2: anomalies.model_version (issue 7)
SCHEMA_VERSION = 2
MANIFEST_VERSION = 1
MANIFEST = "_manifest.json"
NO_MACHINE = "_none"
REJECTS = "_rejects"
CHECKPOINTS = "_checkpoints"
FORMATS = ("parquet", "csv")

TS = pa.timestamp("ms", tz="UTC")
_S = pa.string()

SCHEMAS: dict[str, pa.Schema] = {
    "readings": pa.schema(
        [
            ("machine_id", _S),
            ("machine_type", _S),
            ("sensor_id", _S),
            ("kind", _S),
            ("ts", TS),
            ("seq", pa.uint64()),
            ("value", pa.float64()),
            ("unit", _S),
            ("quality", _S),
            ("anomaly_score", pa.float32()),
            ("late", pa.uint8()),
            ("ingested_at", TS),
        ]
    ),
    "logs": pa.schema(
        [
            ("timestamp", TS),
            ("level", _S),
            ("service", _S),
            ("host", _S),
            ("logger", _S),
            ("message", _S),
            ("machine_id", _S),
            ("sensor_id", _S),
            ("event_code", _S),
            ("fields", _S),
            ("origin", _S),
        ]
    ),
    "features": pa.schema(
        [
            ("machine_id", _S),
            ("sensor_id", _S),
            ("kind", _S),
            ("window_start", TS),
            ("window_end", TS),
            ("count", pa.uint32()),
            ("mean", pa.float64()),
            ("min", pa.float64()),
            ("max", pa.float64()),
            ("std", pa.float64()),
            ("last", pa.float64()),
            ("rms", pa.float64()),
            ("version", pa.uint32()),
            ("computed_at", TS),
        ]
    ),
    "anomalies": pa.schema(
        [
            ("ts", TS),
            ("machine_id", _S),
            ("machine_type", _S),
            ("sensor_id", _S),
            ("kind", _S),
            ("detector", _S),
            ("severity", _S),
            ("score", pa.float64()),
            ("value", pa.float64()),
            ("threshold", pa.float64()),
            ("message", _S),
            ("detected_at", TS),
            ("model_version", _S),
        ]
    ),
    "alert_events": pa.schema(
        [
            ("ts", TS),
            ("rule", _S),
            ("state", _S),
            ("severity", _S),
            ("machine_id", _S),
            ("sensor_id", _S),
            ("kind", _S),
            ("value", pa.float64()),
            ("message", _S),
            ("fingerprint", _S),
            ("active_since", TS),
            ("emitted_at", TS),
            ("previous", _S),
            ("threshold", pa.float64()),
            ("labels", _S),
            ("annotations", _S),
        ]
    ),
    "alarm_events": pa.schema(
        [
            ("alarm_id", _S),
            ("ts", TS),
            ("event", _S),
            ("fingerprint", _S),
            ("rule", _S),
            ("machine_id", _S),
            ("sensor_id", _S),
            ("kind", _S),
            ("severity", _S),
            ("value", pa.float64()),
            ("message", _S),
            ("user", _S),
            ("comment", _S),
            ("assignee", _S),
            ("created_at", TS),
        ]
    ),
    "dead_letters": pa.schema(
        [
            ("received_at", TS),
            ("reason", _S),
            ("detail", _S),
            ("source", _S),
            ("machine_id", _S),
            ("sensor_id", _S),
            ("seq", pa.uint64()),
            ("payload", _S),
        ]
    ),
}

#: the column that decides a row's day partition and a file's time range
TIME_COLUMN: dict[str, str] = {
    "readings": "ts",
    "logs": "timestamp",
    "features": "window_start",
    "anomalies": "ts",
    "alert_events": "ts",
    "alarm_events": "ts",
    "dead_letters": "received_at",
}
DATASETS = tuple(SCHEMAS)

_PART = re.compile(r"^part-(?P<run>[A-Za-z0-9]+)-(?P<chunk>\d{5})\.(?P<fmt>parquet|csv)$")
_DATE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_MACHINE = re.compile(r"^machine_id=(.+)$")


class LayoutError(PlantwatchError):
    """A dataset, format or path that is not part of the archive layout."""


def schema(dataset: str) -> pa.Schema:
    try:
        return SCHEMAS[dataset]
    except KeyError:
        raise LayoutError(
            f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}"
        ) from None


def conform(table: pa.Table, dataset: str) -> pa.Table:
    """``table`` in exactly the dataset's schema: its columns in order, dictionary columns
    decoded, types cast (no schema metadata). Raises LayoutError naming what does not fit."""
    target = schema(dataset)
    missing = [name for name in target.names if name not in table.column_names]
    if missing:
        raise LayoutError(
            f"{dataset} rows lack the columns {', '.join(missing)}: not written by this "
            f"plantwatch version (schema version {SCHEMA_VERSION})"
        )
    arrays = []
    try:
        for f in target:
            col = table.column(f.name)
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            arrays.append(col.cast(f.type))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise LayoutError(f"{dataset} rows have a column of the wrong type: {exc}") from exc
    return pa.Table.from_arrays(arrays, schema=target)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise LayoutError(f"unknown format {fmt!r}: choose csv or parquet")
    return fmt


def machine_segment(machine_id: str | None) -> str:
    """The ``machine_id=`` path value: percent-encoded, ``_none`` when there is no machine."""
    return quote(machine_id, safe="._-") if machine_id else NO_MACHINE


def machine_from_segment(segment: str) -> str | None:
    return None if segment == NO_MACHINE else unquote(segment)


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    dataset: str
    date: dt.date
    machine_id: str  # the machine id, or NO_MACHINE

    def path(self) -> str:
        machine = NO_MACHINE if self.machine_id == NO_MACHINE else machine_segment(self.machine_id)
        return f"{self.dataset}/date={self.date.isoformat()}/machine_id={machine}"

    def manifest_path(self) -> str:
        return f"{self.path()}/{MANIFEST}"

    @classmethod
    def parse(cls, rel_dir: str) -> Partition:
        """``readings/date=2026-12-05/machine_id=m-001`` back into a partition."""
        parts = rel_dir.strip("/").split("/")
        if len(parts) != 3 or parts[0] not in SCHEMAS:
            raise LayoutError(f"not a partition folder: {rel_dir!r}")
        day, machine = _DATE.match(parts[1]), _MACHINE.match(parts[2])
        if day is None or machine is None:
            raise LayoutError(f"not a partition folder: {rel_dir!r}")
        mid = machine_from_segment(machine.group(1))
        return cls(parts[0], dt.date.fromisoformat(day.group(1)), mid or NO_MACHINE)


def part_name(run_id: str, chunk: int, fmt: str) -> str:
    return f"part-{run_id}-{chunk:05d}.{check_format(fmt)}"


def parse_part_name(name: str) -> tuple[str, int, str] | None:
    """``(run_id, chunk, format)`` of a part file name, None for anything else."""
    m = _PART.match(name)
    return None if m is None else (m["run"], int(m["chunk"]), m["fmt"])


def rejects_path(dataset: str, run_id: str, chunk: int) -> str:
    return f"{REJECTS}/{dataset}/rejects-{run_id}-{chunk:05d}.jsonl"


def checkpoint_path(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise LayoutError(f"checkpoint name {name!r}: use letters, digits, '.', '_' and '-'")
    return f"{CHECKPOINTS}/{name}.json"


_SPAN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_span(text: str) -> dt.timedelta:
    """``90s``, ``30m``, ``12h``, ``365d``, ``2w`` as a timedelta (a whole number > 0 and a unit);
    raises ValueError saying how to write one."""
    m = _SPAN.match(text)
    if m is None or int(m.group(1)) == 0:
        raise ValueError(
            f"{text!r} is not a span: write a whole number > 0 and a unit s, m, h, d or w "
            "(30m, 12h, 365d, 2w)"
        )
    return dt.timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})


def parse_instant(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """An instant from ISO 8601 (``2026-12-05``, ``2026-12-05T06:00:00Z``; no zone means UTC)
    or a span back from now (``90m``, ``24h``, ``7d``, ``2w``)."""
    s = text.strip()
    if _SPAN.match(s):
        return (now or dt.datetime.now(dt.UTC)) - parse_span(s)
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise LayoutError(
            f"{text!r} is not a time: write ISO 8601 (2026-12-05 or 2026-12-05T06:00:00Z) "
            "or a span back from now (90m, 24h, 7d, 2w)"
        ) from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
