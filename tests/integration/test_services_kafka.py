"""Real Kafka 4 (KRaft) brokers started by ``plantwatch.services.kafka``: one node and three.

The jars are fetched once per machine into the repository's ``.cache/`` (where the CLI caches
them). Every cluster gets its own folder and free loopback ports; topics and groups are unique.
A missing Java or Maven fails the run with the command that installs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from plantwatch.services import (
    KAFKA_VERSION,
    JarFetchError,
    KafkaCluster,
    KafkaConfig,
    PortInUseError,
    ServiceConfigError,
    ToolMissingError,
    kafka,
)
from plantwatch.services._tools import MARKER, fetch_jars, find_java

from kafka_support import REPO_CACHE, free_port_block

pytestmark = pytest.mark.slow


# -- helpers ------------------------------------------------------------------------------------


def java_pids_of(folder: Path) -> list[int]:
    """Every java process whose command line mentions ``folder`` (a cluster's DIR)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            args
            and Path(args[0].decode()).name == "java"
            and str(folder).encode() in b" ".join(args)
        ):
            found.append(int(proc.name))
    return found


def create_topic(bootstrap: str, replicas: int, config: dict[str, str] | None = None) -> str:
    topic = f"t-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, 1, replicas, config=config or {})])
    futures[topic].result(30)
    return topic


def produce(bootstrap: str, topic: str, value: bytes, *, timeout_s: float = 60.0) -> None:
    """Produce one message with acks=all and fail unless it was delivered."""
    outcome: list[KafkaError | None] = []
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": int(timeout_s * 1000)}
    )
    producer.produce(topic, value, on_delivery=lambda err, _msg: outcome.append(err))
    assert producer.flush(timeout_s + 5) == 0, "message still queued"
    assert outcome == [None], f"delivery failed: {outcome}"


def consume_all(
    bootstrap: str, topic: str, expected: int, *, timeout_s: float = 30.0
) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            msg: Message | None = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            values.append(msg.value() or b"")
    finally:
        consumer.close()
    return values


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_cache() -> Path:
    """The repository's jar cache, fetched once if missing; missing tools fail the run."""
    try:
        find_java()
        fetch_jars(cache_dir=REPO_CACHE, version=KAFKA_VERSION)
    except ToolMissingError as exc:
        pytest.fail(f"Kafka integration tests need Java 17+ and Maven: {exc}")
    return REPO_CACHE


def _config(folder: Path, cache: Path, brokers: int) -> KafkaConfig:
    return KafkaConfig(dir=folder, cache_dir=cache, brokers=brokers, port=free_port_block(brokers))


@pytest.fixture(scope="module")
def one_node(kafka_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    cluster = KafkaCluster(_config(tmp_path_factory.mktemp("kafka1"), kafka_cache, 1))
    cluster.start()
    yield cluster
    cluster.stop()


# -- one node -----------------------------------------------------------------------------------


def test_one_node_answers_and_round_trips_a_message(one_node: KafkaCluster) -> None:
    status = one_node.status()
    assert status.healthy, status.describe()
    assert status.brokers == (1,)
    [node] = status.nodes
    assert node.alive and node.pid is not None and node.pid in java_pids_of(one_node.config.dir)
    assert one_node.bootstrap == f"127.0.0.1:{one_node.config.port}"
    assert "Kafka Server started" in one_node.log_path(1).read_text()
    topic = create_topic(one_node.bootstrap, 1)
    produce(one_node.bootstrap, topic, b"hello")
    assert consume_all(one_node.bootstrap, topic, 1) == [b"hello"]


def test_kafka_logs_through_log4j2_not_the_nop_logger(one_node: KafkaCluster) -> None:
    log = one_node.log_path(1).read_text()
    assert "NOP" not in log and "SLF4J" not in log
    assert " INFO [KafkaRaftServer nodeId=1] Kafka Server started" in log


def test_second_start_does_not_start_another_process(one_node: KafkaCluster) -> None:
    before = java_pids_of(one_node.config.dir)
    assert len(before) == 1
    again = KafkaCluster(one_node.config).start()  # a second caller, e.g. another CLI run
    assert again.healthy
    assert [n.pid for n in again.nodes] == before
    assert java_pids_of(one_node.config.dir) == before


def test_restart_keeps_data_and_cluster_id(one_node: KafkaCluster) -> None:
    folder = one_node.config.dir
    topic = create_topic(one_node.bootstrap, 1)
    produce(one_node.bootstrap, topic, b"kept")
    cluster_id = one_node.cluster_id

    assert kafka.stop(dir=folder) == (1,)  # the CLI's path: everything read from DIR
    assert java_pids_of(folder) == []
    stopped = kafka.status(dir=folder)
    assert not stopped.nodes[0].alive and not stopped.answering
    assert kafka.stop(dir=folder) == ()

    restarted = kafka.start(dir=folder, cache_dir=one_node.config.cache_dir)
    assert restarted.healthy and restarted.cluster_id == cluster_id
    assert consume_all(one_node.bootstrap, topic, 1) == [b"kept"]


def test_dir_of_one_node_refuses_another_layout(one_node: KafkaCluster) -> None:
    other = KafkaConfig(dir=one_node.config.dir, cache_dir=one_node.config.cache_dir, brokers=3)
    with pytest.raises(ServiceConfigError, match="--brokers 1"):
        KafkaCluster(other).start()


# -- three nodes --------------------------------------------------------------------------------


def test_three_nodes_survive_a_killed_broker_and_take_it_back(
    kafka_cache: Path, tmp_path: Path
) -> None:
    cluster = KafkaCluster(_config(tmp_path / "kafka3", kafka_cache, 3))
    try:
        status = cluster.start()
        assert status.healthy and status.brokers == (1, 2, 3), status.describe()
        p = cluster.config.port
        assert cluster.bootstrap == f"127.0.0.1:{p},127.0.0.1:{p + 1},127.0.0.1:{p + 2}"
        topic = create_topic(cluster.bootstrap, 3, {"min.insync.replicas": "2"})
        produce(cluster.bootstrap, topic, b"before")

        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        leader = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
        cluster.kill_node(leader, signal.SIGKILL)
        assert not cluster.status().nodes[leader - 1].alive
        assert len(java_pids_of(cluster.config.dir)) == 2
        produce(cluster.bootstrap, topic, b"during")  # acks=all with 2 of 3 in sync

        back = cluster.start_node(leader)
        assert back.healthy and back.brokers == (1, 2, 3), back.describe()
        assert len(java_pids_of(cluster.config.dir)) == 3
        assert consume_all(cluster.bootstrap, topic, 2) == [b"before", b"during"]

        other = leader % 3 + 1  # a planned outage of another broker
        assert cluster.stop_node(other) is True
        assert cluster.stop_node(other) is False
        assert [n.node for n in cluster.status().nodes if not n.alive] == [other]
        assert cluster.stop() == tuple(n for n in (1, 2, 3) if n != other)
    finally:
        cluster.stop()
    assert java_pids_of(cluster.config.dir) == []


# -- errors -------------------------------------------------------------------------------------


def test_port_in_use_is_named_with_its_process(kafka_cache: Path, tmp_path: Path) -> None:
    config = _config(tmp_path / "busy", kafka_cache, 1)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", config.port))
        squatter.listen()
        with pytest.raises(PortInUseError, match=f"port {config.port} ") as caught:
            KafkaCluster(config).start()
    assert caught.value.pid == os.getpid()
    assert java_pids_of(config.dir) == []


def test_stop_never_signals_a_process_that_is_not_its_node(tmp_path: Path) -> None:
    cluster = KafkaCluster(KafkaConfig(dir=tmp_path, cache_dir=tmp_path, port=free_port_block(1)))
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cluster.pid_path(1).write_text(f"{stranger.pid}\n")
        assert cluster.pid(1) is None
        assert cluster.stop() == ()
        assert stranger.poll() is None, "stop() signalled a foreign process"
    finally:
        stranger.kill()
        stranger.wait()


def test_missing_jar_cache_is_fetched_and_a_half_fetch_redone(
    kafka_cache: Path, tmp_path: Path
) -> None:
    libs = tmp_path / "kafka" / KAFKA_VERSION / "libs"
    libs.mkdir(parents=True)
    (libs / "half-written.jar").write_bytes(b"")  # an interrupted fetch: no marker
    (libs.parent / "libs.partial").mkdir()
    assert fetch_jars(cache_dir=tmp_path, version=KAFKA_VERSION) == libs
    jars = {p.name for p in libs.iterdir()}
    assert MARKER in jars and f"kafka_2.13-{KAFKA_VERSION}.jar" in jars
    assert "slf4j-api-2.0.17.jar" in jars and "half-written.jar" not in jars
    assert not (libs.parent / "libs.partial").exists()
    started = time.monotonic()
    fetch_jars(cache_dir=tmp_path, version=KAFKA_VERSION, mvn="no-maven-needed-now")
    assert time.monotonic() - started < 1.0


def test_maven_failure_shows_the_command_and_its_output(tmp_path: Path) -> None:
    with pytest.raises(JarFetchError, match="dependency:copy-dependencies") as caught:
        fetch_jars(cache_dir=tmp_path, version="0.0.0-no-such-kafka")
    assert "0.0.0-no-such-kafka" in caught.value.output_tail
    assert not (tmp_path / "kafka" / "0.0.0-no-such-kafka" / "libs").exists()


def test_missing_tools_say_how_to_install_them(tmp_path: Path) -> None:
    with pytest.raises(ToolMissingError, match="apt-get install -y maven"):
        fetch_jars(cache_dir=tmp_path, version=KAFKA_VERSION, mvn="plantwatch-no-such-mvn")
    with pytest.raises(ToolMissingError, match="openjdk-17"):
        find_java(tmp_path)


def test_unsupported_layouts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ServiceConfigError, match="--brokers 1 or --brokers 3"):
        KafkaConfig(dir=tmp_path, cache_dir=tmp_path, brokers=2)
    with pytest.raises(ServiceConfigError, match="another --port"):
        KafkaConfig(dir=tmp_path, cache_dir=tmp_path, brokers=3, port=9092, controller_port=9093)
