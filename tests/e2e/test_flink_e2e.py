"""The plant with Flink as its stream stage: simulated devices → Kafka → ``plantwatch flink run
--local`` (a MiniCluster) → Kafka → ``plantwatch sink`` → chDB, every part its own process on
the session's broker. Every reading the SDK accepted is stored exactly once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plantwatch.bus.kafka import KafkaBus
from plantwatch.bus.kafka_config import topic_specs
from plantwatch.core.settings import KafkaSettings
from plantwatch.core.topics import Topics
from plantwatch.edge.spool import recover_sequences
from plantwatch.services import KafkaCluster
from plantwatch.stream.flink import runtime

from flink_support import PARTITIONS, REPO_CACHE, flink_run, stop_group
from kafka_support import unique_prefix, wait_caught_up, wait_consumed
from plantwatch_cli import query, start_role, stop_role, stored_exactly_once

pytestmark = pytest.mark.slow

SINK_TOPICS = ("readings.clean", "features", "anomalies", "alerts", "deadletters")


def test_simulated_plant_through_kafka_flink_and_the_sink_into_chdb(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    runtime.ensure(REPO_CACHE)
    prefix = unique_prefix()
    env = {"PLANTWATCH_TOPIC_PREFIX": prefix, "PLANTWATCH_KAFKA__PARTITIONS": str(PARTITIONS)}
    bus = f"kafka://{kafka.bootstrap}"
    admin = KafkaBus(kafka.bootstrap, KafkaSettings())
    admin.ensure_topics(topic_specs(Topics(prefix), KafkaSettings(partitions=PARTITIONS)))
    admin.close()
    store = tmp_path / "store"
    job = flink_run(
        *("--bus", bus, "--parallelism", "2", "--checkpoint-interval", "1"),
        *("--transactional-id-prefix", prefix),
        prefix=prefix,
        tmp=tmp_path,
    )
    sink = start_role(
        "sink", "--bus", bus, "--data-dir", str(store), env=env, log=tmp_path / "sink.log"
    )
    try:
        devices = start_role(
            *("simulate", "--bus", bus, "--machines", "8", "--speed", "30"),
            *("--duration", "30", "--seed", "3", "--data-dir", str(tmp_path / "devices")),
            *("--faults", "bearing_wear:1,overheating:1,stuck:1,dropout:1"),
            env=env,
            log=tmp_path / "simulate.log",
        )
        assert devices.wait(timeout=300) == 0, (tmp_path / "simulate.log").read_text()[-3000:]
        result = json.loads((tmp_path / "simulate.log").read_text().strip().splitlines()[-1])
        assert result["drained"] is True
        wait_caught_up(kafka.bootstrap, "plantwatch-flink", [f"{prefix}.readings.raw"], timeout=300)
        assert job.poll() is None, (tmp_path / "flink.log").read_text()[-5000:]
        wait_consumed(
            kafka.bootstrap, "plantwatch-sink", [f"{prefix}.{t}" for t in SINK_TOPICS], timeout=300
        )
    finally:
        stop_role(sink)
        code = stop_group(job)
    log = (tmp_path / "flink.log").read_text()
    assert code == 0, log[-5000:]
    assert '"event": "stopped"' in log and "savepoint-" in log  # stopped with a savepoint

    accepted = recover_sequences(tmp_path / "devices" / "spool")
    assert sum(accepted.values()) == result["generated"] > 3000
    stored_exactly_once(store, accepted)
    (row,) = query(
        store,
        "SELECT (SELECT count() FROM plantwatch.features) AS features,"
        " (SELECT count() FROM plantwatch.anomalies) AS anomalies,"
        " (SELECT count() FROM plantwatch.alert_events) AS alerts,"
        " (SELECT uniqExact(machine_id) FROM plantwatch.readings) AS machines,"
        " (SELECT countIf(machine_type = 'unknown') FROM plantwatch.readings) AS untyped",
    )
    assert row["machines"] == 8
    assert row["untyped"] == 0  # the machine registry reached the job's pipelines
    assert row["features"] > 0 and row["anomalies"] > 0 and row["alerts"] > 0, row
