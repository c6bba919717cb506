"""The local runner on the real engine: bus → pipeline → chDB → commit, and a restart that
recognises what the store already holds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from plantwatch.bus import MemoryBus
from plantwatch.core import codec
from plantwatch.core.clock import SimulatedClock
from plantwatch.store import ClickHouseStore, StoreError
from plantwatch.store.queries import register_machines, table_counts
from plantwatch.stream import Pipeline
from plantwatch.stream.local import WRITE_ORDER, LocalRunner, stop_when_idle

from batches import T0_MS, readings

TOPIC = "plantwatch.readings.raw"


def runner(store: Any, bus: MemoryBus, *, now_ms: int = T0_MS + 3_600_000) -> LocalRunner:
    clock = SimulatedClock(now_ms / 1000, None)
    r = LocalRunner(bus=bus, store=store, pipeline=Pipeline(), clock=clock, max_batch_wait_s=0.01)
    r.restore()
    return r


def publish(bus: MemoryBus, table: pa.Table, acks: list[int] | None = None, tag: int = 0) -> None:
    on_commit = (lambda: acks.append(tag)) if acks is not None else None
    bus.publish(
        TOPIC,
        codec.encode_arrow(table),
        headers={"content-type": codec.ARROW, "count": str(table.num_rows)},
        on_commit=on_commit,
    )


def vib(seqs: range, *, sensor: str = "v1", value: float = 2.0) -> pa.Table:
    seq = np.array(list(seqs))
    return readings(
        machine="p1",
        sensor=sensor,
        values=np.full(len(seq), value),
        ts_ms=T0_MS + 1000 * seq,
        seq=seq,
    )


def stored_keys(store: ClickHouseStore) -> list[tuple[str, int, int]]:
    return [
        (str(s), int(q), int(c))
        for s, q, c in store.query_rows(
            f"SELECT sensor_id, seq, count() FROM {store.database}.readings "
            "GROUP BY sensor_id, seq ORDER BY sensor_id, seq"
        )
    ]


def test_a_message_is_committed_only_after_its_readings_are_stored(store: ClickHouseStore) -> None:
    bus = MemoryBus()
    r = runner(store, bus)
    acks: list[int] = []
    publish(bus, vib(range(1, 101)), acks, tag=1)
    assert r.step(timeout=1.0) == 100
    assert acks == [1]
    assert table_counts(store)["readings"] == 100
    assert table_counts(store)["raw_readings"] == 100
    r.close()


def test_a_failed_store_write_commits_nothing(store: ClickHouseStore) -> None:
    class FailingStore:
        def __init__(self, inner: ClickHouseStore) -> None:
            self.inner, self.database, self.inserted = inner, inner.database, []

        def insert(self, table: str, data: pa.Table) -> None:
            if table == "readings_ingest":
                raise StoreError("disk full")
            self.inserted.append(table)
            self.inner.insert(table, data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    failing = FailingStore(store)
    bus = MemoryBus()
    r = runner(failing, bus)
    acks: list[int] = []
    publish(bus, vib(range(1, 51)), acks, tag=1)
    with pytest.raises(StoreError, match="disk full"):
        r.step(timeout=1.0)
    assert acks == []  # the edge keeps the readings in its spool
    # everything else was written first: the processed readings are the commit point
    written = [t for t in failing.inserted if t != "pipeline_metrics"]  # the lag sample
    assert written == list(WRITE_ORDER[:-1])
    r.close()


def test_with_write_ahead_batches_are_stored_and_committed_in_order(
    store: ClickHouseStore,
) -> None:
    bus = MemoryBus()
    clock = SimulatedClock((T0_MS + 3_600_000) / 1000, None)
    r = LocalRunner(
        bus=bus, store=store, pipeline=Pipeline(), clock=clock, max_batch_rows=100, write_ahead=2
    )
    r.restore()
    acks: list[int] = []
    for tag in range(1, 6):
        publish(bus, vib(range(100 * tag - 99, 100 * tag + 1)), acks, tag=tag)
    steps = [r.step(timeout=1.0) for _ in range(5)]
    assert steps == [100] * 5  # the stream processed all five, the writer may lag behind
    r.flush()
    assert acks == [1, 2, 3, 4, 5]
    assert r.metrics.counts.stored == 500 == table_counts(store)["readings"]
    assert [k[1] for k in stored_keys(store)] == list(range(1, 501))
    r.close()


def test_with_write_ahead_a_failed_write_commits_nothing_after_it(store: ClickHouseStore) -> None:
    class FailingOnce:
        def __init__(self, inner: ClickHouseStore) -> None:
            self.inner, self.database, self.calls = inner, inner.database, 0

        def insert(self, table: str, data: pa.Table) -> None:
            if table == "readings_ingest":
                self.calls += 1
                if self.calls == 2:
                    raise StoreError("disk full")
            self.inner.insert(table, data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    bus = MemoryBus()
    clock = SimulatedClock((T0_MS + 3_600_000) / 1000, None)
    r = LocalRunner(
        bus=bus,
        store=FailingOnce(store),  # type: ignore[arg-type]
        pipeline=Pipeline(),
        clock=clock,
        max_batch_rows=100,
        write_ahead=1,
    )
    acks: list[int] = []
    for tag in range(1, 5):
        publish(bus, vib(range(100 * tag - 99, 100 * tag + 1)), acks, tag=tag)

    def run_all() -> None:
        for _ in range(4):
            r.step(timeout=1.0)
        r.flush()

    with pytest.raises(StoreError, match="disk full"):
        run_all()
    with pytest.raises(StoreError, match="disk full"):
        r.finish()  # the stream cannot go on past a failed write
    assert acks == [1]  # batch 2 failed; 3 and 4 were neither stored nor committed
    assert [k[1] for k in stored_keys(store)] == list(range(1, 101))
    r.close()


def test_restart_recognises_stored_readings_and_dead_letters(store: ClickHouseStore) -> None:
    register_machines(store, [{"machine_id": "p1", "machine_type": "centrifugal_pump"}])
    bus = MemoryBus()
    first = runner(store, bus)
    batch = vib(range(1, 101))
    rows = batch.to_pylist()
    rows[4]["unit"] = "g"  # seq 5 becomes a dead letter
    batch = pa.Table.from_pylist(rows, schema=batch.schema)
    publish(bus, batch)
    stop_when_idle(first, 0.1, limit_s=10)
    first.close()
    assert table_counts(store)["readings"] == 99
    assert table_counts(store)["dead_letters"] == 1

    # a new process: new pipeline state, restored from the store
    bus2 = MemoryBus()
    second = runner(store, bus2)
    assert second.pipeline.registry.machine_types["p1"] == "centrifugal_pump"
    publish(bus2, batch)  # the spool replays what it had sent ...
    publish(bus2, vib(range(101, 151)))  # ... and new readings follow
    stop_when_idle(second, 0.1, limit_s=10)
    c = second.metrics.counts
    assert (c.duplicates, c.stored, sum(c.dead.values())) == (100, 50, 0)
    keys = stored_keys(store)
    assert len(keys) == 149 and all(n == 1 for _, _, n in keys)
    assert table_counts(store)["dead_letters"] == 1
    second.close()


def test_restart_with_gaps_is_exact(store: ClickHouseStore) -> None:
    bus = MemoryBus()
    first = runner(store, bus)
    publish(bus, vib([*range(1, 11), *range(15, 21)]))  # 11..14 not there yet
    stop_when_idle(first, 0.1, limit_s=10)
    first.close()
    bus2 = MemoryBus()
    second = runner(store, bus2)
    publish(bus2, vib(range(1, 25)))
    stop_when_idle(second, 0.1, limit_s=10)
    assert second.metrics.counts.stored == 4 + 4  # 11..14 and 21..24
    assert [k[1] for k in stored_keys(store)] == list(range(1, 25))
    second.close()


def test_restart_resumes_watermark_and_baselines(store: ClickHouseStore) -> None:
    register_machines(store, [{"machine_id": "p1", "machine_type": "centrifugal_pump"}])
    bus = MemoryBus()
    first = runner(store, bus)
    rng = np.random.default_rng(1)
    t = vib(range(1, 601))
    t = t.set_column(
        t.schema.get_field_index("value"), "value", pa.array(2.0 + rng.normal(0, 0.05, 600))
    )
    publish(bus, t)
    stop_when_idle(first, 0.1, limit_s=10)
    first.finish()
    first.close()

    bus2 = MemoryBus()
    second = runner(store, bus2)
    restored = second.restore()
    assert restored.max_event_ms == T0_MS + 600_000
    assert restored.baselines == 1
    late = vib(range(1, 2), sensor="v2")  # a reading from long before the restored watermark
    late = late.set_column(
        late.schema.get_field_index("ts"),
        "ts",
        pa.array([T0_MS + 10_000]).cast(late.schema.field("ts").type),
    )
    publish(bus2, late)
    publish(bus2, vib(range(601, 661), value=3.5))  # a clear step right after the restart
    stop_when_idle(second, 0.1, limit_s=10)
    assert second.metrics.counts.late >= 1
    assert second.metrics.anomalies_by_detector["baseline"] > 0  # judged without a new warm-up
    second.close()
