"""Reads the stream needs to resume after a restart, and the machine registry.

Every query is plain ClickHouse SQL against the schema in ``schema/``; they run the same on chDB
and on a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from plantwatch.store.client import Store


def sql_string(value: str) -> str:
    """``value`` as a ClickHouse string literal (backslashes and quotes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class SensorHistory:
    """What the store holds of one sensor's seqs (readings and keyed dead letters)."""

    machine_id: str
    sensor_id: str
    kind: str
    first: int
    last: int
    distinct: int
    last_ts_ms: int  # -1 when only dead letters are stored

    @property
    def contiguous(self) -> bool:
        return self.distinct == self.last - self.first + 1


def register_machines(store: Store, machines: Iterable[Mapping[str, str]]) -> int:
    rows = list(machines)
    if not rows:
        return 0
    now = datetime.now(UTC)
    store.insert(
        "machines",
        pa.table(
            {
                "machine_id": [r["machine_id"] for r in rows],
                "machine_type": [r["machine_type"] for r in rows],
                "line": [r.get("line", "") for r in rows],
                "site": [r.get("site", "") for r in rows],
                "name": [r.get("name", r["machine_id"]) for r in rows],
                "updated_at": pa.array([now] * len(rows), pa.timestamp("ms", tz="UTC")),
            }
        ),
    )
    return len(rows)


def machine_rows(store: Store) -> list[dict[str, str]]:
    """The machine registry: machine_id, machine_type, line, site, name."""
    db = store.database
    rows = store.query_rows(
        f"SELECT machine_id, machine_type, line, site, name FROM {db}.machines FINAL"
    )
    return [
        {
            "machine_id": str(m),
            "machine_type": str(t),
            "line": str(li),
            "site": str(si),
            "name": str(n),
        }
        for m, t, li, si, n in rows
    ]


def sensor_histories(store: Store) -> list[SensorHistory]:
    db = store.database
    rows = store.query_rows(
        f"""
        SELECT machine_id, sensor_id, anyIf(kind, kind != '') AS kind,
               min(seq), max(seq), uniqExact(seq), max(ts_ms)
        FROM (
            SELECT toString(machine_id) AS machine_id, toString(sensor_id) AS sensor_id,
                   toString(kind) AS kind, seq, toUnixTimestamp64Milli(ts) AS ts_ms
            FROM {db}.readings
            UNION ALL
            SELECT machine_id, sensor_id, '' AS kind, assumeNotNull(seq) AS seq, -1 AS ts_ms
            FROM {db}.dead_letters
            WHERE seq IS NOT NULL AND machine_id != '' AND sensor_id != ''
        )
        GROUP BY machine_id, sensor_id
        """
    )
    return [
        SensorHistory(str(m), str(s), str(k), int(a), int(b), int(n), int(t))
        for m, s, k, a, b, n, t in rows
    ]


def seqs_above(store: Store, machine_id: str, sensor_id: str, above: int) -> list[int]:
    db = store.database
    rows = store.query_rows(
        f"""
        SELECT DISTINCT seq FROM (
            SELECT seq FROM {db}.readings
            WHERE machine_id = {{m:String}} AND sensor_id = {{s:String}}
              AND toInt64(seq) > {{a:Int64}}
            UNION ALL
            SELECT assumeNotNull(seq) FROM {db}.dead_letters
            WHERE machine_id = {{m:String}} AND sensor_id = {{s:String}}
              AND toInt64(seq) > {{a:Int64}}
        ) ORDER BY seq
        """,
        {"m": machine_id, "s": sensor_id, "a": above},
    )
    return [int(r[0]) for r in rows]


def max_event_ms(store: Store) -> int | None:
    db = store.database
    rows = store.query_rows(f"SELECT count(), toUnixTimestamp64Milli(max(ts)) FROM {db}.readings")
    return int(rows[0][1]) if rows and rows[0][0] else None


def recent_window_means(store: Store, per_sensor: int) -> list[tuple[str, str, list[float]]]:
    """The last ``per_sensor`` window means of every sensor, oldest first."""
    db = store.database
    rows = store.query_rows(
        f"""
        SELECT machine_id, sensor_id,
               arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((window_start, mean))))
        FROM (
            SELECT toString(machine_id) AS machine_id, toString(sensor_id) AS sensor_id,
                   window_start, mean
            FROM {db}.features FINAL
            ORDER BY machine_id, sensor_id, window_start DESC
            LIMIT {int(per_sensor)} BY machine_id, sensor_id
        )
        GROUP BY machine_id, sensor_id
        """
    )
    return [(str(m), str(s), [float(x) for x in means]) for m, s, means in rows]


def table_counts(store: Store) -> dict[str, int]:
    """Rows per table, after de-duplication (FINAL) where the engine replaces."""
    db = store.database
    out = {}
    for table in (
        "readings",
        "raw_readings",
        "dead_letters",
        "features",
        "anomalies",
        "alert_events",
    ):
        out[table] = int(store.query_rows(f"SELECT count() FROM {db}.{table} FINAL")[0][0])
    return out


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """The latest state of an alert instance that is not normal."""

    rule: str
    machine_id: str
    sensor_id: str
    kind: str
    state: str
    severity: str
    active_since_ms: int
    ts_ms: int


def open_alerts(store: Store) -> list[OpenAlert]:
    """Alert instances whose latest event leaves them pending, firing or recovering."""
    db = store.database
    rows = store.query_rows(
        f"""
        SELECT rule, machine_id, sensor_id, kind, state, severity, since, last_ts FROM (
            SELECT toString(rule) AS rule, toString(machine_id) AS machine_id,
                   toString(sensor_id) AS sensor_id, toString(kind) AS kind,
                   argMax(toString(state), (ts, emitted_at)) AS state,
                   argMax(toString(severity), (ts, emitted_at)) AS severity,
                   argMax(toUnixTimestamp64Milli(active_since), (ts, emitted_at)) AS since,
                   max(toUnixTimestamp64Milli(ts)) AS last_ts
            FROM {db}.alert_events
            GROUP BY rule, machine_id, sensor_id, kind
        )
        WHERE state IN ('pending', 'firing', 'recovering')
        """
    )
    return [
        OpenAlert(str(r), str(m), str(s), str(k), str(st), str(sev), int(since), int(ts))
        for r, m, s, k, st, sev, since, ts in rows
    ]
