"""End to end with the real MemoryBus: a reading leaves the spool only once it was committed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from plantwatch.bus import BusClosedError, MemoryBus, Message
from plantwatch.core.codec import decode
from plantwatch.edge import (
    Backoff,
    Batching,
    EdgeClient,
    InProcessTransport,
    Spool,
    SpoolEntry,
    SpoolLimits,
    TransportUnavailable,
)

TOPIC = "plantwatch.readings.raw"
FAST = Backoff(initial_s=0.01, max_s=0.05)


class Consumer:
    """Polls ``TOPIC`` in a thread; commits what it received unless ``commit=False``."""

    def __init__(self, bus: MemoryBus, group: str, *, commit: bool = True) -> None:
        self.consumer = bus.subscribe(TOPIC, group)
        self.commit = commit
        self.messages: list[Message] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.consumer.poll(100, 0.02)
            except BusClosedError:
                return
            self.messages += batch
            if self.commit and batch:
                self.consumer.commit(batch)

    def seqs(self) -> list[tuple[str, str, int]]:
        out = []
        for m in self.messages:
            table = decode(m.headers["content-type"], m.value).table
            cols = table.select(["machine_id", "sensor_id", "seq"]).to_pydict()
            out += list(zip(cols["machine_id"], cols["sensor_id"], cols["seq"], strict=True))
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.consumer.close()


def start(directory: Path, bus: MemoryBus) -> EdgeClient:
    return EdgeClient(
        spool=Spool(directory, limits=SpoolLimits(fsync=False)),
        transport=InProcessTransport(bus, TOPIC),
        batching=Batching(max_readings=100, max_delay_s=0.02),
        backoff=FAST,
    )


def send_some(client: EdgeClient) -> None:
    for i in range(5):
        client.temperature("m1", "t1", 20.0 + i)
    client.flush()
    client.send_batch(
        pa.table(
            {
                "machine_id": ["m2"] * 3,
                "sensor_id": ["p1"] * 3,
                "kind": ["pressure"] * 3,
                "value": [1.0, 2.0, 3.0],
                "unit": ["bar"] * 3,
            }
        )
    )
    client.forward([{"machine_id": "m3", "sensor_id": "f1", "kind": "flow", "value": 1.0}])


EXPECTED = sorted(
    [("m1", "t1", s) for s in range(1, 6)]
    + [("m2", "p1", s) for s in (1, 2, 3)]
    + [("m3", "f1", 1)]
)


def test_a_committing_consumer_empties_the_spool(tmp_path: Path) -> None:
    bus = MemoryBus()
    consumer = Consumer(bus, "stream")
    client = start(tmp_path, bus)
    send_some(client)
    assert client.drain(timeout=5)
    stats = client.stats
    assert (stats.spooled_entries, stats.sent_entries, stats.acked_entries) == (3, 3, 3)
    assert (stats.pending_entries, stats.pending_readings, stats.retries) == (0, 0, 0)
    assert client.close(timeout=1)
    consumer.close()
    assert sorted(consumer.seqs()) == EXPECTED
    headers = consumer.messages[0].headers
    assert headers["spool-entry"] == "1"
    assert headers["count"] == "5"
    assert consumer.messages[0].key == b"m1"
    assert list(tmp_path.glob("*.seg")) == []


def test_uncommitted_entries_stay_pending_and_are_resent_after_a_restart(tmp_path: Path) -> None:
    bus = MemoryBus()
    lazy = Consumer(bus, "stream", commit=False)
    client = start(tmp_path, bus)
    send_some(client)
    deadline = time.monotonic() + 5
    while client.stats.sent_entries < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.stats.sent_entries == 3
    assert not client.drain(timeout=0.2)
    assert client.close(timeout=0) is False
    lazy.close()
    assert sorted(lazy.seqs()) == EXPECTED  # delivered, never committed

    with Spool(tmp_path) as spool:
        assert [e.count for e in spool.pending()] == [5, 3, 1]

    consumer = Consumer(bus, "stream")
    client = start(tmp_path, bus)
    assert client.drain(timeout=5)
    assert client.temperature("m1", "t1", 30.0) == 6  # seqs continue, none reused
    assert client.close(timeout=5)
    consumer.close()
    assert sorted(consumer.seqs()) == sorted([*EXPECTED, ("m1", "t1", 6)])


def test_nothing_is_lost_while_nobody_subscribes(tmp_path: Path) -> None:
    bus = MemoryBus()
    client = start(tmp_path, bus)
    send_some(client)
    deadline = time.monotonic() + 5
    while client.stats.retries < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = client.stats
    assert stats.retries >= 3
    assert stats.sent_entries == 0
    assert stats.pending_readings == 9
    assert stats.last_error is not None
    assert "no consumer" in stats.last_error
    consumer = Consumer(bus, "stream")
    assert client.drain(timeout=5)
    assert client.close(timeout=1)
    consumer.close()
    assert sorted(consumer.seqs()) == EXPECTED  # each exactly once


def test_in_process_transport_translates_bus_errors(tmp_path: Path) -> None:
    bus = MemoryBus(max_messages=1)
    transport = InProcessTransport(bus, TOPIC, publish_timeout=0.05)
    entry = SpoolEntry(1, "application/x-ndjson", 1, {("m", "s"): 1}, b"{}\n")
    with pytest.raises(TransportUnavailable, match="no consumer is subscribed"):
        transport.send(entry, lambda: None)
    consumer = bus.subscribe(TOPIC, "g")
    transport.send(entry, lambda: None)
    with pytest.raises(TransportUnavailable, match="is full"):
        transport.send(entry, lambda: None)
    bus.close()
    with pytest.raises(TransportUnavailable, match="closed"):
        transport.send(entry, lambda: None)
    consumer.close()
