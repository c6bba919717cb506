"""The alert service of a running plant: alarms, silences, routing and delivery, one place.

The stream hands it each batch's alert events *after* they are stored (:meth:`handle`); it
turns them into alarm events (stored too) and notifications (queued for delivery, never waited
for). A ticker thread flushes groups, escalates unacknowledged alarms and carries out commands
that people give from the CLI (``plantwatch alarms ack …``) through a folder inbox — chDB lets
one process open the data folder, so the CLI cannot write to it while a plant runs.

State survives a restart: alarms and silences are read back from the store, the routing state
(who was told what, escalation steps done) from ``notify-state.json`` in the data folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from plantwatch.alert.alarms import (
    Alarm,
    AlarmBook,
    AlarmError,
    AlarmEvent,
    events_table,
    load_alarms,
)
from plantwatch.alert.notify.delivery import Delivery, DeliveryResult
from plantwatch.alert.notify.model import AlertInstance
from plantwatch.alert.notify.receivers import Receiver, build_receiver
from plantwatch.alert.notify.router import Router
from plantwatch.alert.notify.silences import (
    Silences,
    load_silences,
    new_silence,
    silences_table,
)
from plantwatch.alert.rulefile import RuleSet
from plantwatch.core.clock import Clock
from plantwatch.core.logs import sensor_event
from plantwatch.core.reading import TS_TYPE
from plantwatch.core.settings import Settings
from plantwatch.store import open_configured
from plantwatch.store.client import ClickHouseStore, Store
from plantwatch.stream.outputs import AlertEvent

log = logging.getLogger(__name__)

NOTIFICATIONS_SCHEMA = pa.schema(
    [
        ("ts", TS_TYPE),
        ("receiver", pa.string()),
        ("group_key", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("escalation_step", pa.uint8()),
        ("alerts", pa.uint32()),
        ("fingerprints", pa.list_(pa.string())),
        ("ok", pa.uint8()),
        ("attempts", pa.uint16()),
        ("error", pa.string()),
        ("latency_ms", pa.int64()),
    ]
)

INBOX = "commands"
STATE_FILE = "notify-state.json"
ALARMS_FILE = "alarms.json"
LOCK_FILE = "alert-service.lock"


@dataclass(slots=True)
class NotifyStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    latencies_ms: list[int] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        xs = self.latencies_ms
        return float(np.percentile(xs, q)) if xs else None


class AlertService:
    def __init__(
        self,
        *,
        rules: RuleSet,
        store: Store,
        clock: Clock,
        data_dir: Path,
        notify: bool = True,
        receivers: Sequence[Receiver] | None = None,
        delivery_options: Mapping[str, Any] | None = None,
        tick_s: float = 0.2,
        wall: Callable[[], float] = time.time,
        lock: ServiceLock | None = None,
    ) -> None:
        """``lock``: the data folder's service lock, held by the caller since before it opened
        the store (so a CLI command never opens the store under a starting plant) and released
        by the caller. Without one, :meth:`start` takes it and :meth:`close` releases it."""
        self.rules = rules
        self.store = store
        self.clock = clock
        self.data_dir = data_dir
        self.tick_s = tick_s
        self._wall = wall
        self._lock = threading.RLock()
        self.book = AlarmBook()
        self.silences = Silences()
        self.router = Router(rules.notifications, silences=self.silences)
        self.stats = NotifyStats()
        self._results: list[DeliveryResult] = []
        self._results_lock = threading.Lock()
        self._dirty = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._service_lock = lock
        self._own_lock = False
        self.delivery: Delivery | None = None
        if notify:
            built = (
                list(receivers)
                if receivers is not None
                else [
                    build_receiver(r.name, r.kind, r.options) for r in rules.notifications.receivers
                ]
            )
            self.delivery = Delivery(
                built, on_result=self._on_result, **dict(delivery_options or {})
            )
        self._restore()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Claim the data folder's inbox and start the ticker thread."""
        (self.data_dir / INBOX).mkdir(parents=True, exist_ok=True)
        if self._service_lock is None:
            self._service_lock = ServiceLock(self.data_dir)
            self._service_lock.acquire()
            self._own_lock = True
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._tick(final=True)
        if self.delivery is not None:
            self.delivery.close()
        self._store_results()
        self._persist()
        if self._own_lock and self._service_lock is not None:
            self._service_lock.release()
            self._service_lock = None

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.poll()
            except Exception:  # the ticker must outlive one bad command or store hiccup
                log.exception("alert service tick failed")

    def poll(self) -> None:
        """One tick: commands from the inbox, due notifications, results, state files."""
        self._commands()
        with self._lock:
            self._tick()
        self._store_results()
        self._persist()

    # -- from the stream -------------------------------------------------------------------------

    def handle(self, alerts: Sequence[AlertEvent]) -> None:
        """Alert events of one stored batch (stream thread)."""
        if not alerts:
            return
        with self._lock:
            now = self._now_ms()
            events: list[AlarmEvent] = []
            for e in alerts:
                before = self.book.for_fingerprint(e.fingerprint)
                changes = self.book.apply(e)
                events += changes
                alarm = self.book.for_fingerprint(e.fingerprint)
                # a firing counts while its alarm is active: a replayed firing of an alarm
                # since cleared (the book ignores it) must not notify a fire nobody resolves
                if (e.state == "firing" and alarm is not None) or (
                    e.state == "resolved" and changes
                ):
                    self.router.observe(self._instance(e, alarm or before), now)
            self.store.insert("alarm_events", events_table(events))
            log_alarm_events(events)
            self._dirty = True
            self._tick()

    def _instance(self, e: AlertEvent, alarm: Alarm | None) -> AlertInstance:
        return AlertInstance(
            fingerprint=e.fingerprint,
            rule=e.rule,
            status="resolved" if e.state == "resolved" else "firing",
            severity=e.severity,
            labels=dict(e.labels) or {"alertname": e.rule, "machine_id": e.machine_id},
            annotations={"summary": e.message, **e.annotations},
            starts_at_ms=e.active_since_ms,
            ends_at_ms=e.ts_ms if e.state == "resolved" else None,
            value=e.value,
            alarm_id=alarm.alarm_id if alarm is not None else "",
            acknowledged=alarm.acknowledged if alarm is not None else False,
            trigger_wall_ms=round(self.clock.wall_at(e.ts_ms / 1000.0) * 1000),
        )

    # -- routing and delivery --------------------------------------------------------------------

    def _now_ms(self) -> int:
        return round(self.clock.time() * 1000)

    def _tick(self, *, final: bool = False) -> None:
        due = self.router.tick(self._now_ms(), final=final)
        if due:
            self._dirty = True
        for n in due:
            if self.delivery is None:
                continue
            if not self.delivery.submit(n):
                self.stats.dropped += 1

    def _on_result(self, r: DeliveryResult) -> None:  # a delivery worker thread
        with self._results_lock:
            self._results.append(r)

    def _store_results(self) -> None:
        with self._results_lock:
            results, self._results = self._results, []
        if not results:
            return
        for r in results:
            if r.ok:
                self.stats.sent += 1
                # latency: from the event (the window that fired or resolved it) to the
                # notification leaving; repeats and escalations are late on purpose
                timely = r.notification.reason in ("new", "update", "resolved")
                if timely and r.latency_ms is not None:
                    self.stats.latencies_ms.append(r.latency_ms)
            else:
                self.stats.failed += 1
        self.store.insert(
            "notifications",
            pa.table(
                {
                    "ts": pa.array([r.sent_wall_ms for r in results], pa.int64()).cast(TS_TYPE),
                    "receiver": [r.receiver for r in results],
                    "group_key": [r.notification.group_key for r in results],
                    "status": [r.notification.status for r in results],
                    "reason": [r.notification.reason for r in results],
                    "escalation_step": [r.notification.escalation_step for r in results],
                    "alerts": [len(r.notification.alerts) for r in results],
                    "fingerprints": [
                        [a.fingerprint for a in r.notification.alerts] for r in results
                    ],
                    "ok": [int(r.ok) for r in results],
                    "attempts": [r.attempts for r in results],
                    "error": [r.error for r in results],
                    "latency_ms": [r.latency_ms for r in results],
                },
                schema=NOTIFICATIONS_SCHEMA,
            ),
        )

    def wait_delivered(self, timeout_s: float) -> bool:
        """Tests and shutdown: every queued notification delivered or given up."""
        ok = self.delivery.wait_idle(timeout_s) if self.delivery is not None else True
        self._store_results()
        return ok

    # -- commands (CLI, inbox) -------------------------------------------------------------------

    def execute(self, cmd: Mapping[str, Any]) -> dict[str, Any]:
        """One command: ``{"op": "ack"|"assign"|"comment"|"silence_add"|"silence_expire", …}``.
        Returns ``{"ok": True, …}`` or ``{"ok": False, "error": …}``; never raises."""
        try:
            with self._lock:
                return {"ok": True, **self._execute(cmd)}
        except (AlarmError, KeyError, ValueError, TypeError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            return {"ok": False, "error": str(msg)}

    def _execute(self, cmd: Mapping[str, Any]) -> dict[str, Any]:
        op = cmd.get("op")
        now = self._now_ms()
        user = str(cmd.get("user", ""))
        if op in ("ack", "assign", "comment"):
            aid = str(cmd["alarm_id"])
            if op == "ack":
                ev = self.book.acknowledge(aid, user, str(cmd.get("comment", "")), now)
                self.router.acknowledge(ev.alarm.fingerprint)
            elif op == "assign":
                ev = self.book.assign(aid, str(cmd["assignee"]), now, by=user)
            else:
                ev = self.book.comment(aid, user, str(cmd["comment"]), now)
            self.store.insert("alarm_events", events_table([ev]))
            log_alarm_events([ev])
            self._dirty = True
            return {"alarm": ev.alarm.as_dict()}
        if op == "silence_add":
            starts = int(cmd.get("starts_ms") or now)
            ends = int(cmd["ends_ms"]) if cmd.get("ends_ms") else starts + int(cmd["duration_ms"])
            s = new_silence(
                cmd["matchers"],
                starts_ms=starts,
                ends_ms=ends,
                created_by=user,
                comment=str(cmd.get("comment", "")),
            )
            self.silences.add(s)
            self.store.insert("silences", silences_table([s], now))
            self._dirty = True
            return {"silence": s.as_dict(now)}
        if op == "silence_expire":
            s = self.silences.expire(str(cmd["silence_id"]), now)
            self.store.insert("silences", silences_table([s], now))
            self._dirty = True
            return {"silence": s.as_dict(now)}
        if op == "list":
            return self.listing(active_only=bool(cmd.get("active")))
        raise ValueError(f"unknown command {op!r}")

    def active_alarms(self) -> list[dict[str, Any]]:
        """Active alarms, most severe first (any thread)."""
        with self._lock:
            return [a.as_dict() for a in self.book.alarms(active_only=True)]

    def listing(self, *, active_only: bool = False) -> dict[str, Any]:
        now = self._now_ms()
        return {
            "as_of_ms": now,
            "alarms": [a.as_dict() for a in self.book.alarms(active_only=active_only)],
            "silences": [s.as_dict(now) for s in self.silences.all()],
        }

    def _commands(self) -> None:
        inbox = self.data_dir / INBOX
        if not inbox.is_dir():
            return
        for path in sorted(inbox.glob("*.cmd.json")):
            try:
                cmd = json.loads(path.read_text("utf-8"))
                result = self.execute(cmd)
            except (OSError, ValueError) as exc:
                result = {"ok": False, "error": f"unreadable command {path.name}: {exc}"}
            done = path.with_name(path.name.replace(".cmd.json", ".done.json"))
            _write_atomic(done, json.dumps(result))
            path.unlink(missing_ok=True)

    # -- persistence -----------------------------------------------------------------------------

    def save(self) -> None:
        """Write the state files now (the CLI after a command, when no plant runs)."""
        with self._lock:
            self._dirty = True
        self._persist()

    def _persist(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            self._dirty = False
            state = self.router.snapshot()
            listing = self.listing()
        _write_atomic(self.data_dir / STATE_FILE, json.dumps(state))
        _write_atomic(self.data_dir / ALARMS_FILE, json.dumps(listing))

    def _restore(self) -> None:
        self.book.restore(load_alarms(self.store))
        for s in load_silences(self.store):
            self.silences.add(s)
        path = self.data_dir / STATE_FILE
        if path.exists():
            try:
                self.router.restore(json.loads(path.read_text("utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable %s (%s): notifications start afresh", path, exc)
        self._persist()

    def summary(self) -> dict[str, Any]:
        st = self.delivery.stats() if self.delivery is not None else {}
        return {
            "alarms_active": len(self.book.active),
            "alarms_unacknowledged": sum(
                1 for a in self.book.active.values() if not a.acknowledged
            ),
            "notifications_sent": self.stats.sent,
            "notifications_failed": self.stats.failed,
            "notifications_dropped": self.stats.dropped + sum(s.dropped for s in st.values()),
            "notification_latency_ms": {
                "p50": self.stats.percentile(50),
                "p95": self.stats.percentile(95),
                "p99": self.stats.percentile(99),
                "n": len(self.stats.latencies_ms),
            },
        }


def log_alarm_events(events: Sequence[AlarmEvent]) -> None:
    """One ``alarm.<event>`` log line per stored alarm change (``alarm.created``,
    ``alarm.escalated``, ``alarm.cleared``, ``alarm.acknowledged``, …), at INFO: the files get
    them, the console (and ``run``'s live view) does not."""
    for ev in events:
        a = ev.alarm
        sensor_event(
            log,
            logging.INFO,
            f"alarm.{ev.event}",
            f"alarm {ev.alarm_id} {ev.event}: {a.rule} on {a.machine_id}"
            + (f"/{a.sensor_id}" if a.sensor_id else "")
            + f" ({a.severity}){': ' + a.message if a.message else ''}",
            machine_id=a.machine_id,
            sensor_id=a.sensor_id or None,
            **{"event.action": ev.event},
            alarm_id=ev.alarm_id,
            rule=a.rule,
            severity=a.severity,
            user=ev.user or None,
            assignee=(a.assignee or None) if ev.event == "assigned" else None,
        )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


# -- the CLI's side ------------------------------------------------------------------------------


class ServiceLock:
    """An exclusive ``flock`` on ``<data_dir>/alert-service.lock``: held by the process whose
    alert service owns the data folder's alarms (a running plant or sink), or briefly by a CLI
    command that works on the store directly."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, *, blocking: bool = True) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def claim_store(settings: Settings) -> tuple[ServiceLock, ClickHouseStore]:
    """For the process that will own the data folder's alarms (a plant, a sink): its service
    lock first, then its store. In that order a CLI command that found nobody running and is
    working on the store finishes before the store is opened, instead of taking the chDB
    folder from under a starting plant."""
    lock = ServiceLock(settings.data_dir.resolve())
    lock.acquire()
    try:
        return lock, open_configured(settings)
    except BaseException:
        lock.release()
        raise


@contextlib.contextmanager
def service_lock(data_dir: Path) -> Iterator[bool]:
    """Yields True when no plant's alert service runs on ``data_dir`` (held while inside)."""
    lock = ServiceLock(data_dir)
    free = lock.acquire(blocking=False)
    try:
        yield free
    finally:
        lock.release()


def send_command(
    data_dir: Path, cmd: Mapping[str, Any], *, timeout_s: float = 15.0
) -> dict[str, Any]:
    """Hand a command to the plant running on ``data_dir`` and wait for its answer."""
    inbox = data_dir / INBOX
    inbox.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{uuid.uuid4().hex[:6]}"
    _write_atomic(inbox / f"{name}.cmd.json", json.dumps(dict(cmd)))
    done = inbox / f"{name}.done.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done.exists():
            result: dict[str, Any] = json.loads(done.read_text("utf-8"))
            done.unlink(missing_ok=True)
            return result
        time.sleep(0.05)
    (inbox / f"{name}.cmd.json").unlink(missing_ok=True)
    return {
        "ok": False,
        "error": f"the running plant did not answer within {timeout_s:g} s (is it stuck?)",
    }


def read_listing(data_dir: Path) -> dict[str, Any] | None:
    """The running plant's last published alarms and silences (``alarms.json``)."""
    path = data_dir / ALARMS_FILE
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data
