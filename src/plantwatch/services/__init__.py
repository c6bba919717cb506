"""Local services for development and tests, started without Docker.

``kafka.py`` runs a real Apache Kafka 4 (KRaft) broker or 3-node cluster on 127.0.0.1 from jars
that Maven fetches once into a cache folder. ``plantwatch services kafka start|stop|status``
calls :func:`plantwatch.services.kafka.start`, :func:`~plantwatch.services.kafka.stop` and
:func:`~plantwatch.services.kafka.status`; tests use :class:`KafkaCluster` directly.
"""

from plantwatch.services._proc import free_port_block
from plantwatch.services._status import ClusterStatus, NodeStatus
from plantwatch.services.errors import (
    JarFetchError,
    NoClusterError,
    PortInUseError,
    ServiceConfigError,
    ServiceError,
    ServiceStartError,
    ServiceStopError,
    ToolMissingError,
)
from plantwatch.services.kafka import KAFKA_VERSION, KafkaCluster, KafkaConfig

__all__ = [
    "KAFKA_VERSION",
    "ClusterStatus",
    "JarFetchError",
    "KafkaCluster",
    "KafkaConfig",
    "NoClusterError",
    "NodeStatus",
    "PortInUseError",
    "ServiceConfigError",
    "ServiceError",
    "ServiceStartError",
    "ServiceStopError",
    "ToolMissingError",
    "free_port_block",
]
