"""Delivery mechanics (queues, retries, backoff, results, close) with in-test fake receivers.
The receivers themselves are tested against real peers in integration/test_notify_receivers.py."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from plantwatch.alert.notify import (
    AlertInstance,
    Delivery,
    DeliveryError,
    DeliveryResult,
    Notification,
    ReceiverConfigError,
)


def note(receiver: str = "a", *triggers: int | None, key: str = "g") -> Notification:
    alerts = tuple(
        AlertInstance(
            fingerprint=f"f{i}",
            rule="r",
            status="firing",
            severity="critical",
            labels={"machine_id": "M1"},
            annotations={},
            starts_at_ms=0,
            ends_at_ms=None,
            value=1.0,
            trigger_wall_ms=t,
        )
        for i, t in enumerate(triggers or (None,))
    )
    return Notification(
        receiver=receiver, group_key=key, group_labels={}, status="firing", alerts=alerts
    )


class Fake:
    """A receiver that records what it is sent and fails as scripted."""

    def __init__(self, name: str, *failures: Exception, gate: threading.Event | None = None):
        self.name = name
        self.failures = list(failures)
        self.gate = gate  # when set, send() waits for it
        self.sent: list[Notification] = []
        self.calls = 0

    def send(self, n: Notification) -> None:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(10)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(n)


def failing(retryable: bool = True) -> DeliveryError:
    return DeliveryError("a", "http://h", "HTTP 503 busy", status=503, retryable=retryable)


def collecting() -> tuple[list[DeliveryResult], Callable[[DeliveryResult], None]]:
    results: list[DeliveryResult] = []
    return results, results.append


def test_routes_by_receiver_name_and_reports_results() -> None:
    a, b = Fake("a"), Fake("b")
    results, on_result = collecting()
    with Delivery([a, b], on_result=on_result) as d:
        assert d.submit(note("a", key="1"))
        assert d.submit(note("b", key="2"))
        assert d.submit(note("a", key="3"))
        assert d.wait_idle(5)
        stats = d.stats()
    assert [n.group_key for n in a.sent] == ["1", "3"]
    assert [n.group_key for n in b.sent] == ["2"]
    assert sorted((r.receiver, r.ok, r.attempts, r.error) for r in results) == [
        ("a", True, 1, ""),
        ("a", True, 1, ""),
        ("b", True, 1, ""),
    ]
    assert (stats["a"].sent, stats["a"].pending, stats["b"].sent) == (2, 0, 1)


def test_unknown_receiver_is_counted_as_failed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with Delivery([Fake("a")]) as d:
        assert not d.submit(note("nobody"))
        assert d.stats()["nobody"].failed == 1
    assert "no receiver named 'nobody' (configured: a)" in caplog.text


def test_retries_with_exponential_backoff_and_jitter() -> None:
    fake = Fake("a", failing(), failing(), failing())
    delays: list[float] = []
    results, on_result = collecting()
    with Delivery(
        [fake], backoff_s=1.0, backoff_max_s=3.0, sleep=delays.append, on_result=on_result
    ) as d:
        d.submit(note())
        assert d.wait_idle(5)
        stats = d.stats()["a"]
    (result,) = results
    assert (result.ok, result.attempts) == (True, 4)
    assert (stats.sent, stats.retries, stats.failed) == (1, 3, 0)
    assert len(delays) == 3
    for delay, base in zip(delays, (1.0, 2.0, 3.0), strict=True):  # 1, 2, 4 capped at 3
        assert base / 2 <= delay <= base


def test_gives_up_after_max_attempts(caplog: pytest.LogCaptureFixture) -> None:
    fake = Fake("a", *(failing() for _ in range(10)))
    results, on_result = collecting()
    with Delivery([fake], max_attempts=3, sleep=lambda s: None, on_result=on_result) as d:
        d.submit(note(key="grp"))
        assert d.wait_idle(5)
        stats = d.stats()["a"]
    (result,) = results
    assert (result.ok, result.attempts, fake.calls) == (False, 3, 3)
    assert result.error == "receiver 'a' (http://h): HTTP 503 busy"
    assert (stats.sent, stats.failed, stats.retries, stats.pending) == (0, 1, 2, 0)
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "receiver 'a': notification grp not delivered after 3 attempt(s)" in record.getMessage()


def test_permanent_errors_are_not_retried() -> None:
    fake = Fake("a", failing(retryable=False))
    results, on_result = collecting()
    with Delivery([fake], sleep=lambda s: None, on_result=on_result) as d:
        d.submit(note())
        assert d.wait_idle(5)
    assert (results[0].ok, results[0].attempts, fake.calls) == (False, 1, 1)


def test_unexpected_exceptions_are_retried_and_do_not_kill_the_worker() -> None:
    fake = Fake("a", RuntimeError("bug"), RuntimeError("bug"))
    results, on_result = collecting()
    with Delivery([fake], max_attempts=2, sleep=lambda s: None, on_result=on_result) as d:
        d.submit(note(key="1"))
        d.submit(note(key="2"))
        assert d.wait_idle(5)
    assert [(r.ok, r.error) for r in results] == [(False, "RuntimeError: bug"), (True, "")]


def test_on_result_exceptions_are_logged_and_delivery_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = Fake("a")

    def explode(result: DeliveryResult) -> None:
        raise ValueError("callback bug")

    with Delivery([fake], on_result=explode) as d:
        d.submit(note(key="1"))
        d.submit(note(key="2"))
        assert d.wait_idle(5)
        assert d.stats()["a"].sent == 2
    assert len(fake.sent) == 2
    assert caplog.text.count("on_result failed for receiver 'a'") == 2


def test_sent_time_and_latency_come_from_the_wall_clock_and_triggers() -> None:
    results, on_result = collecting()
    with Delivery([Fake("a")], wall=lambda: 1_000.25, on_result=on_result) as d:
        d.submit(note("a", 999_000, 999_800, None))
        d.submit(note("a", None))
        assert d.wait_idle(5)
    assert results[0].sent_wall_ms == 1_000_250
    assert results[0].latency_ms == 1_250  # from the earliest trigger
    assert results[1].latency_ms is None


def test_full_queue_drops_without_blocking(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    fake = Fake("a", gate=gate)
    d = Delivery([fake], queue_size=2)
    try:
        assert d.submit(note(key="in-flight"))
        assert _eventually(lambda: fake.calls == 1)  # taken off the queue, being sent
        started = time.monotonic()
        assert d.submit(note(key="q1"))
        assert d.submit(note(key="q2"))
        assert not d.submit(note(key="q3"))
        assert time.monotonic() - started < 0.1
        stats = d.stats()["a"]
        assert (stats.dropped, stats.pending) == (1, 3)
        assert "receiver 'a': notification q3 dropped: its queue is full (2)" in caplog.text
        gate.set()
        assert d.wait_idle(5)
        assert d.stats()["a"].sent == 3
    finally:
        gate.set()
        d.close()


def test_a_stuck_receiver_does_not_delay_the_others() -> None:
    gate = threading.Event()
    stuck, other = Fake("stuck", gate=gate), Fake("other")
    d = Delivery([stuck, other])
    try:
        d.submit(note("stuck"))
        d.submit(note("other"))
        assert _eventually(lambda: len(other.sent) == 1)
        assert d.stats()["stuck"].pending == 1
        assert not d.wait_idle(0.05)
    finally:
        gate.set()
        d.close()


def test_close_delivers_what_is_queued() -> None:
    fake = Fake("a")
    d = Delivery([fake])
    for i in range(20):
        d.submit(note(key=str(i)))
    d.close(timeout_s=5)
    assert len(fake.sent) == 20
    assert not d.submit(note())  # closed
    assert d.stats()["a"].dropped == 1


def test_close_abandons_after_the_timeout_and_says_how_many(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()
    fake = Fake("a", gate=gate)
    d = Delivery([fake])
    try:
        for i in range(4):
            d.submit(note(key=str(i)))
        assert _eventually(lambda: fake.calls == 1)
        started = time.monotonic()
        d.close(timeout_s=0.2)
        assert time.monotonic() - started < 1
        stats = d.stats()["a"]
        assert (stats.dropped, stats.pending) == (3, 1)
        assert "abandoned 3 queued notification(s) and one being sent" in caplog.text
    finally:
        gate.set()
    assert _eventually(lambda: d.stats()["a"].pending == 0)
    assert len(fake.sent) == 1  # the one in flight finishes; nothing else is sent


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ReceiverConfigError, match="two receivers are named 'a'"):
        Delivery([Fake("a"), Fake("a")])
    with pytest.raises(ValueError, match="max_attempts=0"):
        Delivery([Fake("a")], max_attempts=0)


def _eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
