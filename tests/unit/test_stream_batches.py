"""Micro-batches: gathered up to a number of readings, not a number of polls."""

from __future__ import annotations

from plantwatch.bus import MemoryBus
from plantwatch.stream.batches import count_of, gather

TOPIC = "plantwatch.readings.raw"


def publish(bus: MemoryBus, messages: int, readings_each: int) -> None:
    for _ in range(messages):
        bus.publish(TOPIC, b"x", headers={"count": str(readings_each)})


def test_a_batch_stops_within_one_message_of_max_rows() -> None:
    bus = MemoryBus(max_messages=1000)
    consumer = bus.subscribe(TOPIC, "g")
    publish(bus, 40, 5_000)
    first = gather(consumer, max_rows=50_000, max_wait_s=1.0, timeout=1.0)
    assert sum(count_of(m) for m in first) == 50_000  # ten messages, not a poll of sixteen more
    second = gather(consumer, max_rows=12_000, max_wait_s=1.0, timeout=1.0)
    assert sum(count_of(m) for m in second) == 15_000  # 12,000 is reached inside the third
    rest = gather(consumer, max_rows=1_000_000, max_wait_s=0.2, timeout=1.0)
    assert len(first) + len(second) + len(rest) == 40  # nothing left behind
    consumer.close()


def test_a_batch_of_small_messages_takes_everything_under_max_rows() -> None:
    bus = MemoryBus(max_messages=1000)
    consumer = bus.subscribe(TOPIC, "g")
    publish(bus, 100, 10)
    batch = gather(consumer, max_rows=10_000, max_wait_s=0.2, timeout=1.0)
    assert len(batch) == 100  # everything there, well under max_rows
    consumer.close()
