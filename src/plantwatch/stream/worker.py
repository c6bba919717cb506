"""The stream as a Kafka consumer-group worker: raw readings in, every output out to its topic.

One step: gather a micro-batch from the raw topic, decode it, run the pipeline (the same
``Pipeline`` the embedded runner drives), publish clean readings, features and anomalies (Arrow,
one message per machine, keyed by machine_id), alert events (JSON) and dead letters (one message
each: the record's bytes as received, the reason in headers), wait until the broker has all of
them, and only then commit the input offsets. A crash before that commit means the batch is
processed again: outputs are at-least-once, and the sink stores each reading once
(``sink.py``). Several workers in one group share the raw topic's partitions.

A message of which nothing decodes (corrupt bytes, unknown content type, a 5 MB blob) goes to
the dead-letter topic whole, with its origin in headers; the worker carries on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Protocol

from plantwatch.bus.base import Bus
from plantwatch.core.clock import Clock
from plantwatch.core.errors import PlantwatchError
from plantwatch.core.topics import Topics
from plantwatch.stream.batches import decode_messages, gather, run_batch
from plantwatch.stream.directory import decode_machine
from plantwatch.stream.lag import LagSampler
from plantwatch.stream.lag import encode as lag_encode
from plantwatch.stream.messages import OutMessage, output_messages, whole_dead_letters
from plantwatch.stream.metrics import RunMetrics
from plantwatch.stream.outputs import Output
from plantwatch.stream.pipeline import Pipeline

log = logging.getLogger(__name__)


class FlushingBus(Bus, Protocol):
    def flush(self, timeout: float = ...) -> int: ...


class _Deliveries:
    """Counts what was published and what the broker confirmed."""

    def __init__(self) -> None:
        self.sent = 0
        self.confirmed = 0
        self._lock = threading.Lock()

    def ack(self) -> None:
        with self._lock:
            self.confirmed += 1


class StreamWorker:
    def __init__(
        self,
        *,
        bus: FlushingBus,
        pipeline: Pipeline,
        clock: Clock,
        topics: Topics,
        group: str = "plantwatch-stream",
        max_batch_rows: int = 80_000,
        max_batch_wait_s: float = 0.2,
        metrics: RunMetrics | None = None,
        delivery_timeout_s: float = 30.0,
    ) -> None:
        self.bus, self.pipeline, self.clock, self.topics = bus, pipeline, clock, topics
        self.max_batch_rows = max_batch_rows
        self.max_batch_wait_s = max_batch_wait_s
        self.metrics = metrics or RunMetrics()
        self.delivery_timeout_s = delivery_timeout_s
        self.consumer = bus.subscribe(topics.raw, group)
        self.lag = LagSampler(self.consumer, component="worker", group=group, clock=clock)
        # every worker reads the whole machine registry (its own group, from the beginning)
        self.directory = bus.subscribe(topics.machines, f"{group}-directory-{uuid.uuid4().hex[:8]}")
        self._read_directory(timeout=2.0)

    def _read_directory(self, timeout: float) -> None:
        """Machine types from the registry topic, so static limits know each machine."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.directory.poll(500, 0.0 if timeout == 0 else 0.2)
            rows = []
            for m in msgs:
                row = decode_machine(m.value)
                if row is not None:
                    rows.append(row)
                else:
                    log.warning("ignoring an unreadable machine record at offset %s", m.offset)
            if rows:
                self.pipeline.register_machines(rows)
            if not msgs or time.monotonic() > deadline:
                return

    def step(self, timeout: float = 0.2) -> int:
        """One micro-batch; returns the readings received (0: nothing arrived)."""
        self._read_directory(timeout=0)
        sample = self.lag.due()
        if sample is not None:  # best effort: a metric never holds the stream back
            try:
                self.bus.publish(self.topics.metrics, lag_encode(sample), timeout=0.0)
            except PlantwatchError as exc:
                log.warning("worker: cannot publish the consumer lag: %s", exc)
        msgs = gather(
            self.consumer,
            max_rows=self.max_batch_rows,
            max_wait_s=self.max_batch_wait_s,
            timeout=timeout,
        )
        if not msgs:
            return 0
        batch = decode_messages(msgs, keep_whole=True)
        out = run_batch(self.pipeline, batch, clock=self.clock, source=self.topics.raw)
        deliveries = _Deliveries()
        self._publish(out, deliveries)
        now_ms = int(self.clock.time() * 1000)
        for dead in whole_dead_letters(batch.undecodable, out, now_ms, self.topics):
            self._send(dead, deliveries)
        self._confirm(deliveries)
        self.consumer.commit(msgs)
        self.metrics.account_processed(out)
        return out.counts.received

    def finish(self) -> Output:
        """Fire the open windows and publish what they produce (end of a run)."""
        out = self.pipeline.flush(now_ms=int(self.clock.time() * 1000))
        deliveries = _Deliveries()
        self._publish(out, deliveries)
        self._confirm(deliveries)
        self.metrics.account_processed(out)
        return out

    # -- publishing ----------------------------------------------------------------------------

    def _send(self, m: OutMessage, d: _Deliveries) -> None:
        d.sent += 1
        key = m.key.encode() if m.key else None
        self.bus.publish(m.topic, m.value, key=key, headers=m.headers, on_commit=d.ack)

    def _publish(self, out: Output, d: _Deliveries) -> None:
        for m in output_messages(out, self.topics):
            self._send(m, d)

    def _confirm(self, d: _Deliveries) -> None:
        """Block until the broker confirmed every output; the input is committed only then.

        The producer retries for as long as the broker is away, so this waits (saying so every
        ``delivery_timeout_s``); if the process is stopped meanwhile, the input stays
        uncommitted and is processed again by whoever picks the partitions up.
        """
        warn_at = time.monotonic() + self.delivery_timeout_s
        while d.confirmed < d.sent:
            self.bus.flush(1.0)
            if d.confirmed < d.sent and time.monotonic() > warn_at:
                log.warning(
                    "%d of %d outputs not yet confirmed by the broker; waiting (the input is "
                    "committed only once they are)",
                    d.sent - d.confirmed,
                    d.sent,
                )
                warn_at = time.monotonic() + self.delivery_timeout_s

    def close(self) -> None:
        self.consumer.close()
        self.directory.close()
