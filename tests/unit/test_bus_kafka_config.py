"""Kafka client settings: what reaches librdkafka, and what never reaches a log."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from plantwatch.bus.errors import BusConfigError
from plantwatch.bus.kafka import KafkaBus
from plantwatch.bus.kafka_config import (
    consumer_config,
    parse_bus_url,
    producer_config,
    redacted,
    topic_spec,
    topic_specs,
)
from plantwatch.core.settings import KafkaSettings, Settings
from plantwatch.core.topics import Topics

SECURE = KafkaSettings(
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="plant",
    sasl_password=SecretStr("hunter2-very-secret"),
    ssl_ca_location="/etc/ca.pem",
    ssl_key_password=SecretStr("key-secret"),
    extra={"socket.keepalive.enable": "true"},
)


def test_security_settings_reach_librdkafka() -> None:
    conf = producer_config("b1:9093,b2:9093", SECURE)
    assert conf["bootstrap.servers"] == "b1:9093,b2:9093"
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "plant"
    assert conf["sasl.password"] == "hunter2-very-secret"
    assert conf["ssl.ca.location"] == "/etc/ca.pem"
    assert conf["ssl.key.password"] == "key-secret"
    assert conf["socket.keepalive.enable"] == "true"
    assert "sasl.password" not in producer_config("b:9092", KafkaSettings())


def test_producer_is_idempotent_acks_all_and_never_gives_up() -> None:
    conf = producer_config("b:9092", KafkaSettings(compression="lz4"))
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"
    assert conf["message.timeout.ms"] == 0
    assert conf["compression.type"] == "lz4"


def test_consumer_commits_only_by_hand() -> None:
    conf = consumer_config("b:9092", "g1", KafkaSettings())
    assert conf["group.id"] == "g1"
    assert conf["enable.auto.commit"] is False
    assert conf["auto.offset.reset"] == "earliest"


def test_secrets_are_redacted_everywhere_people_look() -> None:
    shown = redacted(producer_config("b:9092", SECURE))
    assert "hunter2-very-secret" not in repr(shown) and "key-secret" not in repr(shown)
    assert shown["sasl.password"] == "***"
    assert "hunter2" not in repr(SECURE) and "hunter2" not in repr(Settings(kafka=SECURE))


def test_a_client_that_cannot_start_says_why_without_the_password() -> None:
    bad = SECURE.model_copy(update={"extra": {"no.such.property": "1"}})
    bus = KafkaBus("127.0.0.1:1", bad)
    with pytest.raises(BusConfigError) as info:
        bus.publish("t", b"x")
    assert "no.such.property" in str(info.value)
    assert "hunter2-very-secret" not in str(info.value) and "key-secret" not in str(info.value)


def test_bus_urls() -> None:
    assert parse_bus_url("kafka://a:9092,b:9092") == "a:9092,b:9092"
    with pytest.raises(BusConfigError, match="kafka://host:9092"):
        parse_bus_url("http://a:9092")


def test_topic_specs() -> None:
    with pytest.raises(BusConfigError, match="MIN_INSYNC_REPLICAS"):
        topic_spec(KafkaSettings(replication_factor=1, min_insync_replicas=2))
    specs = topic_specs(
        Topics("p"), KafkaSettings(partitions=6, replication_factor=3, min_insync_replicas=2)
    )
    assert specs["p.readings.raw"].partitions == 6
    assert specs["p.readings.raw"].configs()["min.insync.replicas"] == "2"
    assert specs["p.machines"].configs()["cleanup.policy"] == "compact"
    assert specs["p.machines"].partitions == 1
