"""The Reading contract: one measurement, and its Arrow schema for batches.

Readings travel in batches (Arrow record batches, see ``codec``); the :class:`Reading` dataclass
is for edges, tests and interoperability, never for hot paths. Change a field only on purpose,
together with :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import pyarrow as pa

from plantwatch.core.errors import InvalidReadingError
from plantwatch.core.kinds import SensorKind, parse_kind

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})


class Quality(StrEnum):
    """OPC UA style quality of a reading, as the device reports it."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


QUALITY_NAMES: tuple[str, ...] = tuple(q.value for q in Quality)

TS_TYPE = pa.timestamp("ms", tz="UTC")

#: Schema of a batch of readings on the wire and in the raw topic. Every field is nullable so
#: that a decoder can hand malformed records to validation, which turns them into dead letters.
READING_SCHEMA = pa.schema(
    [
        pa.field("machine_id", pa.string()),
        pa.field("sensor_id", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("unit", pa.string()),
        pa.field("ts", TS_TYPE),
        pa.field("seq", pa.uint64()),
        pa.field("quality", pa.string()),
        pa.field("schema_version", pa.uint8()),
    ],
    metadata={"plantwatch.schema": "reading", "plantwatch.schema_version": str(SCHEMA_VERSION)},
)
READING_FIELDS: tuple[str, ...] = tuple(READING_SCHEMA.names)
KEY_FIELDS: tuple[str, ...] = ("machine_id", "sensor_id", "seq")


def utc(ts: datetime) -> datetime:
    """``ts`` as an aware UTC datetime; naive datetimes are refused, not guessed."""
    if not isinstance(ts, datetime):
        raise InvalidReadingError("ts", ts, "must be a timezone-aware UTC datetime")
    if ts.tzinfo is None:
        raise InvalidReadingError("ts", ts, "naive datetime; pass a timezone-aware UTC time")
    return ts.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement of one sensor at one event time."""

    machine_id: str
    sensor_id: str
    kind: SensorKind
    value: float
    unit: str
    ts: datetime
    seq: int
    quality: Quality = Quality.GOOD
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.machine_id:
            raise InvalidReadingError("machine_id", self.machine_id, "must not be empty")
        if not self.sensor_id:
            raise InvalidReadingError("sensor_id", self.sensor_id, "must not be empty")
        object.__setattr__(self, "kind", parse_kind(self.kind))
        if (
            isinstance(self.value, bool)
            or not isinstance(self.value, int | float)
            or not math.isfinite(self.value)
        ):
            raise InvalidReadingError("value", self.value, "must be a finite number")
        object.__setattr__(self, "ts", utc(self.ts))
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 0:
            raise InvalidReadingError("seq", self.seq, "must be an integer >= 0")
        try:
            object.__setattr__(self, "quality", Quality(self.quality))
        except ValueError:
            raise InvalidReadingError(
                "quality", self.quality, f"use one of {', '.join(QUALITY_NAMES)}"
            ) from None


def to_table(readings: Iterable[Reading]) -> pa.Table:
    """A batch table (``READING_SCHEMA``) from Reading objects. For tests and edges only."""
    rows = list(readings)
    return pa.table(
        {
            "machine_id": [r.machine_id for r in rows],
            "sensor_id": [r.sensor_id for r in rows],
            "kind": [r.kind.value for r in rows],
            "value": [float(r.value) for r in rows],
            "unit": [r.unit for r in rows],
            "ts": pa.array([r.ts for r in rows], TS_TYPE),
            "seq": pa.array([r.seq for r in rows], pa.uint64()),
            "quality": [r.quality.value for r in rows],
            "schema_version": pa.array([r.schema_version for r in rows], pa.uint8()),
        },
        schema=READING_SCHEMA,
    )


def from_table(table: pa.Table) -> list[Reading]:
    """Reading objects from a batch table. Raises on the first invalid row. For tests and edges."""
    out = []
    for i, row in enumerate(table.to_pylist()):
        try:
            out.append(
                Reading(
                    machine_id=row["machine_id"],
                    sensor_id=row["sensor_id"],
                    kind=row["kind"],
                    value=row["value"],
                    unit=row["unit"],
                    ts=row["ts"],
                    seq=row["seq"],
                    quality=row["quality"] or Quality.GOOD,
                    schema_version=row["schema_version"] or SCHEMA_VERSION,
                )
            )
        except InvalidReadingError as exc:
            exc.row = i
            raise
    return out


def conform(table: pa.Table) -> pa.Table:
    """Reorder and cast ``table`` to ``READING_SCHEMA``; missing columns become all-null.

    Raises :class:`InvalidReadingError` when a present column cannot be cast (for example a
    string ``value`` column). Extra columns are dropped.
    """
    cols = []
    n = table.num_rows
    for field in READING_SCHEMA:
        if field.name not in table.column_names:
            cols.append(pa.nulls(n, field.type))
            continue
        col = table.column(field.name)
        if col.type != field.type:
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidReadingError(
                    field.name, str(col.type), f"column cannot be cast to {field.type}: {exc}"
                ) from exc
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=READING_SCHEMA)
