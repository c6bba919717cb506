"""The plant through a real Kafka broker: devices, workers and the sink as separate processes,
a broker that goes away, processes killed mid-batch, malformed input, a worker group.

Every test gets its own topic prefix (PLANTWATCH_TOPIC_PREFIX) and data folders; the session's
broker is started by ``tests/conftest.py`` from jars Maven fetched into ``.cache/``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from plantwatch.alert.rulefile import default_rules_path
from plantwatch.bus.kafka import KafkaBus
from plantwatch.bus.kafka_config import topic_specs
from plantwatch.core import codec
from plantwatch.core.settings import KafkaSettings
from plantwatch.core.topics import Topics
from plantwatch.edge.spool import recover_sequences
from plantwatch.services import KafkaCluster

from alertmanager_support import HttpCapture
from kafka_support import (
    order_violations,
    read_topic,
    running_cluster,
    unique_prefix,
    wait_caught_up,
)
from plantwatch_cli import (
    plantwatch,
    query,
    run_summary,
    start_role,
    stop_role,
    stored_exactly_once,
)

SINK_TOPICS = ("readings.clean", "features", "anomalies", "alerts", "deadletters", "machines")


def env_for(prefix: str, **extra: str) -> dict[str, str]:
    return {"PLANTWATCH_TOPIC_PREFIX": prefix, "PLANTWATCH_KAFKA__PARTITIONS": "3", **extra}


def wait_for(predicate: object, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def simulate(
    bus: str, env: dict[str, str], tmp_path: Path, *, machines: int, speed: int, duration: int
) -> Any:
    """The plant's devices faster than real time, spooling into ``tmp_path/devices``."""
    return start_role(
        "simulate",
        "--bus",
        bus,
        "--machines",
        str(machines),
        "--speed",
        str(speed),
        "--duration",
        str(duration),
        "--data-dir",
        str(tmp_path / "devices"),
        env=env,
        log=tmp_path / "simulate.log",
    )


def settle(bootstrap: str, prefix: str) -> None:
    """Wait until the worker and the sink have committed everything there is."""
    wait_caught_up(bootstrap, "plantwatch-stream", [f"{prefix}.readings.raw"], timeout=180)
    wait_caught_up(
        bootstrap, "plantwatch-sink", [f"{prefix}.{t}" for t in SINK_TOPICS], timeout=180
    )


def webhook_rules(tmp_path: Path) -> Path:
    """The shipped rules, notifying a webhook at ``${HOOK}`` at once."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        default_rules_path().read_text("utf-8")
        + """
notifications:
  receivers:
    - name: hook
      webhook: {url: "${HOOK}/hook"}
  route: {receiver: hook, group_wait: 0s, group_interval: 1s}
""",
        "utf-8",
    )
    return path


def test_run_through_kafka_accounts_for_every_reading(kafka: KafkaCluster, tmp_path: Path) -> None:
    hook = HttpCapture()
    s = run_summary(
        tmp_path / "data",
        "--bus",
        f"kafka://{kafka.bootstrap}",
        "--machines",
        "10",
        "--duration",
        "1200",
        "--speed",
        "max",
        "--seed",
        "5",
        "--rules",
        str(webhook_rules(tmp_path)),
        env=env_for(unique_prefix(), HOOK=hook.url),
        timeout=300,
    )
    hook.close()
    dead = sum(s["dead_letters"].values())
    assert s["accounting_ok"] is True
    assert s["readings_generated"] == s["readings_stored"] + s["duplicates_dropped"] + dead
    assert s["duplicates_dropped"] > 0 and dead > 0
    assert s["detection"]["sensor_fault_kinds_detected"] == ["dropout", "glitch", "stuck"]
    assert s["detection"]["machine_faults_detected"] >= 0.8 * s["detection"]["machine_faults"]
    (row,) = query(
        tmp_path / "data",
        "SELECT count() AS n, uniqExact(machine_id, sensor_id, seq) AS k FROM plantwatch.readings",
    )
    assert row["n"] == row["k"] == s["readings_stored"]
    # alarms and notifications come from the alert events the sink stored
    (alarms,) = query(
        tmp_path / "data",
        "SELECT countIf(event = 'created') AS created FROM plantwatch.alarm_events",
    )
    assert alarms["created"] == s["alerts_fired"] > 0
    posts = [r for r in hook.requests if r.path == "/hook"]
    assert len(posts) == s["alarms"]["notifications_sent"] > 0


def test_broker_away_for_twenty_seconds_loses_nothing(kafka: KafkaCluster, tmp_path: Path) -> None:
    prefix = unique_prefix()
    env = env_for(prefix)
    bus = f"kafka://{kafka.bootstrap}"
    worker = start_role("process", "--bus", bus, env=env, log=tmp_path / "process.log")
    sink = start_role(
        "sink",
        "--bus",
        bus,
        "--data-dir",
        str(tmp_path / "store"),
        env=env,
        log=tmp_path / "sink.log",
    )
    devices = simulate(bus, env, tmp_path, machines=8, speed=30, duration=45)
    try:
        time.sleep(10)
        assert devices.poll() is None
        assert kafka.stop_node(1)
        time.sleep(20)  # the SDK keeps spooling; worker and sink wait
        assert devices.poll() is None, "the devices must outlive the outage"
        kafka.start_node(1)
        assert devices.wait(timeout=240) == 0, (tmp_path / "simulate.log").read_text()[-3000:]
        result = json.loads((tmp_path / "simulate.log").read_text().strip().splitlines()[-1])
        assert result["drained"] is True
        settle(kafka.bootstrap, prefix)
    finally:
        for p in (devices, worker, sink):
            stop_role(p)
    accepted = recover_sequences(tmp_path / "devices" / "spool")
    assert sum(accepted.values()) > 5000
    stored_exactly_once(tmp_path / "store", accepted)
    assert order_violations(read_topic(kafka.bootstrap, f"{prefix}.readings.raw")) == []


def test_worker_and_sink_killed_mid_batch_lose_nothing(kafka: KafkaCluster, tmp_path: Path) -> None:
    prefix = unique_prefix()
    env = env_for(prefix)
    bus = f"kafka://{kafka.bootstrap}"
    store = tmp_path / "store"

    def worker(n: int) -> object:
        return start_role("process", "--bus", bus, env=env, log=tmp_path / f"process-{n}.log")

    def sink(n: int) -> object:
        return start_role(
            "sink", "--bus", bus, "--data-dir", str(store), env=env, log=tmp_path / f"sink-{n}.log"
        )

    w, s = worker(1), sink(1)
    devices = simulate(bus, env, tmp_path, machines=10, speed=40, duration=30)
    try:
        time.sleep(10)
        w.kill()  # type: ignore[attr-defined]  # SIGKILL mid-batch: no flush, no commit
        w.wait()  # type: ignore[attr-defined]
        w = worker(2)
        time.sleep(8)
        s.kill()  # type: ignore[attr-defined]
        s.wait()  # type: ignore[attr-defined]
        s = sink(2)
        assert devices.wait(timeout=240) == 0
        settle(kafka.bootstrap, prefix)
    finally:
        for p in (devices, w, s):
            stop_role(p)  # type: ignore[arg-type]
    accepted = recover_sequences(tmp_path / "devices" / "spool")
    stored_exactly_once(store, accepted)
    # the restarted sink knew from the store what the killed one had written
    known = re.search(r"sink: (\d+) sensors already stored", (tmp_path / "sink-2.log").read_text())
    assert known is not None and int(known.group(1)) > 0


def test_malformed_messages_go_to_the_dead_letter_topic_and_the_worker_goes_on(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    topics = Topics(prefix)
    bus = KafkaBus(kafka.bootstrap, KafkaSettings())
    bus.ensure_topics(topic_specs(topics, KafkaSettings(partitions=3)))
    bus.close()
    worker = start_role(
        "process",
        "--bus",
        f"kafka://{kafka.bootstrap}",
        env=env_for(prefix),
        log=tmp_path / "process.log",
    )
    now = int(time.time() * 1000)

    def reading(**over: object) -> dict[str, object]:
        base: dict[str, object] = {
            "machine_id": "m1",
            "sensor_id": "s1",
            "kind": "temperature",
            "value": 21.5,
            "unit": "°C",
            "ts": now,
            "seq": 1,
        }
        base.update(over)
        return {k: v for k, v in base.items() if v is not None}

    cases: list[tuple[str, bytes, str]] = [
        ("not JSON", b"{this is not json", "malformed"),
        ("wrong types", json.dumps(reading(seq=2, value="warm")).encode(), "malformed"),
        ("missing fields", json.dumps(reading(seq=3, unit=None)).encode(), "missing_field"),
        (
            "NaN",
            b'{"machine_id":"m1","sensor_id":"s1","kind":"temperature","value":NaN,'
            b'"unit":"\\u00b0C","ts":%d,"seq":4}' % now,
            "non_finite_value",
        ),
        (
            "unknown schema version",
            json.dumps(reading(seq=5, schema_version=9)).encode(),
            "unsupported_schema_version",
        ),
    ]
    bus = KafkaBus(kafka.bootstrap, KafkaSettings())
    try:
        for _, payload, _ in cases:
            bus.publish(topics.raw, payload, key=b"m1", headers={"content-type": codec.NDJSON})
        blob = bytes(range(256)) * (5 * 1024 * 1024 // 256)  # 5 MB of something that is not Arrow
        bus.publish(topics.raw, blob, key=b"m1", headers={"content-type": codec.ARROW})
        good = json.dumps(reading(seq=6, value=22.0)).encode()
        bus.publish(topics.raw, good, key=b"m1", headers={"content-type": codec.NDJSON})
        assert bus.flush(30) == 0
        wait_caught_up(kafka.bootstrap, "plantwatch-stream", [topics.raw], timeout=120)
    finally:
        bus.close()
        assert worker.poll() is None, "the worker must keep running"
        stop_role(worker)
    dead = read_topic(kafka.bootstrap, topics.dead_letters)
    reasons = sorted({k: v.decode() for k, v in m.headers()}["reason"] for m in dead)
    assert reasons == sorted([c[2] for c in cases] + ["malformed"])
    whole = [m for m in dead if len(m.value()) == len(blob)]
    assert len(whole) == 1 and whole[0].value() == blob  # kept byte for byte
    clean = read_topic(kafka.bootstrap, topics.clean)
    rows = pa.concat_tables([codec.decode_table(m.value()) for m in clean])
    assert rows.column("seq").to_pylist() == [6]
    assert rows.column("value").to_pylist() == [22.0]


def test_two_workers_share_the_partitions_and_one_takes_over(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    env = {**env_for(prefix), "PLANTWATCH_LOG__DIR": str(tmp_path / "logs")}
    bus = f"kafka://{kafka.bootstrap}"
    store = tmp_path / "store"
    a = start_role("process", "--bus", bus, "--instance", "a", env=env, log=tmp_path / "a.log")
    b = start_role("process", "--bus", bus, "--instance", "b", env=env, log=tmp_path / "b.log")
    sink = start_role(
        "sink", "--bus", bus, "--data-dir", str(store), env=env, log=tmp_path / "sink.log"
    )
    devices = simulate(bus, env, tmp_path, machines=12, speed=30, duration=35)
    try:
        wait_for(
            lambda: (
                "readings.raw'" in (tmp_path / "a.log").read_text()
                and "readings.raw'" in (tmp_path / "b.log").read_text()
            ),
            timeout=60,
            what="both workers",
        )
        time.sleep(12)
        assert stop_role(a) == 0  # a leaves the group; b gets its partitions
        assert devices.wait(timeout=240) == 0
        settle(kafka.bootstrap, prefix)
    finally:
        for p in (devices, b, sink):
            stop_role(p)
    got_a = json.loads((tmp_path / "a.log").read_text().strip().splitlines()[-1])
    got_b = json.loads((tmp_path / "b.log").read_text().strip().splitlines()[-1])
    assert got_a["received"] > 0 and got_b["received"] > 0  # both had partitions
    # after a left, b held every partition of the raw topic
    held = [
        set(re.findall(r"readings\.raw', (\d+)\)", line))
        for line in (tmp_path / "b.log").read_text().splitlines()
        if "plantwatch-stream: assigned" in line
    ]
    assert held and held[-1] == {"0", "1", "2"}
    stored_exactly_once(store, recover_sequences(tmp_path / "devices" / "spool"))
    # each worker sampled its consumer lag through the metrics topic; the sink its own
    lag = {
        r["component"]: r
        for r in query(
            store,
            "SELECT component, uniqExact(member) AS members, count() AS samples, "
            "argMax(lag, ts) AS last FROM plantwatch.pipeline_metrics GROUP BY component",
        )
    }
    assert set(lag) == {"worker", "sink"}
    assert lag["worker"]["members"] == 2 and lag["worker"]["samples"] >= 4
    assert lag["sink"]["members"] == 1 and lag["sink"]["samples"] >= 2
    # each process wrote its own ECS log file, named by its role and instance
    for name in ("a", "b"):
        lines = (tmp_path / "logs" / f"plantwatch-process-{name}.ndjson").read_text().splitlines()
        docs = [json.loads(x) for x in lines]
        assert {d["service.name"] for d in docs} == {"plantwatch-process"}
        assert any("assigned" in d["message"] for d in docs)
    assert (tmp_path / "logs" / "plantwatch-sink.ndjson").stat().st_size > 0


@pytest.fixture(scope="module")
def three_brokers(tmp_path_factory: pytest.TempPathFactory) -> object:
    with running_cluster(tmp_path_factory.mktemp("kafka3"), brokers=3) as cluster:
        yield cluster


def test_three_brokers_survive_one_killed(three_brokers: KafkaCluster, tmp_path: Path) -> None:
    cluster = three_brokers
    prefix = unique_prefix()
    env = env_for(
        prefix, PLANTWATCH_KAFKA__REPLICATION_FACTOR="3", PLANTWATCH_KAFKA__MIN_INSYNC_REPLICAS="2"
    )
    bus = f"kafka://{cluster.bootstrap}"
    store = tmp_path / "store"
    worker = start_role("process", "--bus", bus, env=env, log=tmp_path / "process.log")
    sink = start_role(
        "sink", "--bus", bus, "--data-dir", str(store), env=env, log=tmp_path / "sink.log"
    )
    devices = simulate(bus, env, tmp_path, machines=8, speed=30, duration=30)
    try:
        time.sleep(10)
        cluster.kill_node(2)  # SIGKILL: two in-sync replicas are left, writes go on
        assert devices.wait(timeout=240) == 0, (tmp_path / "simulate.log").read_text()[-3000:]
        settle(cluster.bootstrap, prefix)
    finally:
        for p in (devices, worker, sink):
            stop_role(p)
        cluster.start_node(2)
    accepted = recover_sequences(tmp_path / "devices" / "spool")
    assert sum(accepted.values()) > 3000
    stored_exactly_once(store, accepted)


def test_services_kafka_command_starts_reports_and_stops(tmp_path: Path) -> None:
    from kafka_support import free_port_block
    from plantwatch_cli import plantwatch

    folder, port = tmp_path / "kafka", str(free_port_block(1))
    started = plantwatch("services", "kafka", "start", "--dir", str(folder), "--port", port)
    try:
        assert f"kafka://127.0.0.1:{port}" in started.stdout
        status = plantwatch("services", "kafka", "status", "--dir", str(folder))
        assert "answering, brokers [1]" in status.stdout
        assert "node 1: running" in status.stdout
    finally:
        stopped = plantwatch("services", "kafka", "stop", "--dir", str(folder))
    assert "stopped nodes [1]" in stopped.stdout
    after = plantwatch("services", "kafka", "status", "--dir", str(folder), check=False)
    assert after.returncode == 1


def test_the_sink_runs_alarms_and_notifications_and_answers_the_cli(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    hook = HttpCapture()
    env = env_for(prefix, HOOK=hook.url, PLANTWATCH_RULES_FILE=str(webhook_rules(tmp_path)))
    bus = f"kafka://{kafka.bootstrap}"
    store = tmp_path / "store"
    worker = start_role("process", "--bus", bus, env=env, log=tmp_path / "process.log")
    sink = start_role(
        "sink", "--bus", bus, "--data-dir", str(store), env=env, log=tmp_path / "sink.log"
    )
    devices = simulate(bus, env, tmp_path, machines=8, speed=60, duration=30)
    try:
        listed: list[dict[str, Any]] = []

        def an_alarm() -> bool:
            out = plantwatch("alarms", "list", "--json", "--data-dir", str(store), env=env)
            listed[:] = json.loads(out.stdout)
            return bool(listed)

        wait_for(an_alarm, timeout=180, what="an alarm listed by the running sink")
        ack = plantwatch(
            "alarms", "ack", listed[0]["alarm_id"], "--user", "ana", "--data-dir", str(store),
            env=env,
        )  # fmt: skip
        assert json.loads(ack.stdout)["via"] == "running plant"
        assert devices.wait(timeout=240) == 0
        settle(kafka.bootstrap, prefix)
    finally:
        for p in (devices, worker, sink):
            stop_role(p)
        hook.close()
    posts = [r.json() for r in hook.requests if r.path == "/hook"]
    assert posts and all(b["version"] == "4" for b in posts)
    (row,) = query(
        store,
        f"SELECT ack, acknowledged_by FROM plantwatch.alarms "
        f"WHERE alarm_id = '{listed[0]['alarm_id']}'",
    )
    assert (row["ack"], row["acknowledged_by"]) == ("ACK", "ana")
