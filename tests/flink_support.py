"""The Flink job in tests (importable as ``flink_support``): a recorded plant input with faults,
late, duplicated and malformed records; that input through the embedded runner and through
``plantwatch flink run --local``; both shapes' outputs read back as comparable sets.

The Flink environment (its virtualenv and connector jars) is made in the repository's
``.cache/`` like the Kafka jars; without network access to PyPI and Maven Central, making it
fails the run with the command that failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.bus.base import Message
from plantwatch.bus.kafka import KafkaBus, read_to_end
from plantwatch.bus.memory import MemoryBus
from plantwatch.core import codec
from plantwatch.core.clock import WallClock
from plantwatch.core.settings import KafkaSettings, Settings
from plantwatch.core.topics import Topics
from plantwatch.models.registry import Registry
from plantwatch.models.scoring import ModelScorer
from plantwatch.models.train import fit_type
from plantwatch.store.client import Store
from plantwatch.stream.directory import decode_machine
from plantwatch.stream.flink.runtime import FlinkEnv
from plantwatch.stream.local import LocalRunner, stop_when_idle
from plantwatch.stream.messages import OutMessage, output_messages
from plantwatch.stream.outputs import Output
from plantwatch.stream.pipeline import Pipeline, PipelineConfig

REPO_CACHE = Path(__file__).resolve().parents[1] / ".cache"
LATE_WITHIN_S = 30  # later than the watermark, within allowed lateness (60 s)
LATE_BEYOND_S = 400  # past allowed lateness: stored, counted, in no feature
PARTITIONS = 3  # of every test topic
FLOAT_TOLERANCE = 1e-9  # relative: the same arithmetic in the same order, two processes


def record(key: bytes | None, value: bytes, headers: dict[str, str]) -> Message:
    """One raw-topic record as a device or gateway sends it."""
    return Message("", value, key, headers)


@dataclass(slots=True)
class Recorded:
    records: list[Message]
    machines: list[dict[str, str]]


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    return read_to_end(bootstrap, topic, KafkaSettings())


# -- the recorded input ----------------------------------------------------------------------------


def record_plant(
    bootstrap: str, prefix: str, tmp: Path, *, machines: int, duration: int, faults: str
) -> Recorded:
    """A simulated plant's raw records and registry, as ``plantwatch simulate`` sent them."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "plantwatch.cli", "simulate", "--bus", f"kafka://{bootstrap}"),
            *("--machines", str(machines), "--duration", str(duration), "--speed", "max"),
            *("--faults", faults, "--seed", "7", "--data-dir", str(tmp / "devices")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PLANTWATCH_TOPIC_PREFIX": prefix},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    topics = Topics(prefix)
    # one global order: by the event time each record starts at (partitions keep their order)
    records = sorted(read_topic(bootstrap, topics.raw), key=_first_ts)
    registry = [r for m in read_topic(bootstrap, topics.machines) if (r := decode_machine(m.value))]
    return Recorded(records, registry)


def _first_ts(r: Message) -> int:
    table = codec.decode(r.headers.get("content-type", codec.ARROW), r.value).table
    return int(pc.min(table.column("ts")).cast(pa.int64()).as_py())


def with_trouble(rec: Recorded) -> Recorded:
    """The recorded plant with duplicated records, late readings (within and beyond allowed
    lateness) and malformed records, each inserted at a fixed place in the stream."""
    out = list(rec.records)
    n = len(out)
    # duplicates: three records sent again a little later (as a retrying SDK would)
    for i in (n // 5, n // 2, (3 * n) // 4):
        out.insert(min(i + 4, len(out)), out[i])
    # late readings, new sequence numbers, in NDJSON from a gateway, at 60 % of the stream
    at = (3 * n) // 5
    ref = codec.decode(out[at].headers.get("content-type", codec.ARROW), out[at].value).table
    row = ref.slice(0, 1).to_pylist()[0]
    ts = int(pc.max(ref.column("ts")).cast(pa.int64()).as_py())
    late = []
    for k, back in enumerate((LATE_WITHIN_S, LATE_WITHIN_S + 2, LATE_BEYOND_S)):
        late.append(
            {
                "machine_id": row["machine_id"],
                "sensor_id": row["sensor_id"],
                "kind": row["kind"],
                "value": float(row["value"]),
                "unit": row["unit"],
                "ts": ts - back * 1000,
                "seq": 10_000_000 + k,
            }
        )
    out.insert(at + 1, _ndjson(late, row["machine_id"]))
    # malformed: bytes that are not Arrow, a bad JSON line among good ones, a NaN, a bad unit
    machine = row["machine_id"]
    good = dict(late[0], seq=10_000_100, ts=ts)
    bad_lines = [
        json.dumps(good),
        "{this is not json",
        json.dumps(dict(good, seq=10_000_101, value="warm")),
        json.dumps(dict(good, seq=10_000_102, unit="furlongs")),
    ]
    out.insert(
        at + 2,
        record(
            machine.encode(), ("\n".join(bad_lines) + "\n").encode(), {"content-type": codec.NDJSON}
        ),
    )
    out.insert(
        at + 3,
        record(machine.encode(), b"\x00not arrow at all" * 64, {"content-type": codec.ARROW}),
    )
    return Recorded(out, rec.machines)


def _ndjson(rows: list[dict[str, Any]], machine: str) -> Message:
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return record(machine.encode(), body, {"content-type": codec.NDJSON, "count": str(len(rows))})


def publish(
    bootstrap: str,
    prefix: str,
    rec: Recorded,
    *,
    start: int = 0,
    stop: int | None = None,
    pace_s: float = 0.0,
) -> None:
    """Records ``start:stop`` to the raw topic of ``prefix`` (keyed by machine, in order), and
    the registry with the first batch; ``pace_s`` apart, as a plant sends them."""
    topics = Topics(prefix)
    bus = KafkaBus(bootstrap, KafkaSettings())
    try:
        if start == 0:
            for row in rec.machines:
                bus.publish(
                    topics.machines, json.dumps(row).encode(), key=row["machine_id"].encode()
                )
        for r in rec.records[start:stop]:
            bus.publish(topics.raw, r.value, key=r.key, headers=r.headers)
            if pace_s:
                bus.flush(10)
                time.sleep(pace_s)
        assert bus.flush(60) == 0
    finally:
        bus.close()


# -- the two shapes --------------------------------------------------------------------------------


def partitions_of(bootstrap: str, prefix: str) -> list[list[Message]]:
    """The raw topic's records as the broker holds them: one list per partition, in order."""
    by: dict[int, list[Message]] = {}
    for m in read_topic(bootstrap, Topics(prefix).raw):
        by.setdefault(m.partition, []).append(m)
    return [by[p] for p in sorted(by)]


def run_embedded(
    records: Sequence[Message],
    machines: list[dict[str, str]],
    store: Store,
    settings: Settings,
    *,
    finish: bool = True,
    models: Path | None = None,
) -> list[OutMessage]:
    """Records through the embedded runner (``LocalRunner`` on the in-process bus, one record
    per batch as the Flink job takes them); its outputs as bus messages. ``finish``: fire the
    open windows at the end, as a bounded job does (a running job leaves them open);
    ``models``: a model registry to score with."""
    topics = Topics("embedded")
    bus = MemoryBus(max_messages=len(records) + 10)
    pipeline = Pipeline(
        PipelineConfig.from_settings(settings.stream),
        models=None if models is None else ModelScorer(str(models)),
    )
    pipeline.register_machines(machines)
    outs: list[OutMessage] = []

    def keep(out: Output) -> None:
        outs.extend(output_messages(out, topics))

    runner = LocalRunner(
        bus=bus,
        store=store,
        pipeline=pipeline,
        clock=WallClock(),
        topics=topics,
        max_batch_rows=1,
        on_output=keep,
    )
    for r in records:
        bus.publish(topics.raw, r.value, key=r.key, headers=r.headers)
    stop_when_idle(runner, 1.0, limit_s=600)
    if finish:
        runner.finish()
    runner.close()
    return outs


def flink_run(
    *args: str,
    prefix: str,
    tmp: Path,
    partitions: int = PARTITIONS,
    log: str = "flink.log",
    models: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``plantwatch flink run --local`` in its own process group, its output in ``tmp/log``."""
    handle = (tmp / log).open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "plantwatch.cli", "flink", "run", "--local", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=job_env(prefix, tmp, partitions, models),
        start_new_session=True,
    )


def job_env(
    prefix: str, tmp: Path, partitions: int = PARTITIONS, models: Path | None = None
) -> dict[str, str]:
    """The environment of a ``plantwatch flink`` command in a test: its topics, the
    repository's cache (the Flink virtualenv and jars are made once), a data folder and,
    when given, the model registry the job scores with."""
    return {
        **os.environ,
        "PLANTWATCH_TOPIC_PREFIX": prefix,
        "PLANTWATCH_KAFKA__PARTITIONS": str(partitions),
        "PLANTWATCH_CACHE_DIR": str(REPO_CACHE),
        "PLANTWATCH_DATA_DIR": str(tmp / "data"),
        **({"PLANTWATCH_MODELS__REGISTRY": str(models)} if models is not None else {}),
    }


def stop_group(proc: subprocess.Popen[bytes], *, timeout: float = 60) -> int:
    """Ctrl-C to the job's process group (as a terminal sends it); every process of the group
    must be gone within ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return code
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("processes of the stopped job were still running (killed now)")


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the job's whole process group: the driver, the JVM (JobManager and TaskManager
    of the MiniCluster) and its Python workers, as a crashed machine would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def read_outputs(bootstrap: str, prefix: str) -> list[OutMessage]:
    """Every committed message of the job's output topics (read_committed)."""
    topics = Topics(prefix)
    out: list[OutMessage] = []
    for topic in (
        topics.clean,
        topics.features,
        topics.anomalies,
        topics.alerts,
        topics.dead_letters,
    ):
        for m in read_topic(bootstrap, topic):
            key = m.key.decode() if m.key else None
            out.append(OutMessage(topic, m.value, key, dict(m.headers)))
    return out


def embedded_sets(
    bootstrap: str,
    prefix: str,
    rec: Recorded,
    store: Store,
    *,
    finish: bool = True,
    models: Path | None = None,
) -> Sets:
    """What the embedded runner makes of each raw-topic partition's records (the job keeps one
    pipeline per partition, as a worker does per partition it owns)."""
    return sets_of(
        m
        for part in partitions_of(bootstrap, prefix)
        for m in run_embedded(part, rec.machines, store, Settings(), finish=finish, models=models)
    )


def sensitive_models(rec: Recorded, store: Store, folder: Path) -> Path:
    """A model registry with a PCA model of the recording's centrifugal pumps, trained with
    ``plantwatch train``'s code on the recording's own window features and promoted — its
    warning threshold lowered to the median held-out score, so that many windows are flagged
    and both shapes have plenty of model anomalies to agree on."""
    outs = run_embedded(rec.records, rec.machines, store, Settings())
    features = _table([m for m in outs if m.topic.endswith(".features")])
    types = {m["machine_id"]: m["machine_type"] for m in rec.machines}
    machine_type = np.array([types[m] for m in features.column("machine_id").to_pylist()], object)
    fitted = fit_type(features, machine_type, "centrifugal_pump", "pca", window_s=10.0)
    meta = fitted.metadata
    median = meta["metrics"]["holdout_score_quantiles"]["p50"]
    meta["threshold"] = {**meta["threshold"], "warning": median, "critical": 4 * median}
    registry = Registry(str(folder))
    registry.promote(registry.register("centrifugal_pump", "pca", fitted.onnx, meta))
    return folder


# -- comparable sets -------------------------------------------------------------------------------


@dataclass(slots=True)
class Sets:
    """One shape's outputs, keyed so the two shapes compare: wall-clock columns are left out."""

    readings: Counter[tuple[Any, ...]]
    features: dict[tuple[Any, ...], tuple[float, ...]]
    feature_versions: Counter[tuple[Any, ...]]
    anomalies: Counter[tuple[Any, ...]]
    anomaly_values: dict[tuple[Any, ...], tuple[float, ...]]
    alerts: Counter[tuple[Any, ...]]
    dead_letters: Counter[tuple[Any, ...]]


def sets_of(msgs: Iterable[OutMessage]) -> Sets:
    by: dict[str, list[OutMessage]] = {}
    for m in msgs:
        by.setdefault(m.topic.rsplit(".", 1)[-1], []).append(m)
    readings = _table(by.get("clean", []))  # <prefix>.readings.clean
    features = _table(by.get("features", []))
    anomalies = _table(by.get("anomalies", []))
    r = (
        Counter(
            zip(
                *(
                    readings.column(c).to_pylist()
                    for c in (
                        "machine_id",
                        "machine_type",
                        "sensor_id",
                        "seq",
                        "ts",
                        "value",
                        "unit",
                        "quality",
                        "late",
                    )
                ),
                strict=True,
            )
        )
        if readings.num_rows
        else Counter()
    )
    feats: dict[tuple[Any, ...], tuple[float, ...]] = {}
    versions: Counter[tuple[Any, ...]] = Counter()
    if features.num_rows:
        cols = [
            features.column(c).to_pylist()
            for c in (
                "machine_id",
                "sensor_id",
                "window_start",
                "version",
                "count",
                "mean",
                "min",
                "max",
                "std",
                "last",
            )
        ]
        best: dict[tuple[Any, ...], tuple[int, tuple[float, ...]]] = {}
        for m, s, w, v, *vals in zip(*cols, strict=True):
            versions[(m, s, w, v)] += 1
            if (m, s, w) not in best or v > best[(m, s, w)][0]:
                best[(m, s, w)] = (v, tuple(vals))
        feats = {k: v for k, (_, v) in best.items()}
    an: Counter[tuple[Any, ...]] = Counter()
    an_vals: dict[tuple[Any, ...], tuple[float, ...]] = {}
    if anomalies.num_rows:
        cols = [
            anomalies.column(c).to_pylist()
            for c in (
                "ts",
                "machine_id",
                "sensor_id",
                "detector",
                "severity",
                "model_version",
                "score",
                "value",
                "threshold",
            )
        ]
        for ts, m, s, d, sev, mv, score, value, thr in zip(*cols, strict=True):
            an[(ts, m, s, d, sev, mv)] += 1
            an_vals[(ts, m, s, d, sev, mv)] = (score, value, thr)
    alerts = Counter(
        (
            e["ts_ms"],
            e["rule"],
            e["state"],
            e["severity"],
            e["machine_id"],
            e["sensor_id"],
            e["kind"],
        )
        for e in (json.loads(m.value) for m in by.get("alerts", []))
    )
    dead = Counter(
        (m.headers.get("reason"), m.headers.get("sensor_id", ""), m.headers.get("seq", ""))
        for m in by.get("deadletters", [])
    )
    return Sets(r, feats, versions, an, an_vals, alerts, dead)


def _table(msgs: Sequence[OutMessage]) -> pa.Table:
    tables = [codec.decode_table(m.value) for m in msgs]
    return pa.concat_tables(tables) if tables else pa.table({})


def close(a: dict[Any, tuple[float, ...]], b: dict[Any, tuple[float, ...]]) -> list[str]:
    """Keys whose values differ by more than FLOAT_TOLERANCE (relative), or are missing."""
    bad = [f"only in one: {k}" for k in set(a) ^ set(b)]
    for k in set(a) & set(b):
        for x, y in zip(a[k], b[k], strict=True):
            if x is None or y is None:
                if x is not y:
                    bad.append(f"{k}: {a[k]} != {b[k]}")
            elif abs(x - y) > FLOAT_TOLERANCE * max(1.0, abs(x), abs(y)):
                bad.append(f"{k}: {a[k]} != {b[k]}")
                break
    return bad


def wait_until(predicate: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# -- a standalone Flink cluster --------------------------------------------------------------------


@contextlib.contextmanager
def standalone_cluster(env: FlinkEnv, folder: Path, *, slots: int = 2) -> Iterator[str]:
    """A JobManager and a TaskManager of the Flink distribution shipped with PyFlink, each a
    process of its own on loopback ports (as ``start-cluster.sh`` starts them, in the
    foreground); yields the REST endpoint ``127.0.0.1:PORT``."""
    import yaml

    from plantwatch.services import free_port_block

    home = env.flink.parents[1]
    conf = folder / "conf"
    shutil.copytree(home / "conf", conf)
    config = yaml.safe_load((conf / "config.yaml").read_text())
    port = free_port_block(1)
    rpc, blob, tm_rpc, tm_data = (free_port_block(1) for _ in range(4))
    config["jobmanager"].update(
        {"bind-host": "127.0.0.1", "rpc": {"address": "127.0.0.1", "port": rpc}}
    )
    config["jobmanager"]["memory"] = {"process": {"size": "1024m"}}
    config["taskmanager"].update(
        {
            "bind-host": "127.0.0.1",
            "host": "127.0.0.1",
            "numberOfTaskSlots": slots,
            "rpc": {"port": tm_rpc},
            "data": {"port": tm_data},
        }
    )
    config["rest"] = {"address": "127.0.0.1", "bind-address": "127.0.0.1", "port": port}
    config["blob"] = {"server": {"port": str(blob)}}
    (conf / "config.yaml").write_text(yaml.safe_dump(config))
    # a cluster runs PyFlink jobs with flink-python in its lib/ (a distribution ships it in opt/)
    lib = folder / "lib"
    lib.mkdir()
    for jar in [*(home / "lib").glob("*.jar"), *(home / "opt").glob("flink-python-*.jar")]:
        (lib / jar.name).symlink_to(jar)
    environ = {
        **env.environ(folder / "log"),
        "FLINK_CONF_DIR": str(conf),
        "FLINK_LIB_DIR": str(lib),
        "FLINK_PID_DIR": str(folder),
    }
    environ.pop("PYTHONPATH", None)  # the cluster gets plantwatch shipped with the job
    procs = [
        subprocess.Popen(
            ["bash", str(home / "bin" / f"{role}.sh"), "start-foreground"],
            env=environ,
            stdout=(folder / f"{role}.out").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for role in ("jobmanager", "taskmanager")
    ]
    try:
        wait_until(
            lambda: _taskmanagers(port) >= 1 or any(p.poll() is not None for p in procs),
            timeout=120,
            what="the standalone cluster's TaskManager to register",
        )
        dead = [p.args for p in procs if p.poll() is not None]
        assert not dead, f"{dead} exited: see {folder}/log"
        yield f"127.0.0.1:{port}"
    finally:
        for p in procs:
            kill_group(p)


def _taskmanagers(port: int) -> int:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/overview", timeout=2) as r:
            return int(json.loads(r.read())["taskmanagers"])
    except (OSError, ValueError, KeyError):
        return 0
