"""The in-process bus: groups, end-to-end commits, backpressure, close, threads.

What every bus must do is in ``tests/contract/test_bus_contract.py``; this file covers what the
memory bus promises on top: ``publish`` counts groups, ``on_commit`` waits for every group, a
topic nobody reads drops messages, and a full group blocks the publisher.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import pytest

from plantwatch.bus import BusClosedError, BusError, BusFullError, MemoryBus, Message
from plantwatch.core.errors import PlantwatchError

T = "plantwatch.readings.raw"


class Background:
    """Runs ``fn`` in a thread and keeps its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def still_running_after(self, seconds: float) -> bool:
        self._thread.join(seconds)
        return self._thread.is_alive()

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the thread is still blocked"


class Acks:
    """An ``on_commit`` factory that records which message was acknowledged, in order."""

    def __init__(self) -> None:
        self.fired: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, name: str) -> Callable[[], None]:
        def ack() -> None:
            with self._lock:
                self.fired.append(name)

        return ack


@pytest.fixture
def bus() -> Iterator[MemoryBus]:
    b = MemoryBus(max_messages=4, publish_timeout=5.0)
    yield b
    b.close()


def test_errors_share_the_package_root() -> None:
    for err in (BusClosedError, BusFullError):
        assert issubclass(err, BusError)
        assert issubclass(err, PlantwatchError)


def test_max_messages_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_messages"):
        MemoryBus(max_messages=0)


# -- groups and commits ------------------------------------------------------------------------


def test_publish_counts_the_groups_and_each_group_gets_every_message(bus: MemoryBus) -> None:
    consumers = [bus.subscribe(T, g) for g in ("stream", "archive", "console")]
    assert [bus.publish(T, f"m{i}".encode()) for i in range(3)] == [3, 3, 3]
    for c in consumers:
        got = c.poll(10, 0)
        assert [m.value for m in got] == [b"m0", b"m1", b"m2"]
        assert c.poll(10, 0) == []


def test_poll_takes_at_most_max_messages_in_order(bus: MemoryBus) -> None:
    c = bus.subscribe(T, "g")
    for i in range(4):
        bus.publish(T, bytes([i]))
    assert [m.value for m in c.poll(3, 0)] == [b"\x00", b"\x01", b"\x02"]
    assert [m.value for m in c.poll(3, 0)] == [b"\x03"]


def test_each_topic_numbers_its_own_messages(bus: MemoryBus) -> None:
    a, b = bus.subscribe("t.a", "g"), bus.subscribe("t.b", "g")
    for _ in range(3):
        bus.publish("t.a", b"x")
        bus.publish("t.b", b"y")
    bus.publish("t.a", b"x")
    assert [m.offset for m in a.poll(10, 0)] == [0, 1, 2, 3]
    assert [m.offset for m in b.poll(10, 0)] == [0, 1, 2]


def test_offsets_are_strictly_increasing_and_shared_by_groups(bus: MemoryBus) -> None:
    a, b = bus.subscribe(T, "a"), bus.subscribe(T, "b")
    for _ in range(4):
        bus.publish(T, b"x")
    oa = [m.offset for m in a.poll(10, 0)]
    ob = [m.offset for m in b.poll(10, 0)]
    assert oa == ob
    assert all(x < y for x, y in pairwise(oa))
    assert len(set(oa)) == 4


def test_key_and_headers_travel_with_the_message(bus: MemoryBus) -> None:
    c = bus.subscribe(T, "g")
    headers = {"content-type": "application/x-ndjson"}
    bus.publish(T, b"v", key=b"press-01", headers=headers)
    headers["content-type"] = "changed after publish"
    [m] = c.poll(1, 0)
    assert m == Message(T, b"v", b"press-01", {"content-type": "application/x-ndjson"}, m.offset)


def test_on_commit_fires_only_after_every_group_committed(bus: MemoryBus) -> None:
    acks = Acks()
    a, b = bus.subscribe(T, "stream"), bus.subscribe(T, "archive")
    bus.publish(T, b"1", on_commit=acks("1"))
    bus.publish(T, b"2", on_commit=acks("2"))
    ma, mb = a.poll(10, 0), b.poll(10, 0)

    a.commit(ma)
    assert acks.fired == []
    b.commit(mb[:1])
    assert acks.fired == ["1"]
    b.commit(mb[1:])
    assert acks.fired == ["1", "2"]
    a.commit(ma)  # committing again changes nothing
    b.commit(mb)
    assert acks.fired == ["1", "2"]


def test_a_group_committing_twice_does_not_stand_in_for_another(bus: MemoryBus) -> None:
    acks = Acks()
    a, b = bus.subscribe(T, "stream"), bus.subscribe(T, "archive")
    bus.publish(T, b"1", on_commit=acks("1"))
    ma = a.poll(10, 0)
    a.commit(ma)
    a.commit(ma)
    assert acks.fired == []
    b.commit(b.poll(10, 0))
    assert acks.fired == ["1"]


def test_without_a_subscriber_a_message_is_dropped_and_never_acknowledged(bus: MemoryBus) -> None:
    acks = Acks()
    assert bus.publish(T, b"lost", on_commit=acks("lost")) == 0
    late = bus.subscribe(T, "late")
    assert late.poll(10, 0) == []  # a pipe, not a log
    bus.publish(T, b"seen", on_commit=acks("seen"))
    late.commit(late.poll(10, 0))
    assert acks.fired == ["seen"]


def test_a_subscriber_of_another_topic_does_not_count(bus: MemoryBus) -> None:
    bus.subscribe("other", "g")
    assert bus.publish(T, b"x") == 0


# -- unsubscribing -----------------------------------------------------------------------------


def test_unsubscribing_releases_what_the_group_never_received(bus: MemoryBus) -> None:
    acks = Acks()
    a, b = bus.subscribe(T, "stream"), bus.subscribe(T, "console")
    bus.publish(T, b"1", on_commit=acks("1"))
    a.commit(a.poll(10, 0))
    assert acks.fired == []
    b.close()  # will never poll nor commit "1"
    assert acks.fired == ["1"]


def test_unsubscribing_first_leaves_the_ack_to_the_remaining_group(bus: MemoryBus) -> None:
    acks = Acks()
    a, b = bus.subscribe(T, "stream"), bus.subscribe(T, "console")
    bus.publish(T, b"1", on_commit=acks("1"))
    b.close()
    assert acks.fired == []
    a.commit(a.poll(10, 0))
    assert acks.fired == ["1"]
    assert bus.publish(T, b"2") == 1


def test_unsubscribing_the_last_group_acknowledges_nothing(bus: MemoryBus) -> None:
    acks = Acks()
    a = bus.subscribe(T, "stream")
    bus.publish(T, b"1", on_commit=acks("1"))
    a.close()
    # Nobody processed "1": calling on_commit would tell the edge it is safe to forget it.
    assert acks.fired == []
    assert bus.publish(T, b"2") == 0


def test_a_closed_consumer_cannot_poll(bus: MemoryBus) -> None:
    c = bus.subscribe(T, "g")
    c.close()
    c.close()  # idempotent
    with pytest.raises(BusClosedError, match="'g'"):
        c.poll(1, 0)


def test_consumers_of_one_group_share_its_messages(bus: MemoryBus) -> None:
    c1, c2 = bus.subscribe(T, "g"), bus.subscribe(T, "g")
    assert bus.publish(T, b"1") == 1
    assert bus.publish(T, b"2") == 1
    assert [m.value for m in c1.poll(1, 0)] == [b"1"]
    c1.close()  # the group lives on in c2
    assert [m.value for m in c2.poll(10, 0)] == [b"2"]
    assert bus.publish(T, b"3") == 1
    assert [m.value for m in c2.poll(10, 0)] == [b"3"]


# -- backpressure ------------------------------------------------------------------------------


def fill(bus: MemoryBus, topic: str = T) -> None:
    for i in range(bus.max_messages):
        bus.publish(topic, f"fill{i}".encode(), timeout=0)
    assert bus.depth(topic) == bus.max_messages


def test_a_full_group_blocks_the_publisher_until_the_consumer_polls(bus: MemoryBus) -> None:
    c = bus.subscribe(T, "g")
    fill(bus)
    publisher = Background(lambda: bus.publish(T, b"next", timeout=5.0))
    assert publisher.still_running_after(0.05)
    assert bus.depth(T) == bus.max_messages

    assert [m.value for m in c.poll(1, 0)] == [b"fill0"]

    publisher.join()
    assert publisher.error is None
    assert publisher.result == 1
    assert [m.value for m in c.poll(10, 0)][-1] == b"next"


def test_a_full_group_raises_bus_full_after_the_timeout(bus: MemoryBus) -> None:
    bus.subscribe(T, "slow")
    fill(bus)
    with pytest.raises(BusFullError, match=T):
        bus.publish(T, b"next", timeout=0.02)
    with pytest.raises(BusFullError):
        bus.publish(T, b"next", timeout=0)
    assert bus.depth(T) == bus.max_messages  # nothing half-published


def test_the_default_publish_timeout_applies() -> None:
    bus = MemoryBus(max_messages=1, publish_timeout=0.02)
    bus.subscribe(T, "slow")
    bus.publish(T, b"1")
    with pytest.raises(BusFullError):
        bus.publish(T, b"2")


def test_the_slowest_group_sets_the_pace(bus: MemoryBus) -> None:
    fast, slow = bus.subscribe(T, "fast"), bus.subscribe(T, "slow")
    fill(bus)
    fast.commit(fast.poll(100, 0))
    assert bus.depth(T) == bus.max_messages
    with pytest.raises(BusFullError):
        bus.publish(T, b"next", timeout=0)
    slow.poll(1, 0)
    assert bus.publish(T, b"next", timeout=0) == 2


def test_a_full_group_leaving_unblocks_the_publisher(bus: MemoryBus) -> None:
    fast, slow = bus.subscribe(T, "fast"), bus.subscribe(T, "slow")
    fill(bus)
    fast.poll(100, 0)
    publisher = Background(lambda: bus.publish(T, b"next", timeout=5.0))
    assert publisher.still_running_after(0.05)
    slow.close()
    publisher.join()
    assert publisher.result == 1


# -- close -------------------------------------------------------------------------------------


def test_close_wakes_a_blocked_poller(bus: MemoryBus) -> None:
    c = bus.subscribe(T, "g")
    poller = Background(lambda: c.poll(10, 30.0))
    assert poller.still_running_after(0.05)
    bus.close()
    poller.join()
    assert isinstance(poller.error, BusClosedError)


def test_close_wakes_a_blocked_publisher(bus: MemoryBus) -> None:
    bus.subscribe(T, "g")
    fill(bus)
    publisher = Background(lambda: bus.publish(T, b"next", timeout=30.0))
    assert publisher.still_running_after(0.05)
    bus.close()
    publisher.join()
    assert isinstance(publisher.error, BusClosedError)


def test_a_closed_bus_refuses_publish_and_subscribe(bus: MemoryBus) -> None:
    bus.close()
    with pytest.raises(BusClosedError):
        bus.publish(T, b"x")
    with pytest.raises(BusClosedError):
        bus.subscribe(T, "g")


def test_poll_waits_for_the_first_message() -> None:
    bus = MemoryBus()
    c = bus.subscribe(T, "g")
    poller = Background(lambda: c.poll(10, 30.0))
    assert poller.still_running_after(0.02)
    bus.publish(T, b"hello")
    poller.join()
    assert [m.value for m in poller.result] == [b"hello"]
    assert c.poll(10, 0.01) == []  # times out empty


# -- threads -----------------------------------------------------------------------------------


def test_one_producer_and_one_consumer_move_10k_messages_without_loss_or_duplication() -> None:
    n = 10_000
    bus = MemoryBus(max_messages=64, publish_timeout=10.0)
    consumer = bus.subscribe(T, "g")
    acked: list[int] = []
    received: list[Message] = []

    def produce() -> None:
        for i in range(n):
            bus.publish(T, i.to_bytes(4, "big"), on_commit=lambda i=i: acked.append(i))

    def consume() -> None:
        while len(received) < n:
            batch = consumer.poll(100, 5.0)
            assert batch, "the producer stalled"
            received.extend(batch)
            consumer.commit(batch)

    consumer_thread = Background(consume)
    producer_thread = Background(produce)
    producer_thread.join(timeout=10.0)
    consumer_thread.join(timeout=10.0)
    assert producer_thread.error is None
    assert consumer_thread.error is None

    assert [int.from_bytes(m.value, "big") for m in received] == list(range(n))
    offsets = [m.offset for m in received]
    assert all(x < y for x, y in pairwise(offsets))
    assert acked == list(range(n))  # the single consumer commits in order
    assert bus.depth(T) == 0
    bus.close()
