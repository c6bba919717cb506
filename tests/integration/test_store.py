"""The ClickHouse store on the real engine (chDB): schema, fan-out, rollups, contracts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from plantwatch.core.reading import TS_TYPE
from plantwatch.store import (
    ClickHouseStore,
    DataDirLockedError,
    ReadOnlyError,
    StoreError,
    migrate,
    open_store,
)
from plantwatch.store.migrations import available
from plantwatch.store.queries import table_counts
from plantwatch.stream.outputs import READINGS_INGEST_SCHEMA, TABLES


def columns(store: ClickHouseStore, table: str) -> dict[str, str]:
    rows = store.query_rows(
        "SELECT name, type FROM system.columns "
        "WHERE database = {d:String} AND table = {t:String} ORDER BY position",
        {"d": store.database, "t": table},
    )
    return {str(n): str(t) for n, t in rows}


def ingest(
    n: int, *, start_ms: int | None = None, unit: str = "°F", raw: float = 212.0
) -> pa.Table:
    start = start_ms if start_ms is not None else int(time.time() * 1000) - 3_600_000
    ts = pa.array(start + 1000 * np.arange(n)).cast(TS_TYPE)
    return pa.table(
        {
            "machine_id": ["m1"] * n,
            "machine_type": ["centrifugal_pump"] * n,
            "sensor_id": ["t1"] * n,
            "kind": ["temperature"] * n,
            "ts": ts,
            "seq": pa.array(np.arange(1, n + 1), pa.uint64()),
            "raw_value": np.full(n, raw),
            "raw_unit": [unit] * n,
            "value": np.full(n, 100.0),
            "unit": ["°C"] * n,
            "quality": ["good"] * n,
            "anomaly_score": pa.array(np.zeros(n, np.float32)),
            "late": pa.array(np.zeros(n, np.uint8)),
            "schema_version": pa.array(np.ones(n, np.uint8)),
            "ingested_at": ts,
        },
        schema=READINGS_INGEST_SCHEMA,
    )


def test_migrations_are_recorded_and_idempotent(store: ClickHouseStore) -> None:
    versions = [
        int(r[0])
        for r in store.query_rows(
            f"SELECT version FROM {store.database}.schema_migrations ORDER BY version"
        )
    ]
    assert versions == [m.version for m in available()]
    assert migrate(store) == []  # nothing left to apply


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_pipeline_output_matches_its_table(store: ClickHouseStore, table: str) -> None:
    """Contract: the columns the stream writes are the table's columns, in any order."""
    assert set(TABLES[table].names) == set(columns(store, table))


def test_one_insert_fills_raw_processed_and_rollups(store: ClickHouseStore) -> None:
    store.insert("readings_ingest", ingest(180))
    db = store.database
    raw = store.query_rows(f"SELECT count(), any(value), any(unit) FROM {db}.raw_readings")
    assert raw == [(180, 212.0, "°F")]
    processed = store.query_rows(f"SELECT count(), any(value), any(unit) FROM {db}.readings")
    assert processed == [(180, 100.0, "°C")]
    minute = store.query_rows(f"SELECT sum(count), sum(sum), max(max) FROM {db}.readings_1m")
    assert minute == [(180, 18000.0, 100.0)]
    hour = store.query_rows(f"SELECT sum(count), sum(sum_sq) FROM {db}.readings_1h")
    assert hour == [(180, 180 * 100.0**2)]


def test_rollup_leaves_out_bad_quality(store: ClickHouseStore) -> None:
    t = ingest(10)
    t = t.set_column(
        t.schema.get_field_index("quality"), "quality", pa.array(["bad"] * 3 + ["good"] * 7)
    )
    store.insert("readings_ingest", t)
    assert store.query_rows(f"SELECT sum(count) FROM {store.database}.readings_1m") == [(7,)]


def test_raw_readings_expire_after_seven_days(store: ClickHouseStore) -> None:
    old = int(time.time() * 1000) - 8 * 86_400_000
    store.insert("readings_ingest", ingest(5, start_ms=old))
    db = store.database
    store.command(f"OPTIMIZE TABLE {db}.raw_readings FINAL")
    assert store.query_rows(f"SELECT count() FROM {db}.raw_readings") == [(0,)]
    assert store.query_rows(f"SELECT count() FROM {db}.readings") == [(5,)]


def test_dead_letters_replayed_are_counted_once(store: ClickHouseStore) -> None:
    from plantwatch.core.deadletter import DEAD_LETTER_SCHEMA

    row = {
        "received_at": 1_800_000_000_000,
        "reason": "bad_unit",
        "detail": "unit 'g'",
        "source": "raw",
        "machine_id": "m1",
        "sensor_id": "v1",
        "seq": 7,
        "payload": '{"unit": "g"}',
    }
    table = pa.Table.from_pylist([row], schema=DEAD_LETTER_SCHEMA)
    store.insert("dead_letters", table)
    row["received_at"] += 5000  # the same record, dead-lettered again after a replay
    store.insert("dead_letters", pa.Table.from_pylist([row], schema=DEAD_LETTER_SCHEMA))
    assert table_counts(store)["dead_letters"] == 1


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO {db}.machines (machine_id) VALUES ('x')",
        "DROP TABLE {db}.machines",
        "SELECT 1; DROP TABLE {db}.machines",
        "/* SELECT */ ALTER TABLE {db}.machines DELETE WHERE 1",
    ],
)
def test_read_only_queries_refuse_writes(store: ClickHouseStore, sql: str) -> None:
    with pytest.raises(ReadOnlyError, match="only one reading statement"):
        store.query_rows(sql.format(db=store.database), read_only=True)
    assert store.query_rows(f"SELECT count() FROM {store.database}.machines", read_only=True) == [
        (0,)
    ]
    # and the connection still writes afterwards
    store.command(f"INSERT INTO {store.database}.machines (machine_id) VALUES ('ok')")


def test_read_only_allows_reading_statements(store: ClickHouseStore) -> None:
    for sql in ("SELECT 1", "  with x AS (SELECT 1 AS a) SELECT a FROM x", "-- hi\nSELECT 2;"):
        assert len(store.query_rows(sql, read_only=True)) == 1
    assert store.query_rows(f"SHOW TABLES FROM {store.database}", read_only=True)


def test_query_errors_carry_clickhouse_text(store: ClickHouseStore) -> None:
    with pytest.raises(StoreError, match=r"UNKNOWN_TABLE|Unknown table|doesn't exist"):
        store.query_rows(f"SELECT * FROM {store.database}.nope")


def test_a_second_process_gets_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "clickhouse"
    code = (
        "import sys, time; from plantwatch.store import open_store; "
        f"s = open_store('chdb://{folder}'); print('open', flush=True); time.sleep(30)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(DataDirLockedError, match=rf"in use by process {holder.pid}"):
            open_store(f"chdb://{folder}")
    finally:
        holder.kill()
        holder.wait()


def test_unsupported_urls() -> None:
    with pytest.raises(StoreError, match="unsupported store URL"):
        open_store("postgres://x")
    with pytest.raises(StoreError, match="absolute path"):
        open_store("chdb://relative/path")
