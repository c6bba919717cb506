"""What every bus does, run against each implementation of the port.

The memory bus and Kafka (a real broker started once for the session) both run every test.
Tests use a fresh topic and fresh groups each, so one broker serves the whole session, and they
wait with deadlines rather than assume that one ``poll`` returns everything.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from itertools import pairwise

import pytest

from plantwatch.bus import Bus, BusClosedError, Consumer, MemoryBus, Message
from plantwatch.bus.kafka import KafkaBus
from plantwatch.bus.kafka_config import TopicSpec
from plantwatch.core.settings import KafkaSettings

BusFactory = Callable[[], Bus]

FACTORIES: dict[str, BusFactory] = {
    "memory": lambda: MemoryBus(max_messages=1024, publish_timeout=10.0),
}

DEADLINE_S = 10.0  # generous: a broker may take a while to assign partitions


@pytest.fixture(params=[*sorted(FACTORIES), "kafka"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "kafka":  # a real broker, started once for the session
        cluster = request.getfixturevalue("kafka")
        b: Bus = KafkaBus(cluster.bootstrap, KafkaSettings(), publish_timeout=10.0)
    else:
        b = FACTORIES[request.param]()
    yield b
    b.close()


@pytest.fixture
def topic(bus: Bus) -> str:
    name = f"contract.{uuid.uuid4().hex[:12]}"
    if isinstance(bus, KafkaBus):
        bus.ensure_topics({name: TopicSpec(partitions=3, replication_factor=1)})
    return name


def group() -> str:
    return f"g-{uuid.uuid4().hex[:12]}"


def drain(consumer: Consumer, n: int, *, deadline_s: float = DEADLINE_S) -> list[Message]:
    """Poll until ``n`` messages arrived (or the deadline passed)."""
    out: list[Message] = []
    end = time.monotonic() + deadline_s
    while len(out) < n and time.monotonic() < end:
        out.extend(consumer.poll(n - len(out), 0.2))
    return out


def test_a_message_arrives_with_its_key_and_headers(bus: Bus, topic: str) -> None:
    c = bus.subscribe(topic, group())
    assert bus.publish(topic, b"payload", key=b"press-01", headers={"ct": "x"}) >= 1
    [m] = drain(c, 1)
    assert m.topic == topic
    assert m.value == b"payload"
    assert m.key == b"press-01"
    assert dict(m.headers) == {"ct": "x"}
    assert m.offset >= 0


def test_each_group_receives_every_message_once_in_order(bus: Bus, topic: str) -> None:
    consumers = [bus.subscribe(topic, group()) for _ in range(2)]
    for i in range(20):
        bus.publish(topic, str(i).encode(), key=b"one-key")
    for c in consumers:
        got = drain(c, 20)
        assert [m.value for m in got] == [str(i).encode() for i in range(20)]
        c.commit(got)
        assert c.poll(10, 0.1) == []  # nothing twice


def test_offsets_increase_in_publish_order(bus: Bus, topic: str) -> None:
    c = bus.subscribe(topic, group())
    for _ in range(5):
        bus.publish(topic, b"x", key=b"one-key")
    offsets = [m.offset for m in drain(c, 5)]
    assert len(offsets) == 5
    assert all(a < b for a, b in pairwise(offsets))


def test_poll_returns_at_most_max_messages(bus: Bus, topic: str) -> None:
    c = bus.subscribe(topic, group())
    for i in range(5):
        bus.publish(topic, bytes([i]), key=b"one-key")
    first = c.poll(2, DEADLINE_S)
    assert 1 <= len(first) <= 2
    rest = drain(c, 5 - len(first))
    assert [m.value for m in first + rest] == [bytes([i]) for i in range(5)]


def test_a_consumer_is_caught_up_only_once_it_has_everything(bus: Bus, topic: str) -> None:
    c = bus.subscribe(topic, group())
    for i in range(5):
        bus.publish(topic, bytes([i]), key=b"one-key")
    assert c.caught_up() is False  # five waiting (a Kafka member is not even assigned yet)
    got = drain(c, 5)
    assert len(got) == 5
    end = time.monotonic() + DEADLINE_S
    while not c.caught_up() and time.monotonic() < end:
        got += c.poll(5, 0.2)  # Kafka learns where its partitions end from fetch responses
    assert c.caught_up() is True and len(got) == 5
    bus.publish(topic, b"more", key=b"one-key")
    if not isinstance(bus, KafkaBus):  # the memory bus knows at once; Kafka after a fetch
        assert c.caught_up() is False
    assert [m.value for m in drain(c, 1)] == [b"more"]


def test_lag_counts_what_the_consumer_has_not_read(bus: Bus, topic: str) -> None:
    c = bus.subscribe(topic, group())
    for i in range(5):
        bus.publish(topic, bytes([i]), key=b"one-key")
    got = drain(c, 2)
    end = time.monotonic() + DEADLINE_S
    while c.lag() != 5 - len(got) and time.monotonic() < end:
        got += c.poll(1, 0.2)  # Kafka: the partition's end comes with a fetch response
    assert len(got) < 5 and c.lag() == 5 - len(got)
    got += drain(c, 5 - len(got))
    assert c.lag() == 0 and len(got) == 5


def test_poll_of_an_empty_topic_returns_nothing(bus: Bus, topic: str) -> None:
    c = bus.subscribe(topic, group())
    assert c.poll(10, 0.05) == []


def test_on_commit_fires_once_after_the_commit(bus: Bus, topic: str) -> None:
    c = bus.subscribe(topic, group())
    fired = threading.Event()
    calls: list[int] = []

    def ack() -> None:
        calls.append(1)
        fired.set()

    bus.publish(topic, b"x", on_commit=ack)
    got = drain(c, 1)
    c.commit(got)
    assert fired.wait(DEADLINE_S)
    c.commit(got)  # again: still one acknowledgement
    assert calls == [1]


def test_a_closed_consumer_refuses_to_poll(bus: Bus, topic: str) -> None:
    c = bus.subscribe(topic, group())
    c.close()
    with pytest.raises(BusClosedError):
        c.poll(1, 0)


def test_a_closed_bus_refuses_to_publish(bus: Bus, topic: str) -> None:
    bus.subscribe(topic, group())
    bus.close()
    with pytest.raises(BusClosedError):
        bus.publish(topic, b"x")
