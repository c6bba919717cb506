"""Kafka client and topic configuration: plantwatch settings → librdkafka properties.

Secrets (SASL password, TLS key password) reach librdkafka and nothing else: :func:`redacted`
is what logs and error messages show.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from plantwatch.bus.errors import BusConfigError
from plantwatch.core.settings import KafkaSettings
from plantwatch.core.topics import Topics

_LIBRDKAFKA_LOG = logging.getLogger("plantwatch.librdkafka")
SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password"})


def parse_bus_url(url: str) -> str:
    """``kafka://host:port[,host:port…]`` → the bootstrap servers string."""
    parsed = urlparse(url)
    if parsed.scheme != "kafka" or not parsed.netloc:
        raise BusConfigError(
            f"a Kafka bus URL looks like kafka://host:9092[,host2:9092], got {url!r}"
        )
    return parsed.netloc


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How plantwatch creates (and checks) one topic."""

    partitions: int
    replication_factor: int
    min_insync_replicas: int = 1
    retention_ms: int = 7 * 86_400_000
    max_message_bytes: int = 16 * 1024 * 1024
    extra: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        return {
            "min.insync.replicas": str(self.min_insync_replicas),
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
            **self.extra,
        }


def topic_spec(settings: KafkaSettings) -> TopicSpec:
    if settings.min_insync_replicas > settings.replication_factor:
        raise BusConfigError(
            f"min_insync_replicas ({settings.min_insync_replicas}) cannot exceed "
            f"replication_factor ({settings.replication_factor}): no write could ever succeed; "
            "set PLANTWATCH_KAFKA__MIN_INSYNC_REPLICAS lower"
        )
    return TopicSpec(
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        min_insync_replicas=settings.min_insync_replicas,
        retention_ms=settings.retention_ms,
        max_message_bytes=settings.max_message_bytes,
    )


def topic_specs(topics: Topics, settings: KafkaSettings) -> dict[str, TopicSpec]:
    """Every plantwatch topic with how to create it; the machine registry is compacted."""
    spec = topic_spec(settings)
    specs = dict.fromkeys(topics.all(), spec)
    specs[topics.machines] = TopicSpec(
        partitions=1,
        replication_factor=spec.replication_factor,
        min_insync_replicas=spec.min_insync_replicas,
        retention_ms=-1,
        max_message_bytes=spec.max_message_bytes,
        extra={"cleanup.policy": "compact"},
    )
    return specs


def common_config(bootstrap: str, settings: KafkaSettings) -> dict[str, Any]:
    """Properties every client (producer, consumer, admin) gets, secrets included."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": settings.client_id,
        "security.protocol": settings.security_protocol,
        "logger": _LIBRDKAFKA_LOG,  # librdkafka's own log lines go through logging
    }
    optional = {
        "sasl.mechanism": settings.sasl_mechanism,
        "sasl.username": settings.sasl_username,
        "sasl.password": settings.sasl_password.get_secret_value()
        if settings.sasl_password
        else None,
        "ssl.ca.location": settings.ssl_ca_location,
        "ssl.certificate.location": settings.ssl_certificate_location,
        "ssl.key.location": settings.ssl_key_location,
        "ssl.key.password": settings.ssl_key_password.get_secret_value()
        if settings.ssl_key_password
        else None,
    }
    conf.update({k: v for k, v in optional.items() if v is not None})
    conf.update(settings.extra)
    return conf


def producer_config(bootstrap: str, settings: KafkaSettings) -> dict[str, Any]:
    """Idempotent (no duplicates or reordering on retry), ``acks=all``, retries forever: while
    the broker is away messages wait in librdkafka's queue, and when that is full the caller's
    spool keeps them."""
    return {
        **common_config(bootstrap, settings),
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": 0,  # never give up on a message: the broker may be down for long
        "compression.type": settings.compression,
        "linger.ms": settings.linger_ms,
        "message.max.bytes": settings.max_message_bytes + 64 * 1024,
        "queue.buffering.max.kbytes": 256 * 1024,
        "queue.buffering.max.messages": 200_000,
    }


def consumer_config(bootstrap: str, group: str, settings: KafkaSettings) -> dict[str, Any]:
    """Offsets are committed by plantwatch, only after the downstream write."""
    return {
        **common_config(bootstrap, settings),
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.session_timeout_ms // 5),
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.max.bytes": max(52_428_800, settings.max_message_bytes + 1024 * 1024),
        "max.partition.fetch.bytes": settings.max_message_bytes + 64 * 1024,
    }


def redacted(conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` with every secret replaced by ``***`` (for logs and messages)."""
    return {
        k: ("***" if k in SECRET_KEYS or "password" in k else v)
        for k, v in conf.items()
        if k != "logger"
    }
