"""In-process bus: bounded queues per (topic, group), blocking publishers when full.

It is a pipe, not a log: a message goes to the groups subscribed when it is published, and a
topic nobody subscribes to drops what is published to it (``publish`` returns 0, ``on_commit``
is never called, so an edge transport keeps the data in its spool and retries). Retention and
replay are Kafka's job in the distributed shape.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from plantwatch.bus.base import Message
from plantwatch.bus.errors import BusClosedError, BusFullError


@dataclass(slots=True)
class _Pending:
    waiting: set[str]  # groups that received the message and have not committed it yet
    on_commit: Callable[[], None] | None
    committed: bool = False  # by at least one group (not only released by groups leaving)


class MemoryBus:
    def __init__(self, *, max_messages: int = 256, publish_timeout: float = 60.0) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        self.max_messages = max_messages
        self.publish_timeout = publish_timeout
        self._cond = threading.Condition()
        self._queues: dict[str, dict[str, deque[Message]]] = {}
        self._offsets: dict[str, int] = {}
        self._members: dict[tuple[str, str], int] = {}  # open consumers per (topic, group)
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._closed = False

    # -- producer side -------------------------------------------------------------------------

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
        wait = self.publish_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                if self._closed:
                    raise BusClosedError("bus is closed")
                groups = self._queues.get(topic, {})
                if not groups:
                    return 0
                if all(len(q) < self.max_messages for q in groups.values()):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BusFullError(
                        f"topic {topic!r} is full ({self.max_messages} messages per group) for "
                        f"{wait:.1f}s: the consumer is not keeping up"
                    )
                self._cond.wait(left)
            offset = self._offsets.get(topic, 0)
            self._offsets[topic] = offset + 1
            msg = Message(topic, value, key, dict(headers or {}), offset)
            for q in groups.values():
                q.append(msg)
            if on_commit is not None:
                self._pending[(topic, offset)] = _Pending(set(groups), on_commit)
            self._cond.notify_all()
            return len(groups)

    # -- consumer side -------------------------------------------------------------------------

    def subscribe(self, topic: str | Sequence[str], group: str) -> MemoryConsumer | FanInConsumer:
        if not isinstance(topic, str):
            return FanInConsumer([self.subscribe(t, group) for t in topic])
        with self._cond:
            if self._closed:
                raise BusClosedError("bus is closed")
            self._queues.setdefault(topic, {}).setdefault(group, deque())
            self._members[(topic, group)] = self._members.get((topic, group), 0) + 1
        return MemoryConsumer(self, topic, group)

    def _poll(self, topic: str, group: str, max_messages: int, timeout: float) -> list[Message]:
        deadline = time.monotonic() + timeout
        with self._cond:
            q = self._queues[topic][group]
            while not q:
                if self._closed:
                    raise BusClosedError("bus is closed")
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
            out = [q.popleft() for _ in range(min(max_messages, len(q)))]
            self._cond.notify_all()
            return out

    def _release(
        self, group: str, messages: Sequence[Message], *, committed: bool
    ) -> list[Callable[[], None]]:
        """Mark ``messages`` done for ``group``; the callbacks of those now done for every group.

        A group counts once per message, however often it commits it. A message that every
        group left without any group committing it is forgotten, not acknowledged.
        """
        callbacks: list[Callable[[], None]] = []
        for m in messages:
            p = self._pending.get((m.topic, m.offset))
            if p is None or group not in p.waiting:
                continue
            p.waiting.discard(group)
            p.committed = p.committed or committed
            if not p.waiting:
                del self._pending[(m.topic, m.offset)]
                if p.committed and p.on_commit is not None:
                    callbacks.append(p.on_commit)
        return callbacks

    def _commit(self, group: str, messages: Sequence[Message]) -> None:
        with self._cond:
            callbacks = self._release(group, messages, committed=True)
        for cb in callbacks:
            cb()

    def _unsubscribe(self, topic: str, group: str) -> None:
        callbacks: list[Callable[[], None]] = []
        with self._cond:
            members = self._members.get((topic, group), 0) - 1
            if members > 0:
                self._members[(topic, group)] = members  # the group lives on in another consumer
                return
            self._members.pop((topic, group), None)
            q = self._queues.get(topic, {}).pop(group, None)
            if q:
                # Undelivered messages of this group will never be committed by it.
                callbacks = self._release(group, list(q), committed=False)
            self._cond.notify_all()
        for cb in callbacks:
            cb()

    def _queued(self, topic: str, group: str) -> int:
        """Messages of ``topic`` not yet polled by ``group``."""
        with self._cond:
            return len(self._queues.get(topic, {}).get(group, ()))

    def depth(self, topic: str) -> int:
        """Messages waiting in the fullest group of ``topic``."""
        with self._cond:
            return max((len(q) for q in self._queues.get(topic, {}).values()), default=0)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class MemoryConsumer:
    def __init__(self, bus: MemoryBus, topic: str, group: str) -> None:
        self._bus = bus
        self.topic = topic
        self.group = group
        self._closed = False

    def poll(self, max_messages: int, timeout: float) -> list[Message]:
        if self._closed:
            raise BusClosedError(f"consumer {self.group!r} on {self.topic!r} is closed")
        return self._bus._poll(self.topic, self.group, max_messages, timeout)

    def commit(self, messages: Sequence[Message]) -> None:
        self._bus._commit(self.group, messages)

    def caught_up(self) -> bool:
        return self._bus._queued(self.topic, self.group) == 0

    def lag(self) -> int | None:
        return self._bus._queued(self.topic, self.group)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._unsubscribe(self.topic, self.group)


class FanInConsumer:
    """One consumer over several topics of the memory bus (each keeps its own queue)."""

    def __init__(self, consumers: Sequence[MemoryConsumer | FanInConsumer]) -> None:
        self._consumers = [c for c in consumers if isinstance(c, MemoryConsumer)]
        self._by_topic = {c.topic: c for c in self._consumers}
        self._next = 0

    def poll(self, max_messages: int, timeout: float) -> list[Message]:
        deadline = time.monotonic() + timeout
        while True:
            out: list[Message] = []
            n = len(self._consumers)
            for i in range(n):  # round robin, so no topic starves
                c = self._consumers[(self._next + i) % n]
                out.extend(c.poll(max_messages - len(out), 0.0))
                if len(out) >= max_messages:
                    break
            self._next = (self._next + 1) % max(n, 1)
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            time.sleep(min(0.01, left))

    def caught_up(self) -> bool:
        return all(c.caught_up() for c in self._consumers)

    def lag(self) -> int | None:
        return sum(c.lag() or 0 for c in self._consumers)

    def commit(self, messages: Sequence[Message]) -> None:
        for topic, consumer in self._by_topic.items():
            mine = [m for m in messages if m.topic == topic]
            if mine:
                consumer.commit(mine)

    def close(self) -> None:
        for c in self._consumers:
            c.close()
