"""Crafted reading batches for tests (importable as ``batches``: ``tests/`` is on the path)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from plantwatch.core.reading import READING_SCHEMA, TS_TYPE

T0_MS = 1_800_000_000_000  # 2027-01-15T08:00:00Z, a round event time for crafted batches

MakeReadings = Callable[..., pa.Table]


def readings(
    *,
    machine: str | Sequence[str] = "m1",
    sensor: str | Sequence[str] = "s1",
    kind: str | Sequence[str] = "vibration",
    values: Sequence[float] | np.ndarray[Any, Any] = (1.0,),
    unit: str | Sequence[str | None] | None = None,
    ts_ms: Sequence[int] | np.ndarray[Any, Any] | None = None,
    seq: Sequence[int | None] | np.ndarray[Any, Any] | None = None,
    quality: str | Sequence[str | None] = "good",
    schema_version: int = 1,
) -> pa.Table:
    """A READING_SCHEMA batch; scalars repeat, ts defaults to one per second from T0."""
    n = len(values)

    def col(v: Any) -> list[Any]:
        return [v] * n if isinstance(v, str) or v is None else list(v)

    units = {"vibration": "mm/s", "temperature": "°C", "pressure": "bar", "current": "A"}
    if unit is None:
        unit = [units.get(k, "") for k in col(kind)]
    ts = np.asarray(ts_ms if ts_ms is not None else T0_MS + 1000 * np.arange(n), np.int64)
    seqs = list(seq) if seq is not None else list(range(1, n + 1))
    return pa.table(
        {
            "machine_id": col(machine),
            "sensor_id": col(sensor),
            "kind": col(kind),
            "value": pa.array(np.asarray(values, np.float64)),
            "unit": col(unit),
            "ts": pa.array(ts).cast(TS_TYPE),
            "seq": pa.array(seqs, pa.uint64()),
            "quality": col(quality),
            "schema_version": pa.array([schema_version] * n, pa.uint8()),
        },
        schema=READING_SCHEMA,
    )
