"""Transports: how spooled entries leave the device. All logic stays above this interface.

A transport takes one entry and calls ``on_ack`` once the receiving side made it durable. Until
then the entry stays in the spool; after a restart it is sent again (the stream de-duplicates).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.bus.base import Bus
from plantwatch.bus.errors import BusClosedError, BusFullError, BusUnavailableError
from plantwatch.core.codec import ARROW, NDJSON, decode_arrow, encode_arrow
from plantwatch.core.errors import CodecError
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


class KafkaTransport:
    """Publishes entries to a Kafka topic, one message per machine, keyed by ``machine_id``.

    Kafka keeps order per partition, and the key picks the partition: splitting an entry by
    machine keeps every machine's readings in order on one partition while machines spread over
    all partitions (and so over all stream workers). ``on_ack`` fires once the broker has every
    part of the entry (``acks=all``). If the broker is away, librdkafka queues messages and
    retries them in order for as long as it takes; when its queue is full, :meth:`send` raises
    :class:`TransportUnavailable` and the entry simply stays in the spool.
    """

    def __init__(self, bus: Bus, topic: str, *, publish_timeout: float = 1.0) -> None:
        self.bus = bus
        self.topic = topic
        self.publish_timeout = publish_timeout

    def send(self, entry: SpoolEntry, on_ack: Callable[[], None]) -> None:
        parts = split_by_machine(entry.content_type, entry.payload)
        remaining = [len(parts)]
        lock = threading.Lock()

        def part_acked() -> None:
            with lock:
                remaining[0] -= 1
                done = remaining[0] == 0
            if done:
                on_ack()

        for machine, payload, count in parts:
            headers = {
                "content-type": entry.content_type,
                "spool-entry": str(entry.entry_id),
                "count": str(count),
            }
            try:
                self.bus.publish(
                    self.topic,
                    payload,
                    key=machine.encode() if machine else None,
                    headers=headers,
                    on_commit=part_acked,
                    timeout=self.publish_timeout,
                )
            except (BusFullError, BusClosedError, BusUnavailableError) as exc:
                # Parts already queued are delivered and will be de-duplicated when the whole
                # entry is sent again.
                raise TransportUnavailable(
                    f"cannot publish spool entry {entry.entry_id} to {self.topic!r}: {exc}; "
                    "it stays in the spool and is retried"
                ) from exc

    def close(self) -> None:
        """Nothing to release: the bus belongs to whoever created it."""


def split_by_machine(content_type: str, payload: bytes) -> list[tuple[str, bytes, int]]:
    """(machine_id, payload, readings) per machine of an entry; undecodable → one part, no key."""
    if content_type == ARROW:
        try:
            table = decode_arrow(payload)
        except CodecError:
            return [("", payload, 1)]
        machines = table.column("machine_id").combine_chunks()
        if table.num_rows == 0 or machines.null_count:
            return [("", payload, table.num_rows)]
        enc = pc.dictionary_encode(machines)
        names = enc.dictionary.to_pylist()
        if len(names) == 1:
            return [(names[0], payload, table.num_rows)]
        codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False))
        out = []
        for i, name in enumerate(names):
            rows = np.flatnonzero(codes == i)
            out.append((name, encode_arrow(table.take(pa.array(rows))), len(rows)))
        return out
    if content_type == NDJSON:
        groups: dict[str, list[bytes]] = {}
        for line in payload.splitlines():
            if not line.strip():
                continue
            try:
                machine = json.loads(line).get("machine_id")
            except (ValueError, AttributeError):
                machine = None
            groups.setdefault(machine if isinstance(machine, str) else "", []).append(line)
        return [(m, b"\n".join(lines) + b"\n", len(lines)) for m, lines in groups.items()] or [
            ("", payload, 0)
        ]
    return [("", payload, 1)]
