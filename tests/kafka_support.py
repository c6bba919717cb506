"""Real Kafka brokers for tests (importable as ``kafka_support``).

Each cluster runs from its own folder on free loopback ports; the jars are fetched once into the
repository's ``.cache/``, where ``plantwatch services kafka`` caches them too. Java 17 and Maven
must be installed: if not, starting fails with the command that installs them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from plantwatch.bus.kafka import KafkaBus
from plantwatch.bus.kafka_config import TopicSpec
from plantwatch.core.settings import KafkaSettings
from plantwatch.services import KafkaCluster, KafkaConfig, free_port_block

REPO_CACHE = Path(__file__).resolve().parents[1] / ".cache"


@contextmanager
def running_cluster(folder: Path, *, brokers: int = 1) -> Iterator[KafkaCluster]:
    cluster = KafkaCluster(
        KafkaConfig(
            dir=folder, cache_dir=REPO_CACHE, brokers=brokers, port=free_port_block(brokers)
        )
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def make_topics(
    bootstrap: str,
    names: list[str],
    *,
    partitions: int = 3,
    replication: int = 1,
    min_insync: int = 1,
) -> None:
    bus = KafkaBus(bootstrap, KafkaSettings())
    try:
        bus.ensure_topics(
            {
                n: TopicSpec(
                    partitions=partitions,
                    replication_factor=replication,
                    min_insync_replicas=min_insync,
                )
                for n in names
            }
        )
    finally:
        bus.close()


def wait_caught_up(
    bootstrap: str, group: str, topics: list[str], *, timeout: float = 120.0
) -> None:
    """Wait until ``group`` has committed everything written to ``topics`` so far."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    probe = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        deadline = time.monotonic() + timeout
        behind: list[str] = []
        while time.monotonic() < deadline:
            try:
                md = probe.list_topics(timeout=10).topics
                parts = [TopicPartition(t, p) for t in topics for p in md[t].partitions]
                committed = probe.committed(parts, timeout=10)
                behind = []
                for tp in committed:
                    _, high = probe.get_watermark_offsets(tp, timeout=10)
                    if high > 0 and tp.offset < high:
                        behind.append(f"{tp.topic}/{tp.partition} at {tp.offset} of {high}")
            except KafkaException as exc:  # the coordinator is still loading, or moving
                behind = [str(exc)]
            if not behind:
                return
            time.sleep(1.0)
        raise AssertionError(f"group {group!r} did not catch up in {timeout:.0f} s: {behind[:5]}")
    finally:
        probe.close()


def wait_consumed(bootstrap: str, group: str, topics: list[str], *, timeout: float) -> None:
    """Wait until ``group`` has consumed every committed message of ``topics``. (Its committed
    offsets stop short of a transaction's closing marker, which no consumer receives, so
    'committed offset == end offset' would never hold on the Flink job's output topics.)"""
    from confluent_kafka import Consumer, TopicPartition

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        try:
            md = probe.list_topics(timeout=10).topics
            parts = [TopicPartition(t, p) for t in topics for p in md[t].partitions]
            committed = probe.committed(parts, timeout=10)
            ends = {(tp.topic, tp.partition): probe.get_watermark_offsets(tp)[1] for tp in parts}
            start = [TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)) for tp in committed]
            probe.assign(start)
            unread = 0
            left = {
                (tp.topic, tp.partition)
                for tp in start
                if tp.offset < ends[(tp.topic, tp.partition)]
            }
            until = time.monotonic() + 15
            while left and time.monotonic() < until:
                unread += sum(1 for m in probe.consume(100, 0.5) if m.error() is None)
                for tp in probe.position([TopicPartition(t, p) for t, p in left]):
                    if tp.offset >= ends[(tp.topic, tp.partition)]:
                        left.discard((tp.topic, tp.partition))
            if unread == 0 and not left:
                return
        finally:
            probe.close()
        time.sleep(1.0)
    raise AssertionError(f"group {group!r} did not consume {topics} in {timeout:.0f} s")


def read_topic(bootstrap: str, topic: str, *, quiet_s: float = 5.0) -> list[Any]:
    """Every message of ``topic`` from the beginning, in partition order (a fresh group)."""
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out: list[Any] = []
    quiet = time.monotonic()
    try:
        while time.monotonic() - quiet < quiet_s:
            for m in c.consume(500, 0.5):
                if m.error() is None:
                    out.append(m)
                    quiet = time.monotonic()
    finally:
        c.close()
    return out


def order_violations(messages: list[Any]) -> list[str]:
    """Per sensor, readings seen for the first time must come in increasing seq order (a
    re-sent duplicate may come late; a new reading may not)."""
    from plantwatch.core.codec import decode

    last: dict[tuple[str, str], int] = {}
    seen: set[tuple[str, str, int]] = set()
    bad: list[str] = []
    for m in messages:
        headers = {k: (v or b"").decode() for k, v in (m.headers() or [])}
        table = decode(headers.get("content-type", ""), m.value()).table
        for machine, sensor, seq in zip(
            table["machine_id"].to_pylist(),
            table["sensor_id"].to_pylist(),
            table["seq"].to_pylist(),
            strict=True,
        ):
            if seq is None or (machine, sensor, seq) in seen:
                continue
            seen.add((machine, sensor, seq))
            if seq < last.get((machine, sensor), 0):
                bad.append(f"{machine}/{sensor}: {seq} after {last[(machine, sensor)]}")
            last[(machine, sensor)] = max(seq, last.get((machine, sensor), 0))
    return bad
