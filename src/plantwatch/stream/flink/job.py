"""The Flink job: raw readings from Kafka → the pipeline, keyed by partition → Kafka outputs.

Run by ``plantwatch flink run|submit`` (``runtime.py``) with the Flink environment's Python; it
imports PyFlink, so the main environment never has to. The graph:

    Kafka raw topic (Table API, raw format, record timestamp → watermark)
      → to DataStream → key by Kafka partition
      ⋈ machine registry topic (broadcast)
      → KeyedBroadcastProcessFunction: ``Stage.record`` on the key's pipeline (Flink state)
      → Kafka output topics (Table API, raw format; exactly-once with checkpoints on)

Event time, the watermark (bounded out-of-orderness, idleness) and allowed lateness are the
pipeline's own (``stream/windows.py``), kept in Flink state with the rest of the pipeline, so
the job and the embedded runner judge lateness alike. Flink's watermark, taken from the Kafka
record timestamp, ends a bounded run: when it reaches the end, each key fires its open windows
(as the embedded runner's ``finish``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pyflink.common import Configuration, Row, Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.functions import KeyedBroadcastProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor
from pyflink.table import StreamTableEnvironment

from plantwatch.alert.control import rule_set
from plantwatch.core.settings import Settings
from plantwatch.core.topics import Topics
from plantwatch.stream.directory import decode_machine
from plantwatch.stream.flink.stage import KeyState, Stage, machine_rows, registry_token
from plantwatch.stream.messages import OutMessage
from plantwatch.stream.pipeline import PipelineConfig

log = logging.getLogger("plantwatch.flink")

#: The end-of-input timer: Flink's watermark passes it only at the end of a bounded input.
END_OF_INPUT_MS = 2**62

_BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
OUT_TYPE = Types.ROW_NAMED(
    ["k", "v", "topic", "headers"],
    [_BYTES, _BYTES, Types.STRING(), Types.MAP(Types.STRING(), _BYTES)],
)
_REGISTRY = MapStateDescriptor("machines", Types.STRING(), Types.STRING())


class PipelineFunction(KeyedBroadcastProcessFunction):  # type: ignore[misc]
    """Runs ``Stage.record`` for each raw record on its key's pipeline (Flink keyed state)."""

    def __init__(self, stage: Stage, machines: dict[str, dict[str, str]]) -> None:
        self.stage = stage
        self.initial = machines

    def open(self, ctx: RuntimeContext) -> None:
        self.state = ctx.get_state(ValueStateDescriptor("pipeline", Types.PICKLED_BYTE_ARRAY()))
        self.machines = dict(self.initial)
        self.token = registry_token(self.machines)
        self.read_broadcast = False
        self.resumed: set[int] = set()  # keys seen since this (re)start

    def process_broadcast_element(self, value: Row, ctx: Any) -> None:
        row = decode_machine(bytes(value["v"]))
        if row is None:
            return
        ctx.get_broadcast_state(_REGISTRY).put(row["machine_id"], json.dumps(row))
        if self.machines.get(row["machine_id"]) != row:
            self.machines[row["machine_id"]] = dict(row)
            self.token = registry_token(self.machines)

    def process_element(self, value: Row, ctx: Any) -> Iterator[Row]:
        if not self.read_broadcast:  # after a restore: the registry from the broadcast state
            stored = {k: json.loads(v) for k, v in ctx.get_broadcast_state(_REGISTRY).items()}
            if stored:
                self.machines = {**self.machines, **machine_rows(stored.values())}
                self.token = registry_token(self.machines)
            self.read_broadcast = True
        state: KeyState | None = self.state.value()
        if state is None:
            state = self.stage.new_state()
            ctx.timer_service().register_event_time_timer(END_OF_INPUT_MS)
        self.stage.sync_registry(state, self.machines, self.token)
        raw_headers = value["headers"] or {}
        now_ms = int(time.time() * 1000)
        key = ctx.get_current_key()
        if key not in self.resumed:
            self.stage.resume(state, arrival_ms=now_ms)
            self.resumed.add(key)
        msgs = self.stage.record(
            state,
            value=bytes(value["v"] or b""),
            key=bytes(value["k"]) if value["k"] is not None else None,
            headers={k: bytes(v).decode("utf-8", "replace") for k, v in raw_headers.items()},
            partition=int(value["partition"]),
            offset=int(value["offset"]),
            now_ms=now_ms,
            arrival_ms=now_ms,
        )
        self.state.update(state)
        yield from _rows(msgs)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Row]:
        state: KeyState | None = self.state.value()
        if state is None:
            return
        msgs = self.stage.finish(state, now_ms=int(time.time() * 1000))
        self.state.update(state)
        yield from _rows(msgs)


def _rows(msgs: Sequence[OutMessage]) -> Iterator[Row]:
    for m in msgs:
        headers = {k: v.encode() for k, v in m.headers.items()}
        yield Row(m.key.encode() if m.key else None, m.value, m.topic, headers)


# -- the job graph -------------------------------------------------------------------------------


def _kafka_options(bootstrap: str, properties: Sequence[str]) -> str:
    """Connector options: the brokers and any ``--kafka-property KEY=VALUE`` (security, ...)."""
    extra = {"properties.bootstrap.servers": bootstrap}
    for item in properties:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--kafka-property {item!r}: expected KEY=VALUE")
        extra[f"properties.{name}"] = value
    return ", ".join(f"'{k}' = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in extra.items())


def build(args: argparse.Namespace, settings: Settings) -> Any:
    """The job on ``env``; returns the TableResult of its insert (not yet waited for)."""
    topics = Topics(settings.topic_prefix)
    conf = Configuration()
    conf.set_string("pipeline.name", args.name)
    if args.jars:
        conf.set_string("pipeline.jars", ";".join(Path(j).resolve().as_uri() for j in args.jars))
    conf.set_string("python.executable", args.python or sys.executable)
    conf.set_string("restart-strategy.type", "fixed-delay")
    conf.set_string("restart-strategy.fixed-delay.attempts", str(args.restart_attempts))
    conf.set_string("restart-strategy.fixed-delay.delay", f"{int(args.restart_delay_s * 1000)} ms")
    exactly_once = args.checkpoint_interval_s > 0
    if exactly_once:
        conf.set_string(
            "execution.checkpointing.interval", f"{int(args.checkpoint_interval_s * 1000)} ms"
        )
        conf.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
        conf.set_string(
            "execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION"
        )
        conf.set_string("execution.checkpointing.num-retained", "3")
        if args.checkpoint_dir:
            conf.set_string(
                "execution.checkpointing.dir", Path(args.checkpoint_dir).resolve().as_uri()
            )
    if args.restore:
        conf.set_string("execution.state-recovery.path", args.restore)
    idle_ms = int(settings.stream.idle_source_s * 1000)
    conf.set_string("table.exec.source.idle-timeout", f"{idle_ms} ms")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    if args.parallelism:
        env.set_parallelism(args.parallelism)
    if args.ship_package:  # a cluster's Python workers import plantwatch from the job's files
        env.add_python_file(str(_staged_package()))
    t_env = StreamTableEnvironment.create(env)

    kafka = _kafka_options(args.bootstrap, args.kafka_property)
    bounded = ", 'scan.bounded.mode' = 'latest-offset'" if args.bounded else ""
    ooo_s = f"{settings.stream.out_of_orderness_s:.3f}"
    t_env.execute_sql(
        f"""
        CREATE TEMPORARY TABLE raw_readings (
          k BYTES, v BYTES,
          `partition` INT METADATA VIRTUAL,
          `offset` BIGINT METADATA VIRTUAL,
          headers MAP<STRING, BYTES> METADATA VIRTUAL,
          ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
          WATERMARK FOR ts AS ts - INTERVAL '{ooo_s}' SECOND
        ) WITH (
          'connector' = 'kafka', 'topic' = '{topics.raw}', {kafka},
          'properties.group.id' = '{args.group}',
          'scan.startup.mode' = 'group-offsets',
          'properties.auto.offset.reset' = 'earliest',
          'key.format' = 'raw', 'key.fields' = 'k',
          'value.format' = 'raw', 'value.fields-include' = 'EXCEPT_KEY'{bounded}
        )"""
    )
    t_env.execute_sql(
        f"""
        CREATE TEMPORARY TABLE machine_registry (k BYTES, v BYTES) WITH (
          'connector' = 'kafka', 'topic' = '{topics.machines}', {kafka},
          'properties.group.id' = '{args.group}-registry',
          'scan.startup.mode' = 'earliest-offset',
          'key.format' = 'raw', 'key.fields' = 'k',
          'value.format' = 'raw', 'value.fields-include' = 'EXCEPT_KEY'{bounded}
        )"""
    )
    outputs = ";".join(
        (topics.clean, topics.features, topics.anomalies, topics.alerts, topics.dead_letters)
    )
    guarantee = (
        "'sink.delivery-guarantee' = 'exactly-once', "
        f"'sink.transactional-id-prefix' = '{args.transactional_id_prefix}', "
        f"'properties.transaction.timeout.ms' = '{int(args.transaction_timeout_s * 1000)}'"
        if exactly_once
        else "'sink.delivery-guarantee' = 'at-least-once'"
    )
    t_env.execute_sql(
        f"""
        CREATE TEMPORARY TABLE outputs (
          k BYTES, v BYTES,
          topic STRING METADATA,
          headers MAP<STRING, BYTES> METADATA
        ) WITH (
          'connector' = 'kafka', 'topic' = '{outputs}', {kafka},
          'key.format' = 'raw', 'key.fields' = 'k',
          'value.format' = 'raw', 'value.fields-include' = 'EXCEPT_KEY',
          'properties.compression.type' = 'zstd',
          {guarantee}
        )"""
    )

    stage = Stage(
        PipelineConfig.from_settings(settings.stream),
        tuple(rule_set(settings).rules),
        topics,
        model_registry=settings.resolved_model_registry() if settings.models.enabled else None,
        model_reload_s=settings.models.reload_s,
    )
    raw = t_env.to_data_stream(t_env.from_path("raw_readings"))
    registry = t_env.to_data_stream(t_env.from_path("machine_registry")).broadcast(_REGISTRY)
    out = (
        raw.key_by(lambda r: r["partition"], key_type=Types.INT())
        .connect(registry)
        .process(PipelineFunction(stage, args.machines), output_type=OUT_TYPE)
        .name("plantwatch pipeline")
        .uid("plantwatch-pipeline")
    )
    return t_env.from_data_stream(out).execute_insert("outputs")


def _staged_package() -> Path:
    """A folder holding a copy of the plantwatch package (Flink puts a shipped folder itself on
    the workers' PYTHONPATH, so the package must be inside it); removed when the driver exits."""
    staging = Path(tempfile.mkdtemp(prefix="plantwatch-job-"))
    atexit.register(shutil.rmtree, staging, True)
    shutil.copytree(
        Path(__file__).resolve().parents[2],
        staging / "plantwatch",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return staging


def read_registry(bootstrap: str, settings: Settings) -> dict[str, dict[str, str]]:
    """The machine registry as it stands (the job starts with it; updates arrive broadcast)."""
    from plantwatch.bus.kafka import read_to_end

    topic = Topics(settings.topic_prefix).machines
    records = read_to_end(bootstrap, topic, settings.kafka)
    return machine_rows(r for m in records if (r := decode_machine(m.value)) is not None)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m plantwatch.stream.flink.job")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--name", default="plantwatch-stream")
    p.add_argument("--group", default="plantwatch-flink")
    p.add_argument("--parallelism", type=int, default=0)
    p.add_argument("--checkpoint-interval-s", type=float, default=10.0)
    p.add_argument("--checkpoint-dir", default="")
    p.add_argument("--restore", default="")
    p.add_argument("--bounded", action="store_true")
    p.add_argument("--transactional-id-prefix", default="plantwatch-flink")
    p.add_argument("--transaction-timeout-s", type=float, default=600.0)
    p.add_argument("--restart-attempts", type=int, default=3)
    p.add_argument("--restart-delay-s", type=float, default=2.0)
    p.add_argument("--jars", nargs="*", default=[])
    p.add_argument("--python", default="")
    p.add_argument("--ship-package", action="store_true")
    p.add_argument("--kafka-property", action="append", default=[])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # its start-up notes are noise
    args = parser().parse_args(argv)
    settings = Settings()
    args.machines = read_registry(args.bootstrap, settings)
    log.info("machine registry: %d machines", len(args.machines))
    result = build(args, settings)
    client = result.get_job_client()
    job_id = client.get_job_id() if client is not None else None
    print(json.dumps({"event": "submitted", "job_id": str(job_id)}), flush=True)
    # Ctrl-C (SIGINT) or SIGTERM: stop the job with a savepoint, so it resumes exactly there
    # (``--from-checkpoint latest``). Flink's JVM and the Python workers ignore SIGINT
    # (PyFlink starts them so), only this driver acts on it.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        result.wait()
    except KeyboardInterrupt:
        return _stop(client, job_id, args.checkpoint_dir)
    print(json.dumps({"event": "finished", "job_id": str(job_id)}), flush=True)
    return 0


def _say(text: str) -> None:
    """A line for the operator (Beam reconfigures logging once the job runs)."""
    print(f"plantwatch flink: {text}", file=sys.stderr, flush=True)


_interrupted: list[int] = []


def _interrupt(signum: int, _frame: object) -> None:
    """The first SIGINT or SIGTERM stops the job; more (a terminal's and the CLI's) wait."""
    if not _interrupted:
        _interrupted.append(signum)
        raise KeyboardInterrupt


def _stop(client: Any, job_id: object, checkpoint_dir: str) -> int:
    if client is None:
        return 130
    target = Path(checkpoint_dir or ".").resolve() / "savepoints"
    _say(f"stopping the job with a savepoint in {target}")
    try:
        # PyFlink 2.2's JobClient.stop_with_savepoint calls a Java signature that no longer
        # exists; the Java client's own method takes the savepoint format too.
        from pyflink.java_gateway import get_gateway

        canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
        j_client = client._j_job_client
        path = str(j_client.stopWithSavepoint(False, target.as_uri(), canonical).get())
    except Exception as exc:  # the job failed or finished meanwhile: say so, cancel what is left
        _say(f"stop with a savepoint failed ({exc}); cancelling the job")
        with contextlib.suppress(Exception):
            client.cancel().result()
        return 1
    print(json.dumps({"event": "stopped", "job_id": str(job_id), "savepoint": path}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
