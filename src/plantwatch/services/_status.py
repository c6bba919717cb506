"""What a cluster looks like from outside: node processes, and the metadata clients get.

``confluent_kafka`` is imported when a status is taken, not when plantwatch is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plantwatch.services.errors import ServiceError

STARTED_LINE = b"Kafka Server started"


@dataclass(frozen=True, kw_only=True)
class NodeStatus:
    """One node: its process (verified through /proc) and its ports."""

    node: int
    pid: int | None
    alive: bool
    port: int
    controller_port: int
    log: Path


@dataclass(frozen=True, kw_only=True)
class ClusterStatus:
    """The nodes of one ``DIR`` and the answer of a metadata request to ``bootstrap``."""

    dir: Path
    cluster_id: str | None
    bootstrap: str
    nodes: tuple[NodeStatus, ...]
    answering: bool  # a metadata request succeeded
    brokers: tuple[int, ...]  # broker ids in that metadata
    controller_id: int | None

    @property
    def running(self) -> bool:
        """Every node has a live process."""
        return all(node.alive for node in self.nodes)

    @property
    def serving(self) -> bool:
        """The cluster answers, a controller is known and every live node is in the metadata."""
        alive = {node.node for node in self.nodes if node.alive}
        elected = self.controller_id is not None and self.controller_id >= 0
        return self.answering and elected and alive <= set(self.brokers)

    @property
    def healthy(self) -> bool:
        """Every node runs and serves."""
        return self.running and self.serving

    def describe(self) -> str:
        """A few lines for people: the cluster, then one line per node."""
        if self.answering:
            state = f"answering, brokers {list(self.brokers)}, controller {self.controller_id}"
        else:
            state = "not answering"
        lines = [f"Kafka cluster {self.cluster_id} in {self.dir}: {state}"]
        lines.append(f"  bootstrap {self.bootstrap}")
        for n in self.nodes:
            pid = f"pid {n.pid}" if n.pid is not None else "no process"
            lines.append(
                f"  node {n.node}: {'running' if n.alive else 'stopped'} ({pid}), port {n.port}, "
                f"controller port {n.controller_port}, log {n.log}"
            )
        return "\n".join(lines)


def metadata(bootstrap: str, timeout_s: float) -> tuple[tuple[int, ...], int] | None:
    """(broker ids, controller id) from a metadata request, or None when nobody answers."""
    try:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
    except ImportError as exc:
        raise ServiceError(
            "checking Kafka needs confluent-kafka: pip install confluent-kafka"
        ) from exc
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        answer = admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return None
    return tuple(sorted(answer.brokers)), int(answer.controller_id)


def log_says_started(log: Path, offset: int) -> tuple[bool, int]:
    """Did the node log that its server started after ``offset``? And where to look next."""
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return False, offset
    if STARTED_LINE in data:
        return True, offset + len(data)
    return False, offset + max(0, len(data) - len(STARTED_LINE))
