"""Non-blocking delivery of notifications to receivers, with retries.

Each receiver gets a bounded queue and a daemon worker thread of its own, so a receiver that
hangs (up to its timeout, on every retry) only delays its own notifications. :meth:`submit`
never blocks: it routes by ``Notification.receiver`` and drops (counts and logs) what does not
fit. Workers retry with exponential backoff and jitter; each final outcome is a
:class:`DeliveryResult` handed to ``on_result`` on the worker's thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType

from plantwatch.alert.notify.errors import DeliveryError, ReceiverConfigError
from plantwatch.alert.notify.model import Notification
from plantwatch.alert.notify.receivers import Receiver

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How one notification ended at one receiver."""

    receiver: str
    notification: Notification
    ok: bool
    attempts: int
    error: str  # the last attempt's error; "" when ok
    #: wall time (epoch ms) the successful send returned — when it left the process; when not
    #: ok, when the last attempt ended
    sent_wall_ms: int
    #: sent_wall_ms − the earliest trigger_wall_ms of its alerts (None if none is known)
    latency_ms: int | None


@dataclass(slots=True)
class ReceiverStats:
    """Counters of one receiver (a snapshot when returned by :meth:`Delivery.stats`)."""

    sent: int = 0
    failed: int = 0  # gave up: attempts exhausted, a permanent error, or no such receiver
    retries: int = 0  # attempts after the first
    dropped: int = 0  # never attempted: queue full, submitted after close, abandoned at close
    pending: int = 0  # queued or being sent


class _Lane:
    """One receiver's queue, worker thread and counters; ``cond`` guards the mutable state."""

    def __init__(self, receiver: Receiver, capacity: int) -> None:
        self.receiver = receiver
        self.capacity = capacity
        self.queue: deque[Notification] = deque()
        self.cond = threading.Condition()
        self.stats = ReceiverStats()
        self.busy = False  # a notification is being sent (or its result reported)
        self.closing = False
        self.abandoned = False
        self.thread: threading.Thread | None = None


class Delivery:
    """Delivers notifications to ``receivers`` (by name) without blocking the caller.

    ``max_attempts`` per notification; the n-th retry waits about ``backoff_s · 2^(n-1)``
    (capped at ``backoff_max_s``, with jitter: 50–100 % of it). Errors a receiver marks as
    permanent (``DeliveryError.retryable`` False) are not retried. ``sleep`` and ``wall`` are
    injectable for tests. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        receivers: Sequence[Receiver],
        *,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        queue_size: int = 1000,
        on_result: Callable[[DeliveryResult], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if max_attempts < 1 or queue_size < 1 or backoff_s < 0 or backoff_max_s < 0:
            raise ReceiverConfigError(
                "delivery: max_attempts and queue_size must be >= 1 and backoffs >= 0, got "
                f"max_attempts={max_attempts}, queue_size={queue_size}, "
                f"backoff_s={backoff_s}, backoff_max_s={backoff_max_s}"
            )
        self._lanes: dict[str, _Lane] = {}
        for r in receivers:
            if r.name in self._lanes:
                raise ReceiverConfigError(f"delivery: two receivers are named {r.name!r}")
            self._lanes[r.name] = _Lane(r, queue_size)
        self._max_attempts = max_attempts
        self._backoff_s, self._backoff_max_s = backoff_s, backoff_max_s
        self._on_result = on_result
        self._sleep, self._wall = sleep, wall
        self._random = random.Random()
        self._unknown: dict[str, ReceiverStats] = {}
        self._unknown_lock = threading.Lock()
        for name, lane in self._lanes.items():
            lane.thread = threading.Thread(
                target=self._work, args=(lane,), name=f"plantwatch-notify-{name}", daemon=True
            )
            lane.thread.start()

    def __enter__(self) -> Delivery:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- caller side ---------------------------------------------------------------------------

    def submit(self, n: Notification) -> bool:
        """Queue ``n`` for the receiver named ``n.receiver``; never blocks.

        False (counted and logged at ERROR) if there is no such receiver, its queue is full or
        delivery is closed — ``on_result`` is called only for notifications that were queued.
        """
        lane = self._lanes.get(n.receiver)
        if lane is None:
            with self._unknown_lock:
                self._unknown.setdefault(n.receiver, ReceiverStats()).failed += 1
            log.error(
                "no receiver named %r (configured: %s): notification %s not delivered",
                n.receiver,
                ", ".join(self._lanes) or "none",
                n.group_key,
            )
            return False
        with lane.cond:
            queued = not lane.closing and len(lane.queue) < lane.capacity
            if queued:
                lane.queue.append(n)
                lane.stats.pending += 1
                lane.cond.notify_all()
            else:
                lane.stats.dropped += 1
            closing = lane.closing
        if not queued:
            why = "delivery is closed" if closing else f"its queue is full ({lane.capacity})"
            log.error("receiver %r: notification %s dropped: %s", n.receiver, n.group_key, why)
        return queued

    def stats(self) -> dict[str, ReceiverStats]:
        """A snapshot of every receiver's counters (and of unknown names submitted to)."""
        out: dict[str, ReceiverStats] = {}
        for name, lane in self._lanes.items():
            with lane.cond:
                out[name] = replace(lane.stats)
        with self._unknown_lock:
            out.update((name, replace(s)) for name, s in self._unknown.items())
        return out

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or being sent (results reported); False on timeout."""
        deadline = time.monotonic() + timeout_s
        for lane in self._lanes.values():
            with lane.cond:
                while lane.queue or lane.busy:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    lane.cond.wait(remaining)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, let the workers send what is queued for up to ``timeout_s``, then
        abandon the rest (counted as dropped and logged). Idempotent."""
        deadline = time.monotonic() + timeout_s
        for lane in self._lanes.values():
            with lane.cond:
                lane.closing = True
                lane.cond.notify_all()
        for lane in self._lanes.values():
            if lane.thread is not None:
                lane.thread.join(max(0.0, deadline - time.monotonic()))
        for name, lane in self._lanes.items():
            if lane.thread is None or not lane.thread.is_alive():
                continue
            with lane.cond:
                left = len(lane.queue)
                lane.queue.clear()
                lane.abandoned = True
                lane.stats.pending -= left
                lane.stats.dropped += left
                busy = lane.busy
                lane.cond.notify_all()
            log.error(
                "receiver %r: still busy %.1f s after close: abandoned %d queued notification(s)%s",
                name,
                timeout_s,
                left,
                " and one being sent" if busy else "",
            )

    # --- worker side ---------------------------------------------------------------------------

    def _work(self, lane: _Lane) -> None:
        while True:
            with lane.cond:
                while not lane.queue and not lane.closing:
                    lane.cond.wait()
                if not lane.queue or lane.abandoned:
                    return
                n = lane.queue.popleft()
                lane.busy = True
            result = self._deliver(lane, n)
            with lane.cond:
                if result.ok:
                    lane.stats.sent += 1
                else:
                    lane.stats.failed += 1
            if not result.ok:
                log.warning(
                    "receiver %r: notification %s not delivered after %d attempt(s): %s",
                    result.receiver,
                    n.group_key,
                    result.attempts,
                    result.error,
                )
            if self._on_result is not None:
                try:
                    self._on_result(result)
                except Exception:
                    log.exception(
                        "on_result failed for receiver %r; delivery goes on", result.receiver
                    )
            with lane.cond:
                lane.busy = False
                lane.stats.pending -= 1
                lane.cond.notify_all()

    def _deliver(self, lane: _Lane, n: Notification) -> DeliveryResult:
        attempts = 0
        while True:
            attempts += 1
            try:
                lane.receiver.send(n)
            except DeliveryError as exc:
                error, retryable = str(exc), exc.retryable
            except Exception as exc:  # a receiver breaking its contract: keep the worker alive
                log.exception("receiver %r raised an unexpected error", lane.receiver.name)
                error, retryable = f"{type(exc).__name__}: {exc}", True
            else:
                return self._result(lane, n, True, attempts, "")
            if attempts >= self._max_attempts or not retryable:
                return self._result(lane, n, False, attempts, error)
            with lane.cond:
                lane.stats.retries += 1
            self._sleep(self._backoff(attempts))
            if lane.abandoned:  # close() gave up waiting for this receiver
                return self._result(lane, n, False, attempts, error)

    def _backoff(self, attempt: int) -> float:
        base = min(self._backoff_max_s, self._backoff_s * 2.0 ** min(attempt - 1, 60))
        return base * self._random.uniform(0.5, 1.0)

    def _result(
        self, lane: _Lane, n: Notification, ok: bool, attempts: int, error: str
    ) -> DeliveryResult:
        sent = int(self._wall() * 1000)
        triggers = [a.trigger_wall_ms for a in n.alerts if a.trigger_wall_ms is not None]
        latency = sent - min(triggers) if triggers else None
        return DeliveryResult(lane.receiver.name, n, ok, attempts, error, sent, latency)
