"""A real Apache Kafka 4 (KRaft) broker, or a 3-node cluster, on 127.0.0.1 without Docker.

The jars come from Maven Central once (``<cache_dir>/kafka/<version>/libs``); each node is a
combined broker+controller JVM. A cluster lives in one folder ``DIR``::

    DIR/cluster.json            cluster id and layout (brokers, ports), written on first start
    DIR/log4j2.properties       logging to stdout (shipped in assets/kafka/)
    DIR/node-N/server.properties, DIR/node-N/data/
    DIR/node-N.log              the node's stdout and stderr, appended on every start
    DIR/node-N.pid

Starting a formatted ``DIR`` again reuses its data and cluster id. Stopping signals only pids
whose ``/proc/<pid>/cmdline`` is java with this ``DIR``'s ``server.properties``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantwatch.services import _proc
from plantwatch.services._kraft import (
    CONTROLLER_PORT_OFFSET,
    STATE_FILE,
    SUPPORTED_BROKERS,
    Layout,
    format_command,
    format_storage,
    new_cluster_id,
    read_state,
    server_command,
    server_properties,
    write_state,
)
from plantwatch.services._status import ClusterStatus, NodeStatus, log_says_started, metadata
from plantwatch.services._tools import asset_text, fetch_jars, find_java
from plantwatch.services.errors import (
    NoClusterError,
    ServiceConfigError,
    ServiceError,
    ServiceStartError,
    ServiceStopError,
)

KAFKA_VERSION = "4.4.0"
DEFAULT_PORT = 9092
JVM_OPTIONS = ("-Xmx512m", "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true")
_LAYOUT_KEYS = ("brokers", "port", "controller_port")


@dataclass(frozen=True, kw_only=True)
class KafkaConfig:
    """Where a cluster lives, its size and ports, and how long to wait for it."""

    dir: Path
    cache_dir: Path
    brokers: int = 1
    port: int = DEFAULT_PORT
    controller_port: int | None = None  # first controller port; None: port + 100
    version: str = KAFKA_VERSION
    jvm_options: tuple[str, ...] = JVM_OPTIONS
    java_home: Path | None = None  # None: $JAVA_HOME, else java on PATH
    mvn: str = "mvn"
    start_timeout_s: float = 120.0
    stop_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.brokers not in SUPPORTED_BROKERS:
            raise ServiceConfigError(
                f"brokers={self.brokers!r}: plantwatch runs one node or a 3-node cluster; "
                "use --brokers 1 or --brokers 3"
            )
        ports = [p for n in self.layout.nodes for p in self.layout.ports(n)]
        if any(not 1 <= p <= 65535 for p in ports) or len(set(ports)) != len(ports):
            raise ServiceConfigError(
                f"ports {sorted(ports)} (port={self.port}, controller_port="
                f"{self.controller_port}) are out of range or overlap: choose another --port"
            )
        object.__setattr__(self, "dir", Path(self.dir).resolve())
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).resolve())

    @property
    def layout(self) -> Layout:
        first = self.controller_port
        quorum = self.port + CONTROLLER_PORT_OFFSET if first is None else first
        return Layout(brokers=self.brokers, port=self.port, controller_port=quorum)


class KafkaCluster:
    """Start, inspect and stop the Kafka nodes of one ``DIR``."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._layout = config.layout
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @classmethod
    def from_dir(cls, dir: Path, *, cache_dir: Path | None = None) -> KafkaCluster:
        """The cluster an earlier ``start`` recorded in ``dir`` (its size, ports and cache)."""
        state = read_state(Path(dir))
        if state is None:
            raise NoClusterError(
                f"no Kafka cluster in {dir} (no {STATE_FILE}): start one with "
                f"`plantwatch services kafka start --dir {dir}`"
            )
        layout = {key: state[key] for key in _LAYOUT_KEYS}
        cache = cache_dir or Path(state["cache_dir"])
        return cls(KafkaConfig(dir=dir, cache_dir=cache, version=state["version"], **layout))

    @property
    def config(self) -> KafkaConfig:
        return self._config

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:P,127.0.0.1:P+1,...`` for clients."""
        return self._layout.bootstrap

    @property
    def nodes(self) -> tuple[int, ...]:
        return self._layout.nodes

    @property
    def cluster_id(self) -> str | None:
        state = read_state(self._config.dir)
        return None if state is None else str(state["cluster_id"])

    def node_dir(self, node: int) -> Path:
        return self._config.dir / f"node-{node}"

    def properties_path(self, node: int) -> Path:
        return self.node_dir(node) / "server.properties"

    def log_path(self, node: int) -> Path:
        return self._config.dir / f"node-{node}.log"

    def pid_path(self, node: int) -> Path:
        return self._config.dir / f"node-{node}.pid"

    def pid(self, node: int) -> int | None:
        """The pid of ``node`` while it runs (verified through /proc), else None."""
        child = self._children.get(node)
        if child is not None:
            if child.poll() is None:
                return child.pid  # our child: /proc may not show java yet while it execs
            del self._children[node]  # reaped: no zombie left behind
        pid = _proc.read_pid(self.pid_path(node))
        if pid is not None and _proc.is_java_with(pid, self.properties_path(node)):
            return pid
        return None

    def fetch_jars(self) -> Path:
        """The folder of Kafka jars, fetched with Maven when missing or incomplete."""
        c = self._config
        return fetch_jars(cache_dir=c.cache_dir, version=c.version, mvn=c.mvn)

    def start(self, *, timeout_s: float | None = None) -> ClusterStatus:
        """Start the nodes that are not running and wait until the cluster answers.

        A running cluster is left alone (its status is returned). Raises
        :class:`PortInUseError` before starting anything when a port is taken, and
        :class:`ServiceStartError` (naming the log) when a node dies or the cluster does not
        answer in time; the nodes this call started are then stopped again.
        """
        return self._start(self.nodes, timeout_s)

    def start_node(self, node: int, *, timeout_s: float | None = None) -> ClusterStatus:
        """Start one node again with its data, and wait until it is back in the cluster."""
        return self._start((self._known(node),), timeout_s)

    def stop(self, *, timeout_s: float | None = None) -> tuple[int, ...]:
        """SIGTERM every node, SIGKILL those alive after the timeout; the nodes that ran."""
        with _proc.locked(self._config.dir / ".lock"):
            return self._terminate(self.nodes, timeout_s)

    def stop_node(self, node: int, *, timeout_s: float | None = None) -> bool:
        """Stop one node like :meth:`stop`; False when it was not running."""
        with _proc.locked(self._config.dir / ".lock"):
            return bool(self._terminate((self._known(node),), timeout_s))

    def kill_node(
        self, node: int, sig: int = signal.SIGKILL, *, wait: bool = True, timeout_s: float = 30.0
    ) -> None:
        """Send ``sig`` to one running node (SIGKILL: a crash); wait for it to exit if asked."""
        pid = self.pid(self._known(node))
        if pid is None:
            raise ServiceError(f"node {node} in {self._config.dir} is not running; nothing to kill")
        _proc.send(pid, sig)
        if wait and not self._gone(node, pid, timeout_s):
            raise ServiceStopError(f"node {node} (pid {pid}) still runs {timeout_s}s after {sig!r}")

    def status(self, *, timeout_s: float = 2.0) -> ClusterStatus:
        """Per node pid and liveness, and whether the cluster answers a metadata request."""
        nodes = tuple(
            NodeStatus(
                node=n,
                pid=(pid := self.pid(n)),
                alive=pid is not None,
                port=self._layout.client_port(n),
                controller_port=self._layout.quorum_port(n),
                log=self.log_path(n),
            )
            for n in self.nodes
        )
        answer = metadata(self.bootstrap, timeout_s) if any(n.alive for n in nodes) else None
        return ClusterStatus(
            dir=self._config.dir,
            cluster_id=self.cluster_id,
            bootstrap=self.bootstrap,
            nodes=nodes,
            answering=answer is not None,
            brokers=answer[0] if answer else (),
            controller_id=answer[1] if answer else None,
        )

    # -- starting ---------------------------------------------------------------------------

    def _known(self, node: int) -> int:
        if node not in self.nodes:
            raise ServiceConfigError(f"node {node}: this cluster has nodes {list(self.nodes)}")
        return node

    def _start(self, wanted: tuple[int, ...], timeout_s: float | None) -> ClusterStatus:
        timeout = self._config.start_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        with _proc.locked(self._config.dir / ".lock"):
            state = self._checked_state()
            missing = [n for n in wanted if self.pid(n) is None]
            if not missing:
                return self._wait_ready({}, deadline, timeout)
            _proc.check_ports({p: r for n in missing for p, r in self._layout.ports(n).items()})
            java = find_java(self._config.java_home)
            libs = self.fetch_jars()
            cluster_id = new_cluster_id() if state is None else str(state["cluster_id"])
            write_state(
                self._config.dir,
                self._layout,
                cluster_id=cluster_id,
                version=self._config.version,
                cache_dir=str(self._config.cache_dir),
            )
            jvm = self._prepare(java, libs, cluster_id)
            offsets: dict[int, int] = {}
            try:
                for n in missing:
                    command = server_command(java, jvm, libs, self.properties_path(n))
                    offsets[n] = self._spawn(n, command)
                return self._wait_ready(offsets, deadline, timeout)
            except BaseException:  # a failed or interrupted start leaves no half cluster behind
                self._terminate(tuple(offsets), 10.0)
                raise

    def _checked_state(self) -> dict[str, Any] | None:
        state = read_state(self._config.dir)
        if state is None:
            return None
        layout = self._layout
        wanted = (layout.brokers, layout.port, layout.controller_port)
        brokers, port, quorum = (state.get(key) for key in _LAYOUT_KEYS)
        if (brokers, port, quorum) != wanted:
            raise ServiceConfigError(
                f"{self._config.dir} holds a cluster with brokers={brokers}, port={port} "
                f"(controller ports from {quorum}): start it with --brokers {brokers} "
                f"--port {port}, or use another --dir for brokers={layout.brokers} "
                f"port={layout.port}"
            )
        return state

    def _prepare(self, java: Path, libs: Path, cluster_id: str) -> list[str]:
        """Write the configuration files and format the nodes that have no data yet."""
        log_config = self._config.dir / "log4j2.properties"
        log_config.write_text(asset_text("log4j2.properties"), encoding="utf-8")
        jvm = [*self._config.jvm_options, f"-Dlog4j2.configurationFile={log_config}"]
        formats: dict[int, list[str]] = {}
        for n in self.nodes:
            data = self.node_dir(n) / "data"
            data.mkdir(parents=True, exist_ok=True)
            props = self.properties_path(n)
            props.write_text(server_properties(self._layout, n, data), encoding="utf-8")
            if not (data / "meta.properties").exists():
                formats[n] = format_command(java, jvm, libs, cluster_id, props)
        format_storage(formats, self._config.dir)
        return jvm

    def _spawn(self, node: int, command: list[str]) -> int:
        """Start one node with its output appended to its log; the log offset of this start."""
        self._children[node], offset = _proc.spawn_logged(
            command,
            log=self.log_path(node),
            pid_file=self.pid_path(node),
            cwd=self.node_dir(node),
            title=f"node {node}",
        )
        return offset

    def _wait_ready(
        self, offsets: dict[int, int], deadline: float, timeout: float
    ) -> ClusterStatus:
        """Until every started node logged its start and the metadata lists every live node."""
        pending = dict(offsets)
        status: ClusterStatus | None = None
        while True:
            for node in list(pending):
                log = self.log_path(node)
                if self.pid(node) is None:
                    raise ServiceStartError(
                        f"Kafka node {node} in {self._config.dir} exited while starting",
                        log=log,
                        log_tail=_proc.tail(log, start=offsets[node]),
                    )
                started, pending[node] = log_says_started(log, pending[node])
                if started:
                    del pending[node]
            if not pending:
                status = self.status(timeout_s=1.0)
                if status.serving:
                    return status
            if time.monotonic() >= deadline:
                node = next(iter(pending), self.nodes[0])
                seen = f"brokers in metadata {list(status.brokers)}" if status else "still starting"
                raise ServiceStartError(
                    f"the Kafka cluster in {self._config.dir} did not answer at {self.bootstrap} "
                    f"within {timeout:.0f}s ({seen}); the nodes started now are stopped again",
                    log=self.log_path(node),
                    log_tail=_proc.tail(self.log_path(node), start=offsets.get(node, 0)),
                )
            time.sleep(0.2)

    # -- stopping ---------------------------------------------------------------------------

    def _gone(self, node: int, pid: int, timeout_s: float) -> bool:
        child = self._children.get(node)
        return _proc.wait_gone(pid, self.properties_path(node), timeout_s, child)

    def _terminate(self, nodes: tuple[int, ...], timeout_s: float | None) -> tuple[int, ...]:
        timeout = self._config.stop_timeout_s if timeout_s is None else timeout_s
        running = {n: pid for n in nodes if (pid := self.pid(n)) is not None}
        for pid in running.values():
            _proc.send(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n, pid in running.items():
            if not self._gone(n, pid, max(0.0, deadline - time.monotonic())):
                _proc.send(pid, signal.SIGKILL)
                if not self._gone(n, pid, 10.0):
                    raise ServiceStopError(f"node {n} (pid {pid}) survived SIGKILL")
        for n in nodes:
            self._children.pop(n, None)
            self.pid_path(n).unlink(missing_ok=True)
        return tuple(sorted(running))


def open_cluster(
    *, dir: Path, cache_dir: Path, brokers: int | None = None, port: int | None = None
) -> KafkaCluster:
    """The cluster of ``dir``: options left None come from an earlier start, else defaults."""
    state = read_state(Path(dir)) or {}
    return KafkaCluster(
        KafkaConfig(
            dir=dir,
            cache_dir=cache_dir,
            brokers=state.get("brokers", 1) if brokers is None else brokers,
            port=state.get("port", DEFAULT_PORT) if port is None else port,
            controller_port=state.get("controller_port") if port is None else None,
        )
    )


def start(
    *,
    dir: Path,
    cache_dir: Path,
    brokers: int | None = None,
    port: int | None = None,
    timeout_s: float | None = None,
) -> ClusterStatus:
    """``plantwatch services kafka start``: start the cluster of ``dir`` (or find it running)."""
    cluster = open_cluster(dir=dir, cache_dir=cache_dir, brokers=brokers, port=port)
    return cluster.start(timeout_s=timeout_s)


def stop(*, dir: Path, timeout_s: float | None = None) -> tuple[int, ...]:
    """``plantwatch services kafka stop``: the nodes stopped (none when nothing ran in ``dir``)."""
    if read_state(Path(dir)) is None:
        return ()
    return KafkaCluster.from_dir(dir).stop(timeout_s=timeout_s)


def status(*, dir: Path) -> ClusterStatus:
    """``plantwatch services kafka status``; raises :class:`NoClusterError` for an empty ``dir``."""
    return KafkaCluster.from_dir(dir).status()
