"""The bus over Apache Kafka (confluent-kafka / librdkafka).

* Producer: idempotent, ``acks=all``, compressed, batched (``kafka_config``). ``on_commit`` of
  :meth:`KafkaBus.publish` fires from the delivery report, i.e. when the broker has the message
  on all in-sync replicas — that is when the edge SDK releases a spool entry. A background thread
  serves delivery reports.
* Consumer: a consumer group; offsets are committed only by :meth:`KafkaConsumer.commit`, which
  the runners call after the downstream write; offsets processed but not yet committed when
  partitions are revoked are committed then.
* Topics: :meth:`KafkaBus.ensure_topics` creates missing topics and checks existing ones
  (partitions, replication factor, ``min.insync.replicas``, retention, message size).

librdkafka errors become plantwatch errors here and nowhere else (:func:`translate`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import (
    Consumer as _Consumer,
)
from confluent_kafka import (
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka import (
    Message as _KafkaMessage,
)
from confluent_kafka import (
    Producer as _Producer,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
)

from plantwatch.bus.base import Message
from plantwatch.bus.errors import (
    BusClosedError,
    BusConfigError,
    BusError,
    BusFullError,
    BusUnavailableError,
)
from plantwatch.bus.kafka_config import (
    TopicSpec,
    common_config,
    consumer_config,
    producer_config,
    redacted,
)
from plantwatch.core.settings import KafkaSettings

log = logging.getLogger(__name__)

_UNAVAILABLE = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._WAIT_COORD,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


#: errors of a commit whose consumer generation is gone (the group rebalanced meanwhile)
_GENERATION_GONE = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._ASSIGNMENT_LOST,
}


def translate(err: KafkaError | KafkaException | BaseException, doing: str) -> BusError:
    """One librdkafka error as a plantwatch error, with what we were doing."""
    if isinstance(err, KafkaException) and err.args and isinstance(err.args[0], KafkaError):
        err = err.args[0]
    if isinstance(err, KafkaError):
        text = f"{doing}: {err.name()}: {err.str()}"
        if err.code() in _UNAVAILABLE or err.retriable():
            return BusUnavailableError(text + " (the broker is unreachable or busy; retried)")
        if err.code() == KafkaError._QUEUE_FULL:
            return BusFullError(text)
        return BusConfigError(text) if err.fatal() is False else BusError(text)
    return BusError(f"{doing}: {err}")


def _headers(
    raw: Mapping[str, str | bytes | None] | Sequence[tuple[str, str | bytes | None]] | None,
) -> dict[str, str]:
    if not raw:
        return {}
    items = raw.items() if isinstance(raw, Mapping) else raw
    return {
        k: v.decode("utf-8", "replace") if isinstance(v, bytes) else (v or "") for k, v in items
    }


def _message(m: _KafkaMessage) -> Message:
    return Message(
        topic=str(m.topic()),
        value=bytes(m.value() or b""),
        key=m.key(),
        headers=_headers(m.headers()),
        offset=int(m.offset() or 0),
        partition=int(m.partition() or 0),
    )


def read_to_end(
    bootstrap: str, topic: str, settings: KafkaSettings, *, timeout: float = 60.0
) -> list[Message]:
    """Every committed record of ``topic`` up to its end as it is now, partition by partition in
    offset order. It joins no group and commits nothing (benchmarks, tests, tools). Raises
    :class:`BusUnavailableError` when a partition is not read to its end within ``timeout``."""
    c = _Consumer(consumer_config(bootstrap, f"plantwatch-reader-{topic}", settings))
    out: list[Message] = []
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        left = {p for p, end in ends.items() if end > 0}
        c.assign([TopicPartition(topic, p, 0) for p in left])
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise BusUnavailableError(f"{topic}: partitions {sorted(left)} not read to the end")
            out.extend(_message(m) for m in c.consume(1000, 0.5) if m.error() is None)
            for tp in c.position([TopicPartition(topic, p) for p in left]):
                if tp.offset >= ends[tp.partition]:
                    left.discard(tp.partition)
    except KafkaException as exc:
        raise translate(exc, f"reading {topic} to its end") from exc
    finally:
        c.close()
    return out


class KafkaBus:
    """:class:`~plantwatch.bus.base.Bus` over a Kafka cluster at ``bootstrap``."""

    def __init__(
        self, bootstrap: str, settings: KafkaSettings, *, publish_timeout: float = 60.0
    ) -> None:
        self.bootstrap = bootstrap
        self.settings = settings
        self.publish_timeout = publish_timeout
        self._producer: _Producer | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._poller: threading.Thread | None = None
        self._consumers: list[KafkaConsumer] = []
        self.delivered = 0
        self.failed = 0
        self.last_error: str | None = None

    # -- producing ------------------------------------------------------------------------------

    def _ensure_producer(self) -> _Producer:
        with self._lock:
            if self._closed.is_set():
                raise BusClosedError("the Kafka bus is closed")
            if self._producer is None:
                conf = producer_config(self.bootstrap, self.settings)
                conf["error_cb"] = self._on_client_error
                try:
                    self._producer = _Producer(conf)
                except KafkaException as exc:
                    raise translate(exc, f"creating a producer with {redacted(conf)}") from exc
                self._poller = threading.Thread(
                    target=self._serve_reports, name="plantwatch-kafka-delivery", daemon=True
                )
                self._poller.start()
            return self._producer

    def _serve_reports(self) -> None:
        while not self._closed.is_set():
            producer = self._producer
            if producer is not None:
                producer.poll(0.1)

    def _on_client_error(self, err: KafkaError) -> None:
        self.last_error = f"{err.name()}: {err.str()}"
        log.warning("kafka client: %s", self.last_error)

    def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        on_commit: Callable[[], None] | None = None,
        timeout: float | None = None,
    ) -> int:
        producer = self._ensure_producer()

        def delivered(err: KafkaError | None, msg: _KafkaMessage) -> None:
            if err is not None:
                self.failed += 1
                self.last_error = f"delivery to {topic!r} failed: {err.name()}: {err.str()}"
                log.error(
                    "%s (the message stays with its sender and is sent again)", self.last_error
                )
                return
            self.delivered += 1
            if on_commit is not None:
                on_commit()

        deadline = time.monotonic() + (self.publish_timeout if timeout is None else timeout)
        hdrs: list[tuple[str, str | bytes | None]] = [
            (k, v.encode()) for k, v in (headers or {}).items()
        ]
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=hdrs, on_delivery=delivered)
                return 1
            except BufferError:
                if time.monotonic() >= deadline:
                    raise BusFullError(
                        f"the producer's queue is full (the broker at {self.bootstrap} is slow "
                        "or away); the message stays with its sender"
                    ) from None
                producer.poll(0.05)
            except KafkaException as exc:
                raise translate(exc, f"producing to {topic!r}") from exc

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for outstanding deliveries; returns how many are still in flight."""
        if self._producer is None:
            return 0
        return int(self._producer.flush(timeout))

    # -- consuming ------------------------------------------------------------------------------

    def subscribe(self, topic: str | Sequence[str], group: str) -> KafkaConsumer:
        if self._closed.is_set():
            raise BusClosedError("the Kafka bus is closed")
        topics = [topic] if isinstance(topic, str) else list(topic)
        consumer = KafkaConsumer(consumer_config(self.bootstrap, group, self.settings), topics)
        # The bus closes what it opened: a librdkafka consumer left to the garbage collector
        # leaves its group from inside a collection and can deadlock the interpreter.
        self._consumers.append(consumer)
        return consumer

    # -- topics ---------------------------------------------------------------------------------

    def admin(self) -> AdminClient:
        return AdminClient(common_config(self.bootstrap, self.settings))

    def ensure_topics(self, specs: Mapping[str, TopicSpec], *, timeout: float = 30.0) -> None:
        """Create missing topics; raise :class:`BusConfigError` if existing ones disagree."""
        admin = self.admin()
        try:
            existing = admin.list_topics(timeout=timeout).topics
        except KafkaException as exc:
            raise translate(exc, f"listing topics at {self.bootstrap}") from exc
        missing = [
            NewTopic(
                name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config=spec.configs(),
            )
            for name, spec in specs.items()
            if name not in existing
        ]
        if missing:
            for name, fut in admin.create_topics(missing, operation_timeout=timeout).items():
                try:
                    fut.result(timeout)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise translate(exc, f"creating topic {name!r}") from exc
            self._wait_for_leaders(admin, [t.topic for t in missing], timeout)
        problems = self._check(admin, {n: s for n, s in specs.items() if n in existing}, timeout)
        if problems:
            raise BusConfigError(
                "existing topics differ from the settings: "
                + "; ".join(problems)
                + " (recreate the topics, or change PLANTWATCH_KAFKA__* to match)"
            )

    @staticmethod
    def _wait_for_leaders(admin: AdminClient, topics: Sequence[str], timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            md = admin.list_topics(timeout=timeout).topics
            if all(
                t in md
                and md[t].partitions
                and all(p.leader >= 0 for p in md[t].partitions.values())
                for t in topics
            ):
                return
            time.sleep(0.2)
        raise BusUnavailableError(f"topics {list(topics)} have no leaders after {timeout:.0f} s")

    @staticmethod
    def _check(admin: AdminClient, specs: Mapping[str, TopicSpec], timeout: float) -> list[str]:
        if not specs:
            return []
        problems = []
        md = admin.list_topics(timeout=timeout).topics
        for name, spec in specs.items():
            parts = md[name].partitions
            if len(parts) < spec.partitions:
                problems.append(f"{name}: {len(parts)} partitions, settings want {spec.partitions}")
            rf = min(len(p.replicas) for p in parts.values()) if parts else 0
            if rf != spec.replication_factor:
                problems.append(
                    f"{name}: replication factor {rf}, settings want {spec.replication_factor}"
                )
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in specs]
        for res, fut in admin.describe_configs(resources).items():
            try:
                configs = fut.result(timeout)
            except KafkaException as exc:
                raise translate(exc, f"describing topic {res.name!r}") from exc
            want = specs[res.name].configs()
            for key in ("min.insync.replicas", "retention.ms", "max.message.bytes"):
                have = configs[key].value if key in configs else None
                if have != want[key]:
                    problems.append(f"{res.name}: {key}={have}, settings want {want[key]}")
        return problems

    def close(self) -> None:
        if self._closed.is_set():
            return
        for consumer in self._consumers:
            consumer.close()
        producer = self._producer
        if producer is not None:
            left = producer.flush(10.0)
            if left:
                log.warning(
                    "%d messages were not delivered before close; their senders keep them", left
                )
        self._closed.set()
        if self._poller is not None:
            self._poller.join(timeout=5)


class KafkaConsumer:
    """A member of a consumer group; offsets move only when :meth:`commit` is called."""

    def __init__(
        self, conf: dict[str, Any], topics: list[str], *, commit_timeout_s: float = 30.0
    ) -> None:
        """``commit_timeout_s``: how long :meth:`commit` retries a broker that is away before it
        raises :class:`BusUnavailableError`. Keep it short: while it retries, the consumer is
        not polled, and after an outage librdkafka needs a poll to serve the rebalance that lets
        it find the group coordinator again (until then every commit waits for it). The caller
        steps again; what was not committed is delivered again and de-duplicated downstream."""
        self.topics = topics
        self.commit_timeout_s = commit_timeout_s
        self.group = str(conf["group.id"])
        self._uncommitted: dict[tuple[str, int], int] = {}
        self.assigned: set[tuple[str, int]] = set()
        try:
            self._consumer = _Consumer(conf)
            self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        except KafkaException as exc:
            raise translate(exc, f"subscribing {self.group!r} to {topics}") from exc
        self._closed = False

    def _on_assign(self, consumer: _Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(p.topic, p.partition) for p in partitions}
        log.info("%s: assigned %s", self.group, sorted(self.assigned))

    def _on_revoke(self, consumer: _Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        pending = [
            TopicPartition(t, p, off)
            for (t, p), off in self._uncommitted.items()
            if (t, p) in revoked
        ]
        if pending:
            try:
                consumer.commit(offsets=pending, asynchronous=False)
            except KafkaException as exc:
                log.warning("%s: commit on revoke failed: %s", self.group, exc)
        for key in revoked:
            self._uncommitted.pop(key, None)
        self.assigned -= revoked

    def poll(self, max_messages: int, timeout: float) -> list[Message]:
        if self._closed:
            raise BusClosedError(f"consumer {self.group!r} is closed")
        try:
            raw = self._consumer.consume(num_messages=max_messages, timeout=timeout)
        except KafkaException as exc:
            raise translate(exc, f"consuming {self.topics} as {self.group!r}") from exc
        out = []
        for m in raw:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                bus_err = translate(err, f"consuming {self.topics} as {self.group!r}")
                if isinstance(bus_err, BusUnavailableError):
                    log.warning("%s", bus_err)
                    continue
                raise bus_err
            out.append(_message(m))
        return out

    def commit(self, messages: Sequence[Message]) -> None:
        """Commit past the highest offset of each partition in ``messages`` (synchronously)."""
        for m in messages:
            key = (m.topic, m.partition)
            self._uncommitted[key] = max(self._uncommitted.get(key, -1), m.offset + 1)
        # A partition revoked while its messages were being processed now belongs to another
        # member, which will process them again (downstream de-duplication absorbs that).
        lost = [key for key in self._uncommitted if key not in self.assigned]
        for key in lost:
            log.info("%s: not committing %s, no longer assigned", self.group, key)
            del self._uncommitted[key]
        offsets = [TopicPartition(t, p, off) for (t, p), off in self._uncommitted.items()]
        if not offsets:
            return
        delay, deadline = 0.1, time.monotonic() + self.commit_timeout_s
        while True:
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
                break
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is not None and err.code() in _GENERATION_GONE:
                    # a rebalance moved the partitions on: their new owner processes the
                    # messages again, and de-duplication downstream absorbs that
                    log.info("%s: commit skipped after a rebalance: %s", self.group, err.str())
                    break
                bus_err = translate(exc, f"committing offsets of {self.group!r}")
                if not isinstance(bus_err, BusUnavailableError) or time.monotonic() > deadline:
                    raise bus_err from exc
                log.warning("%s (retrying the commit)", bus_err)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._uncommitted.clear()

    def caught_up(self, timeout: float = 5.0) -> bool:
        """True once this member has partitions and has read each of them to its end (what it
        read may still be uncommitted). False while it waits for its assignment."""
        if not self.assigned:
            return False
        parts = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
        try:
            positions = self._consumer.position(parts)
            committed = self._consumer.committed(parts, timeout=timeout)
            for pos, com in zip(positions, committed, strict=True):
                tp = TopicPartition(pos.topic, pos.partition)
                # the high watermark of the last fetch response (fetches never stop while the
                # consumer polls); asking the broker instead waits behind the fetch in flight
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:  # nothing fetched yet
                    _, high = self._consumer.get_watermark_offsets(tp, timeout=timeout)
                at = max(pos.offset, com.offset)  # both < 0 when nothing was read or committed
                if high > 0 and at < high:
                    return False
        except KafkaException as exc:
            raise translate(exc, f"reading the offsets of {self.group!r}") from exc
        return True

    def lag(self) -> int | None:
        """From the watermarks of the last fetch responses and this member's positions (where
        it has read nothing yet: from the partition's start)."""
        if not self.assigned:
            return None
        parts = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
        try:
            total = 0
            for pos in self._consumer.position(parts):
                tp = TopicPartition(pos.topic, pos.partition)
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    continue  # nothing fetched from this partition yet
                total += max(high - max(pos.offset, low, 0), 0)
        except KafkaException as exc:
            raise translate(exc, f"reading the positions of {self.group!r}") from exc
        return total

    def close(self) -> None:
        """Leave the group (offsets processed but not committed are committed on revoke)."""
        if not self._closed:
            self._closed = True
            try:
                self._consumer.close()
            except (RuntimeError, KafkaException) as exc:
                log.warning("%s: closing the consumer: %s", self.group, exc)
