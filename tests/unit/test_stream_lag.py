"""Consumer-lag samples: how often, what they hold, and that a failing consumer only logs."""

from __future__ import annotations

import pytest

from plantwatch.bus.errors import BusUnavailableError
from plantwatch.bus.memory import MemoryBus
from plantwatch.core.clock import SimulatedClock
from plantwatch.stream.lag import LagSampler, decode, encode, metrics_table


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_samples_once_per_interval_with_the_queue_depth() -> None:
    bus, ticks = MemoryBus(), Ticks()
    c = bus.subscribe("t", "g")
    s = LagSampler(
        c, component="embedded", group="g", clock=SimulatedClock(1_800_000_000, None),
        interval_s=10, monotonic=ticks,
    )  # fmt: skip
    for i in range(3):
        bus.publish("t", bytes([i]))
    first = s.due()
    assert first is not None and first["lag"] == 3 and first["ts"] == 1_800_000_000_000
    assert first["component"] == "embedded" and first["consumer_group"] == "g"
    c.poll(2, 0.0)
    ticks.now += 9.9
    assert s.due() is None
    ticks.now += 0.2
    again = s.due()
    assert again is not None and again["lag"] == 1


def test_a_consumer_that_cannot_tell_gives_no_sample(caplog: pytest.LogCaptureFixture) -> None:
    class Joining:
        def lag(self) -> int | None:
            return None

    class Broken:
        def lag(self) -> int | None:
            raise BusUnavailableError("broker gone")

    clock = SimulatedClock(0, None)
    assert LagSampler(Joining(), component="w", group="g", clock=clock).due() is None  # type: ignore[arg-type]
    assert LagSampler(Broken(), component="w", group="g", clock=clock).due() is None  # type: ignore[arg-type]
    assert "broker gone" in caplog.text


def test_samples_travel_as_json_and_bad_ones_are_dropped() -> None:
    row = {"ts": 5, "component": "worker", "consumer_group": "g", "member": "h:1", "lag": 7}
    rows = decode([encode(row), b"{not json", b'{"ts": 1}'])
    assert rows == [row]
    t = metrics_table(rows)
    assert t.column("lag").to_pylist() == [7] and t.num_rows == 1


def test_a_consumer_of_several_topics_lags_by_their_sum() -> None:
    bus = MemoryBus()
    c = bus.subscribe(["a", "b"], "g")
    for topic, n in (("a", 2), ("b", 3)):
        for i in range(n):
            bus.publish(topic, bytes([i]))
    assert c.lag() == 5
    got = c.poll(4, 0.0)
    assert c.lag() == 5 - len(got) == 1
