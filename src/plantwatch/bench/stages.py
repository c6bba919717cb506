"""The stream stage alone, three ways, on one recorded input (a bench child section).

A simulated plant is produced to a Kafka raw topic once (``plantwatch simulate`` at full speed);
its records are then read back and processed by

* the embedded runner (``LocalRunner``: in-process bus, the pipeline, chDB), from memory;
* one Kafka stream worker (``plantwatch process``'s ``StreamWorker``): Kafka → pipeline → Kafka;
* the Flink job on a local MiniCluster (``plantwatch flink run --local --bounded``) at each
  parallelism asked for: Kafka → pipeline → Kafka, exactly-once.

Each figure is readings per second of wall time over the same records. For the Flink job two are
given: over the whole command (the JVM, the MiniCluster and the Python workers start in it, ~15 s)
and over its processing only (first to last reading's ``ingested_at``, the job's own clock).
The worker's steady figure leaves out its first batch, which waited for the consumer group.

    python -m plantwatch.bench.child stream_stage <<< '{"bootstrap": "127.0.0.1:9092",
        "machines": 12, "sim_seconds": 3600, "parallelism": [1, 2]}'
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.bus.base import Message
from plantwatch.bus.kafka import KafkaBus, read_to_end
from plantwatch.core.codec import decode_table
from plantwatch.core.settings import KafkaSettings, Settings
from plantwatch.core.topics import Topics
from plantwatch.stream.batches import count_of


def stream_stage(p: dict[str, Any]) -> dict[str, Any]:
    bootstrap = str(p["bootstrap"])
    cache = Path(p.get("cache_dir") or Settings().cache_dir).resolve()
    source = f"bench{uuid.uuid4().hex[:8]}"
    produced = _simulate(bootstrap, source, int(p["machines"]), float(p["sim_seconds"]))
    records = read_to_end(bootstrap, Topics(source).raw, KafkaSettings())
    registry = read_to_end(bootstrap, Topics(source).machines, KafkaSettings())
    readings = sum(count_of(m) for m in records)
    out: dict[str, Any] = {
        "machines": int(p["machines"]),
        "sim_seconds": float(p["sim_seconds"]),
        "records": len(records),
        "readings": readings,
        "generated": produced,
    }
    out["embedded"] = _embedded(records, registry)
    out["kafka_worker"] = _worker(bootstrap, source, readings)
    stored = out["embedded"]["readings_stored"]
    out["flink"] = [
        _flink(bootstrap, records, registry, int(n), cache, stored)
        for n in p.get("parallelism", [1, 2])
    ]
    return out


def _simulate(bootstrap: str, prefix: str, machines: int, sim_seconds: float) -> int:
    from plantwatch.stream.distributed import simulate
    from plantwatch.stream.producer import RunOptions

    with tempfile.TemporaryDirectory(prefix="plantwatch-bench-") as tmp:
        settings = Settings().model_copy(
            update={"data_dir": Path(tmp), "topic_prefix": prefix, "kafka": KafkaSettings()}
        )
        options = RunOptions(
            machines=machines,
            duration_s=sim_seconds,
            speed=None,
            seed=1,
            faults="default",
            bus_url=f"kafka://{bootstrap}",
        )
        return simulate(options, settings, threading.Event()).generated


def _embedded(records: list[Message], registry: list[Message]) -> dict[str, Any]:
    from plantwatch.bench.child import fresh_store
    from plantwatch.bus.memory import MemoryBus
    from plantwatch.core.clock import WallClock
    from plantwatch.stream.directory import decode_machine
    from plantwatch.stream.local import LocalRunner, stop_when_idle
    from plantwatch.stream.pipeline import Pipeline, PipelineConfig

    settings = Settings()
    topics = Topics("bench")
    bus = MemoryBus(max_messages=len(records) + 10)
    pipeline = Pipeline(PipelineConfig.from_settings(settings.stream))
    pipeline.register_machines(r for m in registry if (r := decode_machine(m.value)))
    with fresh_store() as store:
        runner = LocalRunner(
            bus=bus,
            store=store,
            pipeline=pipeline,
            clock=WallClock(),
            topics=topics,
            max_batch_rows=settings.stream.max_batch_rows,
            max_batch_wait_s=settings.stream.max_batch_wait_s,
        )
        for m in records:  # after the runner subscribed: the in-process bus keeps them
            bus.publish(topics.raw, m.value, key=m.key, headers=m.headers)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        stop_when_idle(runner, 0.5, limit_s=3600)
        runner.finish()
        wall = time.perf_counter() - t0 - 0.5  # less the idle wait that ends it
        cpu = time.process_time() - cpu0
        runner.close()
        stored = int(store.query_rows(f"SELECT count() FROM {store.database}.readings")[0][0])
    return {
        "readings_stored": stored,
        "wall_seconds": round(wall, 3),
        "readings_per_s": round(stored / wall),
        "cpu_seconds": round(cpu, 3),
    }


def _worker(bootstrap: str, prefix: str, readings: int) -> dict[str, Any]:
    from plantwatch.core.clock import WallClock
    from plantwatch.stream.pipeline import Pipeline, PipelineConfig
    from plantwatch.stream.worker import StreamWorker

    settings = Settings()
    bus = KafkaBus(bootstrap, KafkaSettings())
    worker = StreamWorker(
        bus=bus,
        pipeline=Pipeline(PipelineConfig.from_settings(settings.stream)),
        clock=WallClock(),
        topics=Topics(prefix),
        group=f"bench-worker-{uuid.uuid4().hex[:6]}",
        max_batch_rows=settings.stream.max_batch_rows,
        max_batch_wait_s=settings.stream.max_batch_wait_s,
    )
    try:
        seen, first, t_first = 0, 0, 0.0
        t0 = time.perf_counter()
        deadline = t0 + 3600
        while seen < readings and time.perf_counter() < deadline:
            n = worker.step(1.0)
            seen += n
            if n and not first:  # this step waited for the group's join: not the worker's speed
                first, t_first = n, time.perf_counter()
        last = time.perf_counter()
    finally:
        worker.close()
        bus.close()
    steady = last - t_first
    return {
        "readings": seen,
        "wall_seconds": round(last - t0, 3),
        "steady_readings": seen - first,
        "steady_seconds": round(steady, 3),
        "readings_per_s": round((seen - first) / steady) if steady > 0 and seen > first else None,
    }


def _flink(
    bootstrap: str,
    records: list[Message],
    registry: list[Message],
    parallelism: int,
    cache: Path,
    stored: int,
) -> dict[str, Any]:
    """The job on a copy of the raw topic (its own prefix), bounded, at ``parallelism``."""
    from plantwatch.bus.kafka_config import topic_specs

    prefix = f"benchf{uuid.uuid4().hex[:8]}"
    topics = Topics(prefix)
    bus = KafkaBus(bootstrap, KafkaSettings())
    try:
        bus.ensure_topics(topic_specs(topics, KafkaSettings()))
        for m in registry:
            bus.publish(topics.machines, m.value, key=m.key)
        for m in records:
            bus.publish(topics.raw, m.value, key=m.key, headers=m.headers)
        bus.flush(120)
    finally:
        bus.close()
    with tempfile.TemporaryDirectory(prefix="plantwatch-bench-") as tmp:
        env = {
            **os.environ,
            "PLANTWATCH_TOPIC_PREFIX": prefix,
            "PLANTWATCH_DATA_DIR": str(tmp),
            "PLANTWATCH_CACHE_DIR": str(cache),
        }
        command = [sys.executable, "-m", "plantwatch.cli", "flink", "run", "--local"]
        command += ["--bus", f"kafka://{bootstrap}", "--bounded"]
        command += ["--parallelism", str(parallelism), "--transactional-id-prefix", prefix]
        t0 = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"flink run exited {done.returncode}: {done.stderr[-2000:]}")
    # processing time from the readings' own ingestion times (the job's clock as it processed
    # each record; the Kafka timestamps of its outputs are the inputs' event timestamps)
    outputs = read_to_end(bootstrap, topics.clean, KafkaSettings())
    ingested = pa.concat_tables(
        [decode_table(m.value).select(["ingested_at"]) for m in outputs]
    ).column(0)
    rows = len(ingested)
    bounds = pc.min_max(ingested.cast(pa.int64())).as_py()
    span = (bounds["max"] - bounds["min"]) / 1000 if rows else 0.0
    return {
        "parallelism": parallelism,
        "readings_out": rows,
        "complete": rows == stored,
        "wall_seconds": round(wall, 3),
        "readings_per_s_wall": round(rows / wall),
        "processing_seconds": round(span, 3),
        "readings_per_s": round(rows / span) if span else None,
    }
