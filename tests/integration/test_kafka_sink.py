"""The ClickHouse sink against a real broker: a batch delivered again stores no row twice."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from plantwatch.bus.kafka import KafkaBus
from plantwatch.bus.kafka_config import topic_specs
from plantwatch.core.clock import WallClock
from plantwatch.core.codec import encode_table
from plantwatch.core.reading import TS_TYPE
from plantwatch.core.settings import KafkaSettings
from plantwatch.core.topics import Topics
from plantwatch.services import KafkaCluster
from plantwatch.store import ClickHouseStore
from plantwatch.stream.outputs import READINGS_INGEST_SCHEMA
from plantwatch.stream.sink import StoreSink

from batches import T0_MS
from kafka_support import unique_prefix


def clean_rows(seqs: range, sensor: str = "v1") -> pa.Table:
    q = np.array(list(seqs))
    ts = pa.array(T0_MS + 1000 * q).cast(TS_TYPE)
    n = len(q)
    return pa.table(
        {
            "machine_id": ["m1"] * n,
            "machine_type": ["centrifugal_pump"] * n,
            "sensor_id": [sensor] * n,
            "kind": ["vibration"] * n,
            "ts": ts,
            "seq": pa.array(q, pa.uint64()),
            "raw_value": np.full(n, 2.0),
            "raw_unit": ["mm/s"] * n,
            "value": np.full(n, 2.0),
            "unit": ["mm/s"] * n,
            "quality": ["good"] * n,
            "anomaly_score": pa.array(np.zeros(n, np.float32)),
            "late": pa.array(np.zeros(n, np.uint8)),
            "schema_version": pa.array(np.ones(n, np.uint8)),
            "ingested_at": ts,
        },
        schema=READINGS_INGEST_SCHEMA,
    )


def publish_clean(bus: KafkaBus, topics: Topics, table: pa.Table, per_message: int = 40) -> None:
    for i in range(0, table.num_rows, per_message):
        part = table.slice(i, per_message)
        headers = {"table": "readings_ingest", "count": str(part.num_rows)}
        bus.publish(topics.clean, encode_table(part), key=b"m1", headers=headers)
    assert bus.flush(30) == 0


def publish_dead_letter(bus: KafkaBus, topics: Topics, seq: int) -> None:
    headers = {
        "reason": "bad_unit",
        "detail": "unit 'g'",
        "source": "raw",
        "machine_id": "m1",
        "sensor_id": "v9",
        "seq": str(seq),
        "received_at_ms": str(T0_MS),
    }
    bus.publish(
        topics.dead_letters,
        json.dumps({"unit": "g", "seq": seq}).encode(),
        key=b"m1",
        headers=headers,
    )
    assert bus.flush(30) == 0


def drain(sink: StoreSink, *, quiet_s: float = 3.0, limit_s: float = 60.0) -> None:
    """Step until nothing arrived for ``quiet_s`` after something did. The quiet time starts
    with the first batch: joining the group on a broker just started (its offsets topic still
    loading) can take longer than ``quiet_s``."""
    end = time.monotonic() + limit_s
    quiet: float | None = None
    while time.monotonic() < end and (quiet is None or time.monotonic() - quiet < quiet_s):
        if sink.step(timeout=0.5):
            quiet = time.monotonic()


def keys(store: ClickHouseStore) -> tuple[int, int]:
    (row,) = store.query_rows(
        f"SELECT count(), uniqExact(machine_id, sensor_id, seq) FROM {store.database}.readings"
    )
    return int(row[0]), int(row[1])


@pytest.fixture
def topics(kafka: KafkaCluster) -> Topics:
    t = Topics(unique_prefix())
    bus = KafkaBus(kafka.bootstrap, KafkaSettings())
    bus.ensure_topics(topic_specs(t, KafkaSettings(partitions=2)))
    bus.close()
    return t


def test_a_redelivered_batch_stores_no_duplicate_row(
    kafka: KafkaCluster, store: ClickHouseStore, topics: Topics
) -> None:
    bus = KafkaBus(kafka.bootstrap, KafkaSettings())
    publish_clean(bus, topics, clean_rows(range(1, 201)))
    publish_dead_letter(bus, topics, 5)

    crashing = StoreSink(bus=bus, store=store, clock=WallClock(), topics=topics, group="sink")
    crashing.restore()

    def crash(messages: Any) -> None:
        raise RuntimeError("killed between the insert and the commit")

    crashing.consumer.commit = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="killed"):
        drain(crashing)
    crashing.consumer.close()  # leave the group; nothing was committed
    first, distinct = keys(store)  # the insert happened; the offsets did not move
    assert first == distinct > 0
    (dead_before,) = store.query_rows(f"SELECT count() FROM {store.database}.dead_letters")

    publish_clean(bus, topics, clean_rows(range(201, 251)))
    restarted = StoreSink(bus=bus, store=store, clock=WallClock(), topics=topics, group="sink")
    assert restarted.restore() == 2  # v1 and the dead letter's v9, from the store itself
    drain(restarted)
    assert keys(store) == (250, 250)
    assert restarted.stored == 50
    # what the crashed sink had stored came again, and was recognised
    assert restarted.duplicates == first + dead_before[0]
    (dead,) = store.query_rows(f"SELECT count() FROM {store.database}.dead_letters")
    assert dead[0] == 1
    restarted.close()
    bus.close()
