"""A Kafka consumer knows when it has read its partitions to the end, and a stopping stream
waits for that: a consumer still joining its group finds nothing, though its topic is full."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from plantwatch.bus.kafka import KafkaBus
from plantwatch.core.settings import KafkaSettings
from plantwatch.services import KafkaCluster
from plantwatch.stream.backends import run_until_idle

from kafka_support import make_topics, unique_prefix


def publish(bus: KafkaBus, topic: str, n: int) -> None:
    for i in range(n):
        bus.publish(topic, f"m{i}".encode(), key=f"k{i % 7}".encode())
    assert bus.flush(30) == 0


@pytest.fixture
def bus_topic(kafka: KafkaCluster) -> Iterator[tuple[KafkaBus, str]]:
    """A bus on the session's broker and a fresh topic of three partitions."""
    topic = f"{unique_prefix()}.raw"
    make_topics(kafka.bootstrap, [topic], partitions=3)
    bus = KafkaBus(kafka.bootstrap, KafkaSettings())
    yield bus, topic
    bus.close()


def test_caught_up_only_once_every_partition_is_read_to_its_end(
    bus_topic: tuple[KafkaBus, str],
) -> None:
    bus, topic = bus_topic
    publish(bus, topic, 300)
    consumer = bus.subscribe(topic, f"g-{uuid.uuid4().hex[:8]}")
    assert consumer.caught_up() is False  # no partitions yet
    got = consumer.poll(50, 10.0)
    while not got:
        got = consumer.poll(50, 1.0)
    assert consumer.assigned and consumer.caught_up() is False  # 300 there, 50 read
    while len(got) < 300:
        got += consumer.poll(500, 1.0)
    assert len(got) == 300
    consumer.poll(1, 1.0)  # a fetch response brings the partitions' ends
    assert consumer.caught_up() is True
    publish(bus, topic, 10)
    consumer.poll(0, 1.0)
    assert consumer.caught_up() is False  # new messages: not at the end any more


def test_a_stopped_runner_reads_a_full_topic_although_its_group_is_still_joining(
    bus_topic: tuple[KafkaBus, str],
) -> None:
    bus, topic = bus_topic
    publish(bus, topic, 500)
    consumer = bus.subscribe(topic, f"g-{uuid.uuid4().hex[:8]}")
    read: list[bytes] = []

    def step(timeout: float) -> int:
        msgs = consumer.poll(100, timeout)
        read.extend(m.value for m in msgs)
        consumer.commit(msgs)
        return len(msgs)

    stop = threading.Event()
    stop.set()  # stopping from the start: only the drain after the stop runs
    run_until_idle(step, stop, idle_s=0.05, caught_up=consumer.caught_up, limit_s=60)
    assert len(read) == 500
    assert sorted(read) == sorted(f"m{i}".encode() for i in range(500))
