"""The in-memory column buffer of typed readings, written to the spool as one Arrow entry."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from plantwatch.core.reading import READING_SCHEMA, SCHEMA_VERSION, TS_TYPE
from plantwatch.edge._validate import Checked

SensorKey = tuple[str, str]


@dataclass(slots=True)
class Columns:
    """Readings held in column lists (not one object per reading), with their highest seqs."""

    machine_id: list[str] = field(default_factory=list)
    sensor_id: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    unit: list[str] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    quality: list[str] = field(default_factory=list)
    max_seq: dict[SensorKey, int] = field(default_factory=dict)
    started: float = 0.0  # monotonic time of the oldest reading

    def __len__(self) -> int:
        return len(self.seq)

    def add(self, machine_id: str, sensor_id: str, reading: Checked, seq: int) -> None:
        self.machine_id.append(machine_id)
        self.sensor_id.append(sensor_id)
        self.kind.append(reading.kind)
        self.value.append(reading.value)
        self.unit.append(reading.unit)
        self.ts_ms.append(reading.ts_ms)
        self.seq.append(seq)
        self.quality.append(reading.quality)
        self.max_seq[(machine_id, sensor_id)] = seq

    def extend(self, later: Columns) -> None:
        """Append ``later``'s readings after these (used to put a failed batch back in front)."""
        self.machine_id += later.machine_id
        self.sensor_id += later.sensor_id
        self.kind += later.kind
        self.value += later.value
        self.unit += later.unit
        self.ts_ms += later.ts_ms
        self.seq += later.seq
        self.quality += later.quality
        for key, seq in later.max_seq.items():
            self.max_seq[key] = max(seq, self.max_seq.get(key, 0))

    def to_table(self) -> pa.Table:
        n = len(self)
        return pa.table(
            {
                "machine_id": pa.array(self.machine_id, pa.string()),
                "sensor_id": pa.array(self.sensor_id, pa.string()),
                "kind": pa.array(self.kind, pa.string()),
                "value": pa.array(self.value, pa.float64()),
                "unit": pa.array(self.unit, pa.string()),
                "ts": pa.array(self.ts_ms, pa.int64()).cast(TS_TYPE),
                "seq": pa.array(self.seq, pa.uint64()),
                "quality": pa.array(self.quality, pa.string()),
                "schema_version": pa.array([SCHEMA_VERSION] * n, pa.uint8()),
            },
            schema=READING_SCHEMA,
        )
