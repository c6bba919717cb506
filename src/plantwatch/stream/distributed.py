"""The distributed shape, one role per process, all talking through Kafka:

* ``simulate`` — the plant's devices (simulator + edge SDK) publishing to the raw topic;
* ``process`` — a consumer-group worker running the pipeline (run several: they share the
  partitions);
* ``sink`` — the outputs into ClickHouse, each reading once.

Each role runs until its ``stop`` event is set and then finishes cleanly; a crash at any point is
covered by the SDK's spool, uncommitted offsets and the sink's de-duplication.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plantwatch.alert.control import rule_set
from plantwatch.alert.service import AlertService, claim_store
from plantwatch.bus.kafka import KafkaBus
from plantwatch.bus.kafka_config import parse_bus_url, topic_specs
from plantwatch.core.clock import SimulatedClock, WallClock
from plantwatch.core.errors import ConfigError
from plantwatch.core.settings import Settings
from plantwatch.core.topics import Topics
from plantwatch.edge.transport import KafkaTransport
from plantwatch.models.scoring import scorer_from_settings
from plantwatch.sim import build_plant
from plantwatch.store import migrate
from plantwatch.stream.backends import run_until_idle
from plantwatch.stream.directory import publish_machines
from plantwatch.stream.metrics import RunMetrics
from plantwatch.stream.pipeline import Pipeline, PipelineConfig
from plantwatch.stream.producer import PlantProducer, RunOptions, read_plant_clock
from plantwatch.stream.sink import StoreSink
from plantwatch.stream.worker import StreamWorker

log = logging.getLogger("plantwatch.distributed")


def connect(bus_url: str, settings: Settings) -> tuple[KafkaBus, Topics]:
    """A Kafka bus with every plantwatch topic created (or checked)."""
    topics = Topics(settings.topic_prefix)
    bus = KafkaBus(
        parse_bus_url(bus_url), settings.kafka, publish_timeout=settings.bus.publish_timeout_s
    )
    bus.ensure_topics(topic_specs(topics, settings.kafka))
    return bus, topics


@dataclass(frozen=True, slots=True)
class SimulateResult:
    generated: int
    replayed: int
    drained: bool
    sim_seconds: float
    wall_seconds: float


def _start(options: RunOptions, previous_end: float) -> float:
    """Where the simulated plant's clock starts. Workers judge event times against the wall
    clock, so a faster-than-real-time run starts in the past and ends at the present (it may
    not run until stopped: it would run into the future)."""
    now = math.floor(WallClock().time())
    if options.speed == 1.0:
        return max(now, math.floor(previous_end) + 1)
    if options.duration_s is None:
        raise ConfigError(
            "simulate faster than real time needs --duration: its readings are timed in the past "
            "so that they end at the present (workers reject readings from the future)"
        )
    return max(now - math.ceil(options.sim_horizon_s()), math.floor(previous_end) + 1)


def simulate(
    options: RunOptions,
    settings: Settings,
    stop: threading.Event,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> SimulateResult:
    """Run the plant's devices until the duration or ``stop``; drain the spool to the broker."""
    assert options.bus_url is not None
    bus, topics = connect(options.bus_url, settings)
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    plant = build_plant(options.machines, options.seed)
    publish_machines(bus, topics, plant.registry_rows())  # for workers and sinks
    start = options.start
    if start is None:
        start = _start(options, read_plant_clock(data / "plant-clock.json"))
    clock = SimulatedClock(start, options.speed)
    producer = PlantProducer(
        plant=plant,
        options=options,
        settings=settings,
        data_dir=data,
        transport=KafkaTransport(bus, topics.raw),
        clock=clock,
        start=start,
    )
    began = time.time()
    worker = threading.Thread(target=producer.run, args=(stop,), name="producer", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(5.0)
        if progress is not None:
            st = producer.client.stats
            progress(
                {
                    "generated": producer.produced.generated,
                    "pending": st.pending_readings,
                    "acked_entries": st.acked_entries,
                }
            )
    drained = producer.drain(120.0)
    producer.close()
    bus.close()
    return SimulateResult(
        generated=producer.produced.generated,
        replayed=producer.replayed,
        drained=drained,
        sim_seconds=producer.produced.sim_time - start,
        wall_seconds=time.time() - began,
    )


def process(
    settings: Settings, bus_url: str, stop: threading.Event, *, group: str = "plantwatch-stream"
) -> RunMetrics:
    """A stream worker in ``group`` until ``stop``; returns what it did."""
    bus, topics = connect(bus_url, settings)
    metrics = RunMetrics()
    worker = StreamWorker(
        bus=bus,
        pipeline=Pipeline(
            PipelineConfig.from_settings(settings.stream),
            rules=rule_set(settings).rules,
            models=scorer_from_settings(settings),
        ),
        clock=WallClock(),
        topics=topics,
        group=group,
        max_batch_rows=settings.stream.max_batch_rows,
        max_batch_wait_s=settings.stream.max_batch_wait_s,
        metrics=metrics,
    )

    def step(timeout: float) -> int:
        n = worker.step(timeout)
        if n:
            now = time.time()
            metrics.first_stored = metrics.first_stored or now  # here: first batch processed
            metrics.last_stored = now
        return n

    try:
        run_until_idle(
            step, stop, idle_s=0.0
        )  # stop promptly: what is not committed stays in Kafka
    finally:
        worker.close()
        bus.close()
    return metrics


def sink(
    settings: Settings, bus_url: str, stop: threading.Event, *, group: str = "plantwatch-sink"
) -> RunMetrics:
    """The store sink in ``group`` until ``stop``; returns what it stored."""
    bus, topics = connect(bus_url, settings)
    data = settings.data_dir.resolve()
    metrics = RunMetrics()
    try:
        lock, store = claim_store(settings)
        try:
            migrate(store)
            # Alarms and notifications live where alert events are stored. Run one sink per
            # data folder with notifications on; more sinks split the partitions, and each
            # notifies for the machines it was given.
            alerts = AlertService(
                rules=rule_set(settings), store=store, clock=WallClock(), data_dir=data, lock=lock
            )
            s = StoreSink(
                bus=bus,
                store=store,
                clock=WallClock(),
                topics=topics,
                group=group,
                metrics=metrics,
                dedupe_horizon=settings.stream.dedupe_horizon,
                on_alerts=alerts.handle,
            )
            sensors = s.restore()
            log.info("sink: %d sensors already stored", sensors)
            alerts.start()
            try:
                run_until_idle(s.step, stop, idle_s=0.0)  # uncommitted stays in Kafka
            finally:
                s.close()
                alerts.close()
        finally:
            store.close()
            lock.release()
    finally:
        bus.close()
    return metrics
