"""The seed's way, as a yardstick: one JSON message per reading, processed one record at a time,
inserted 500 rows per ``INSERT … VALUES`` statement.

It does what the pipeline does, the simple way: the device encodes a JSON object, the consumer
decodes it, checks its fields, drops a repeated ``(machine, sensor, seq)``, converts the unit,
scores the value against a running mean and deviation of its sensor (Welford), flags a static
limit, and buffers the row for the next 500-row insert into the same landing table (so the same
materialized views run). Only its input is prepared beforehand, as the simulator would.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from plantwatch.core.codec import ts_ms
from plantwatch.core.errors import UnitError
from plantwatch.core.kinds import KINDS, SensorKind
from plantwatch.core.units import conversion
from plantwatch.detect.limits import DEFAULT_LIMITS
from plantwatch.store.client import Store
from plantwatch.store.queries import sql_string

INSERT_ROWS = 500  # the seed's batch

_COLUMNS = (
    "machine_id, machine_type, sensor_id, kind, ts, seq, raw_value, raw_unit, value, unit, "
    "quality, anomaly_score, late, schema_version, ingested_at"
)


def device_records(readings: pa.Table, limit: int | None = None) -> list[tuple[Any, ...]]:
    """What the devices send, as plain tuples: the raw fields of stored landing rows."""
    t = readings if limit is None else readings.slice(0, limit)
    cols = [
        t.column(n).to_pylist()
        for n in ("machine_id", "machine_type", "sensor_id", "kind", "seq", "raw_value", "raw_unit")
    ]
    return list(zip(*cols[:4], ts_ms(t).tolist(), *cols[4:], strict=True))


def _ts_sql(ms: int) -> str:
    return "'" + datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "'"


class _Running:
    __slots__ = ("mean", "n", "sq")

    def __init__(self) -> None:
        self.n, self.mean, self.sq = 0, 0.0, 0.0

    def score(self, x: float) -> float:
        std = math.sqrt(self.sq / self.n) if self.n > 1 else 0.0
        z = abs(x - self.mean) / std if std > 0 else 0.0
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.sq += d * (x - self.mean)
        return z


def run_reference(store: Store, records: Iterable[tuple[Any, ...]], table: str) -> dict[str, Any]:
    """Push ``records`` through the seed-style path into ``table``; counts and seconds."""
    seen: set[tuple[str, str, int]] = set()
    stats: dict[tuple[str, str], _Running] = {}
    rows: list[str] = []
    counts = {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0, "limit_breaches": 0}
    inserts = 0
    t0 = time.perf_counter()
    for machine, mtype, sensor, kind, ts, seq, value, unit in records:
        message = json.dumps(
            {
                "machine_id": machine,
                "machine_type": mtype,
                "sensor_id": sensor,
                "kind": kind,
                "ts": ts,
                "seq": seq,
                "value": value,
                "unit": unit,
            }
        ).encode()
        # -- the consumer, one message at a time --
        counts["received"] += 1
        r = json.loads(message)
        try:
            k = SensorKind(r["kind"])
            v = float(r["value"])
            c = conversion(k, r["unit"])
        except (KeyError, ValueError, TypeError, UnitError):
            counts["rejected"] += 1
            continue
        if not math.isfinite(v):
            counts["rejected"] += 1
            continue
        key = (r["machine_id"], r["sensor_id"], int(r["seq"]))
        if key in seen:
            counts["duplicates"] += 1
            continue
        seen.add(key)
        canon = v * c.scale + c.offset
        spec = KINDS[k]
        quality = "good" if spec.low <= canon <= spec.high else "bad"
        run = stats.get(key[:2])
        if run is None:
            run = stats[key[:2]] = _Running()
        score = run.score(canon)
        limit = DEFAULT_LIMITS.get((r["machine_type"], k.value))
        if limit is not None and not (limit.warn_low <= canon <= limit.warn_high):
            counts["limit_breaches"] += 1
        now = int(time.time() * 1000)
        q = sql_string
        rows.append(
            f"({q(key[0])}, {q(r['machine_type'])}, {q(key[1])}, {q(k.value)}, "
            f"{_ts_sql(int(r['ts']))}, {key[2]}, {v!r}, {q(r['unit'])}, {canon!r}, "
            f"{q(spec.unit)}, {q(quality)}, {score!r}, 0, 1, {_ts_sql(now)})"
        )
        if len(rows) == INSERT_ROWS:
            store.command(
                f"INSERT INTO {store.database}.{table} ({_COLUMNS}) VALUES {','.join(rows)}"
            )
            counts["stored"] += len(rows)
            inserts += 1
            rows = []
    if rows:
        store.command(f"INSERT INTO {store.database}.{table} ({_COLUMNS}) VALUES {','.join(rows)}")
        counts["stored"] += len(rows)
        inserts += 1
    seconds = time.perf_counter() - t0
    return {**counts, "inserts": inserts, "seconds": seconds}
