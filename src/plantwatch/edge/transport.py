"""Transports: how spooled entries leave the device. All logic stays above this interface.

A transport takes one entry and calls ``on_ack`` once the receiving side made it durable. Until
then the entry stays in the spool; after a restart it is sent again (the stream de-duplicates).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from plantwatch.bus.base import Bus
from plantwatch.bus.errors import BusClosedError, BusFullError
from plantwatch.edge.errors import TransportUnavailable
from plantwatch.edge.spool import SpoolEntry


class Transport(Protocol):
    def send(self, entry: SpoolEntry, on_ack: Callable[[], None]) -> None:
        """Hand ``entry`` over; call ``on_ack`` (any thread) when it is durable downstream.

        Raises :class:`~plantwatch.edge.errors.TransportError` when it cannot take the entry
        now; the client retries with backoff and never drops the entry.
        """

    def close(self) -> None: ...


class InProcessTransport:
    """Publishes entries to a topic of an in-process bus (the embedded plant).

    ``on_ack`` rides on the bus's ``on_commit``: the memory bus calls it after every consumer
    group committed the message, which in the embedded plant is after the store committed the
    readings. So a reading leaves the spool only once it is stored.

    ``publish_timeout`` bounds how long one send waits for room on a full topic before it
    raises :class:`TransportUnavailable` (and the client backs off and retries).
    """

    def __init__(self, bus: Bus, topic: str, *, publish_timeout: float = 1.0) -> None:
        self.bus = bus
        self.topic = topic
        self.publish_timeout = publish_timeout

    def send(self, entry: SpoolEntry, on_ack: Callable[[], None]) -> None:
        headers = {
            "content-type": entry.content_type,
            "spool-entry": str(entry.entry_id),
            "count": str(entry.count),
        }
        first = next(iter(entry.max_seq), None)  # the meta's first sensor: free, no decoding
        key = first[0].encode() if first is not None else None
        try:
            groups = self.bus.publish(
                self.topic,
                entry.payload,
                key=key,
                headers=headers,
                on_commit=on_ack,
                timeout=self.publish_timeout,
            )
        except (BusFullError, BusClosedError) as exc:
            raise TransportUnavailable(
                f"cannot publish spool entry {entry.entry_id} to {self.topic!r}: {exc}; "
                "it stays in the spool and is retried"
            ) from exc
        if groups == 0:
            raise TransportUnavailable(
                f"no consumer is subscribed to {self.topic!r}, so spool entry {entry.entry_id} "
                "would be dropped; it stays in the spool and is retried (start the stream)"
            )

    def close(self) -> None:
        """Nothing to release: the bus belongs to whoever created it."""
