"""The bus port: publish bytes to a topic, consume them in a group, commit what is done.

Two implementations: ``memory`` (in-process, bounded, for the embedded shape) and ``kafka``.
``on_commit`` is how an acknowledgement travels back to a producer: the memory bus calls it when
every group that received the message has committed it (end-to-end: the stream commits after the
store committed), the Kafka bus when the broker acknowledged the write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    offset: int = -1
    partition: int = -1


class Consumer(Protocol):
    def poll(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to ``max_messages``, waiting at most ``timeout`` seconds for the first."""

    def commit(self, messages: Sequence[Message]) -> None:
        """Mark messages as processed (their effects are durable)."""

    def caught_up(self) -> bool:
        """True once everything published to this consumer's topics so far has been handed to
        it (False while it is still joining its group): a stopping stream drains until then."""

    def lag(self) -> int | None:
        """Messages on this consumer's topics (its partitions) not handed to it yet; None
        while it cannot tell (no partitions yet). Cheap: no round trip to a broker."""

    def close(self) -> None: ...


class Bus(Protocol):
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
        """Send one message. Returns how many consumer groups it went to (Kafka: 1).

        Blocks while the topic is full, up to ``timeout`` (then :class:`BusFullError`).
        """

    def subscribe(self, topic: str | Sequence[str], group: str) -> Consumer:
        """A consumer in ``group`` of one topic or several; each group receives every message
        once."""

    def close(self) -> None: ...
