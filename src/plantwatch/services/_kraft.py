"""KRaft node configuration: ``server.properties`` of combined broker+controller nodes.

Every node is a broker and a voter of a static quorum (``controller.quorum.voters``), listening
on 127.0.0.1 only. With three nodes the internal topics are replicated three times and need two
in-sync replicas, so one node may be down (killed, restarted) without losing writes.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantwatch.services.errors import NoClusterError, ServiceStartError

SUPPORTED_BROKERS = (1, 3)
STATE_FILE = "cluster.json"
CONTROLLER_PORT_OFFSET = 100


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding (as ``kafka-storage random-uuid``)."""
    # Never one that starts with "-": kafka-storage would read it as an option (and Kafka's own
    # Uuid.randomUuid() avoids them for the same reason).
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True, kw_only=True)
class Layout:
    """How many combined nodes; their client ports and their controller ports."""

    brokers: int
    port: int
    controller_port: int

    def client_port(self, node: int) -> int:
        return self.port + node - 1

    def quorum_port(self, node: int) -> int:
        return self.controller_port + node - 1

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(range(1, self.brokers + 1))

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.client_port(n)}" for n in self.nodes)

    @property
    def voters(self) -> str:
        return ",".join(f"{n}@127.0.0.1:{self.quorum_port(n)}" for n in self.nodes)

    def ports(self, node: int) -> dict[int, str]:
        """The ports ``node`` binds, each with its role (for messages)."""
        return {
            self.client_port(node): f"client port of node {node}",
            self.quorum_port(node): f"controller port of node {node}",
        }


def server_properties(layout: Layout, node: int, data_dir: Path) -> str:
    """The ``server.properties`` of ``node`` (1-based) in ``layout``."""
    replicas = min(layout.brokers, 3)
    min_isr = max(1, replicas - 1)
    client, quorum = layout.client_port(node), layout.quorum_port(node)
    settings = {
        "process.roles": "broker,controller",
        "node.id": node,
        "controller.quorum.voters": layout.voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{quorum}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{client}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": data_dir,
        "num.partitions": 1,
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": 0,
    }
    head = (
        f"# Written by plantwatch for node {node} of {layout.brokers}; rewritten on every start.\n"
    )
    return head + "".join(f"{key}={value}\n" for key, value in settings.items())


def format_command(
    java: Path, jvm: list[str], libs: Path, cluster_id: str, props: Path
) -> list[str]:
    """``kafka-storage format`` for one node; ``--ignore-formatted`` keeps existing data."""
    return [
        str(java),
        *jvm,
        "-cp",
        f"{libs}/*",
        "kafka.tools.StorageTool",
        "format",
        "--ignore-formatted",
        "-t",
        cluster_id,
        "-c",
        str(props),
    ]


def format_storage(commands: dict[int, list[str]], dir: Path, timeout_s: float = 120.0) -> None:
    """Run the format commands of several nodes at once; raise for the first that failed."""
    pipe, out = subprocess.PIPE, subprocess.STDOUT
    running = {n: subprocess.Popen(cmd, stdout=pipe, stderr=out) for n, cmd in commands.items()}
    try:
        outputs = {n: proc.communicate(timeout=timeout_s)[0] for n, proc in running.items()}
    except subprocess.TimeoutExpired as exc:
        for proc in running.values():
            proc.kill()
            proc.wait()
        raise ServiceStartError(f"formatting the storage in {dir} hung: {exc}") from exc
    for n, proc in running.items():
        if proc.returncode != 0:
            text = "\n".join(outputs[n].decode(errors="replace").splitlines()[-20:])
            raise ServiceStartError(
                f"formatting the storage of node {n} failed (exit code {proc.returncode}): "
                f"{' '.join(commands[n])}\n{text}\n"
                f"If {dir}/node-{n}/data holds data of another cluster, use another --dir."
            )


def server_command(java: Path, jvm: list[str], libs: Path, props: Path) -> list[str]:
    return [str(java), *jvm, "-cp", f"{libs}/*", "kafka.Kafka", str(props)]


def read_state(dir: Path) -> dict[str, Any] | None:
    """The ``cluster.json`` of ``dir``, or None when no cluster was started there."""
    path = Path(dir) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise NoClusterError(
            f"{path} is not valid JSON ({exc}); remove {dir} to start afresh"
        ) from exc
    return state if isinstance(state, dict) else None


def write_state(dir: Path, layout: Layout, **extra: str) -> None:
    """Record the cluster id and the layout of ``dir`` (atomically)."""
    state = {
        "brokers": layout.brokers,
        "port": layout.port,
        "controller_port": layout.controller_port,
        **extra,
    }
    dir.mkdir(parents=True, exist_ok=True)
    tmp = dir / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(dir / STATE_FILE)
