"""Where the plant's readings flow: an in-process bus, or Apache Kafka.

Both backends give the SDK a transport and run the *same* ``Pipeline``:

* :class:`MemoryBackend` — in-process bus, one runner (bus → pipeline → store → commit). The
  SDK's spool releases a reading once the store committed it.
* :class:`KafkaBackend` — the SDK publishes to the raw topic (released once the broker has it on
  all in-sync replicas); a consumer-group worker runs the pipeline and publishes its outputs;
  the sink writes them to the store exactly once. Worker and sink run in threads here; the
  ``process`` and ``sink`` commands run them as separate processes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from plantwatch.bus.errors import BusUnavailableError
from plantwatch.bus.kafka import KafkaBus
from plantwatch.bus.kafka_config import topic_specs
from plantwatch.bus.memory import MemoryBus
from plantwatch.core.clock import Clock
from plantwatch.core.settings import Settings
from plantwatch.core.topics import Topics
from plantwatch.edge.transport import InProcessTransport, KafkaTransport, Transport
from plantwatch.store.client import Store
from plantwatch.stream.directory import publish_machines
from plantwatch.stream.local import LocalRunner
from plantwatch.stream.metrics import RunMetrics
from plantwatch.stream.outputs import AlertEvent
from plantwatch.stream.pipeline import Pipeline
from plantwatch.stream.restore import Restored, restore_pipeline
from plantwatch.stream.sink import StoreSink
from plantwatch.stream.worker import StreamWorker

log = logging.getLogger(__name__)


class Backend(Protocol):
    transport: Transport

    def restore(self) -> Restored: ...

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set, then until nothing more arrives."""

    def finish(self) -> None:
        """Fire the open windows and store their outputs (end of a run)."""

    def on_alerts(self, callback: Callable[[list[AlertEvent]], None]) -> None:
        """``callback`` gets each batch's alert events once they are stored."""

    def close(self) -> None: ...


def run_until_idle(
    step: Callable[[float], int],
    stop: threading.Event,
    *,
    idle_s: float,
    caught_up: Callable[[], bool] | None = None,
    limit_s: float = 300.0,
) -> None:
    """Call ``step`` until ``stop`` is set, then until it found nothing for ``idle_s`` (and,
    with ``caught_up``, until that says the input is read to its end: a Kafka consumer that
    is still joining its group finds nothing for a few seconds though its topic is full).
    After ``stop``, it gives up after ``limit_s``: what it did not read stays in the bus.

    A broker that is away (:class:`BusUnavailableError`) is waited out: the failed step's
    input was not committed, so nothing is lost by trying again.
    """
    safe = _resilient(step, stop)
    while not stop.is_set():
        safe(0.1)
    deadline = time.monotonic() + limit_s
    quiet = time.monotonic()
    while time.monotonic() < deadline:
        if safe(0.05):
            quiet = time.monotonic()
        elif time.monotonic() - quiet >= idle_s and (
            caught_up is None or _safe_caught_up(caught_up)
        ):
            return
    log.warning(
        "stopped reading after %.0f s with input left; it is read on the next start", limit_s
    )


def _safe_caught_up(caught_up: Callable[[], bool]) -> bool:
    try:
        return caught_up()
    except BusUnavailableError as exc:
        log.warning("%s", exc)
        return False


def _resilient(step: Callable[[float], int], stop: threading.Event) -> Callable[[float], int]:
    def run(timeout: float) -> int:
        try:
            return step(timeout)
        except BusUnavailableError as exc:
            log.warning("%s; trying again in 1 s", exc)
            stop.wait(1.0)
            return 0

    return run


class MemoryBackend:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        pipeline: Pipeline,
        clock: Clock,
        metrics: RunMetrics,
        topics: Topics,
    ) -> None:
        self.bus = MemoryBus(
            max_messages=settings.bus.max_messages, publish_timeout=settings.bus.publish_timeout_s
        )
        self.runner = LocalRunner(
            bus=self.bus,
            store=store,
            pipeline=pipeline,
            clock=clock,
            topics=topics,
            max_batch_rows=settings.stream.max_batch_rows,
            max_batch_wait_s=settings.stream.max_batch_wait_s,
            metrics=metrics,
            write_ahead=settings.stream.write_ahead,
        )
        self.transport: Transport = InProcessTransport(self.bus, topics.raw)

    def set_clock(self, clock: Clock) -> None:
        self.runner.clock = clock

    def announce(self, machines: list[dict[str, str]]) -> None:
        """The embedded plant's registry is the store's ``machines`` table: nothing to send."""

    def on_alerts(self, callback: Callable[[list[AlertEvent]], None]) -> None:
        """``callback`` gets each batch's alert events once they are stored."""
        self.runner.on_output = lambda out: callback(out.alerts) if out.alerts else None

    def restore(self) -> Restored:
        return self.runner.restore()

    def run(self, stop: threading.Event) -> None:
        run_until_idle(self.runner.step, stop, idle_s=0.05)
        self.runner.flush()  # the writer's batches too, before the run counts as idle

    def finish(self) -> None:
        self.runner.finish()

    def close(self) -> None:
        self.runner.close()
        self.bus.close()


class KafkaBackend:
    def __init__(
        self,
        *,
        bootstrap: str,
        settings: Settings,
        store: Store,
        pipeline: Pipeline,
        clock: Clock,
        metrics: RunMetrics,
        topics: Topics,
    ) -> None:
        self.store, self.pipeline, self.topics = store, pipeline, topics
        self.bus = KafkaBus(
            bootstrap, settings.kafka, publish_timeout=settings.bus.publish_timeout_s
        )
        self.bus.ensure_topics(topic_specs(topics, settings.kafka))
        st = settings.stream
        self.worker = StreamWorker(
            bus=self.bus,
            pipeline=pipeline,
            clock=clock,
            topics=topics,
            max_batch_rows=st.max_batch_rows,
            max_batch_wait_s=st.max_batch_wait_s,
            metrics=metrics,
        )
        self.sink = StoreSink(
            bus=self.bus,
            store=store,
            clock=clock,
            topics=topics,
            metrics=metrics,
            dedupe_horizon=st.dedupe_horizon,
        )
        self.transport: Transport = KafkaTransport(self.bus, topics.raw)

    def set_clock(self, clock: Clock) -> None:
        self.worker.clock = clock
        self.sink.clock = clock

    def on_alerts(self, callback: Callable[[list[AlertEvent]], None]) -> None:
        """``callback`` gets alert events once the sink stored them."""
        self.sink.on_alerts = callback

    def announce(self, machines: list[dict[str, str]]) -> None:
        """Publish the machine registry, for workers and sinks in other processes too."""
        publish_machines(self.bus, self.topics, machines)
        self.bus.flush(30.0)

    def restore(self) -> Restored:
        self.sink.restore()
        return restore_pipeline(self.store, self.pipeline)

    def run(self, stop: threading.Event) -> None:
        sink_stop = threading.Event()
        sink = threading.Thread(
            target=run_until_idle,
            args=(self.sink.step, sink_stop),
            kwargs={"idle_s": 0.5, "caught_up": self.sink.consumer.caught_up},
            name="sink",
            daemon=True,
        )
        sink.start()
        try:
            run_until_idle(
                self.worker.step, stop, idle_s=0.5, caught_up=self.worker.consumer.caught_up
            )
        finally:
            sink_stop.set()
            sink.join()

    def finish(self) -> None:
        self.worker.finish()
        run_until_idle(self.sink.step, _SET, idle_s=0.5, caught_up=self.sink.consumer.caught_up)

    def close(self) -> None:
        self.worker.close()
        self.sink.close()
        self.bus.close()


_SET = threading.Event()
_SET.set()
