"""Consumer lag, sampled: how many messages a stream consumer has not read yet.

Every consumer of the stream (embedded runner, Kafka worker, sink) samples its own lag every
``interval_s`` of wall-clock time. Processes with a store write the samples to
``pipeline_metrics``; a worker (no store) publishes them on the metrics topic and the sink
stores them. The Pipeline dashboard sums the members of each consumer group.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow as pa

from plantwatch.bus.base import Consumer
from plantwatch.core.clock import Clock
from plantwatch.core.errors import PlantwatchError

log = logging.getLogger(__name__)

METRICS_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("ms", tz="UTC")),
        pa.field("component", pa.string()),
        pa.field("consumer_group", pa.string()),
        pa.field("member", pa.string()),
        pa.field("lag", pa.uint64()),
    ]
)
MEMBER = f"{socket.gethostname()}:{os.getpid()}"


class LagSampler:
    """One consumer's lag, at most once per ``interval_s`` (the first call samples)."""

    def __init__(
        self,
        consumer: Consumer,
        *,
        component: str,
        group: str,
        clock: Clock,
        interval_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer, self.component, self.group = consumer, component, group
        self.clock, self.interval_s, self._monotonic = clock, interval_s, monotonic
        self._next = -float("inf")

    def due(self) -> dict[str, Any] | None:
        """A sample (plant-clock ``ts`` in ms) if one is due, else None. A consumer that cannot
        tell its lag yet (still joining its group) gives no sample."""
        now = self._monotonic()
        if now < self._next:
            return None
        self._next = now + self.interval_s
        try:
            lag = self.consumer.lag()
        except PlantwatchError as exc:  # a metric never stops the stream
            log.warning("%s: cannot read the consumer lag: %s", self.group, exc)
            return None
        if lag is None:
            return None
        return {
            "ts": int(self.clock.time() * 1000),
            "component": self.component,
            "consumer_group": self.group,
            "member": MEMBER,
            "lag": int(lag),
        }


def metrics_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    rows = list(rows)
    return pa.table(
        {
            "ts": pa.array([int(r["ts"]) for r in rows], pa.int64()).cast(
                pa.timestamp("ms", tz="UTC")
            ),
            "component": pa.array([str(r["component"]) for r in rows], pa.string()),
            "consumer_group": pa.array([str(r["consumer_group"]) for r in rows], pa.string()),
            "member": pa.array([str(r["member"]) for r in rows], pa.string()),
            "lag": pa.array([int(r["lag"]) for r in rows], pa.uint64()),
        },
        schema=METRICS_SCHEMA,
    )


def encode(row: Mapping[str, Any]) -> bytes:
    return json.dumps(row, separators=(",", ":")).encode()


def decode(values: Iterable[bytes]) -> list[dict[str, Any]]:
    """Samples from metrics-topic messages; unreadable ones are logged and dropped (a metric,
    not a reading: nothing to account for)."""
    out = []
    for v in values:
        try:
            row = json.loads(v)
            metrics_table([row])  # every field present and typed
        except (ValueError, TypeError, KeyError, pa.ArrowInvalid) as exc:
            log.warning("ignoring an unreadable metrics message: %s", exc)
            continue
        out.append(row)
    return out
