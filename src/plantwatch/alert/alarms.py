"""Alarms: what people act on, after ThingsBoard's alarms.

One active alarm per alert instance (rule × machine × sensor). It is created when the instance
fires, escalated when its severity rises, cleared when it resolves. Independently of that, people
acknowledge it (with a comment), assign it and comment on it: ACTIVE/CLEARED × UNACK/ACK.
Every change is an :class:`AlarmEvent`, appended to the store's ``alarm_events`` table; the
``alarms`` view folds them into the current state.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from plantwatch.alert.rules import SEVERITY_RANK
from plantwatch.core.errors import PlantwatchError
from plantwatch.core.reading import TS_TYPE
from plantwatch.store.client import Store
from plantwatch.stream.outputs import AlertEvent

ALARM_EVENTS_SCHEMA = pa.schema(
    [
        ("alarm_id", pa.string()),
        ("ts", TS_TYPE),
        ("event", pa.string()),
        ("fingerprint", pa.string()),
        ("rule", pa.string()),
        ("machine_id", pa.string()),
        ("sensor_id", pa.string()),
        ("kind", pa.string()),
        ("severity", pa.string()),
        ("value", pa.float64()),
        ("message", pa.string()),
        ("user", pa.string()),
        ("comment", pa.string()),
        ("assignee", pa.string()),
        ("created_at", TS_TYPE),
    ]
)

#: cleared alarms kept in memory (for acknowledging them late) before the oldest are forgotten
KEEP_CLEARED = 10_000


class AlarmError(PlantwatchError):
    """An alarm command that cannot be carried out (unknown id, missing user)."""


def alarm_id(fingerprint: str, active_since_ms: int) -> str:
    """Stable: the same firing (even replayed after a crash) is the same alarm."""
    h = hashlib.sha1(f"{fingerprint}|{active_since_ms}".encode()).hexdigest()
    return "A" + h[:10]


@dataclass(slots=True)
class Alarm:
    alarm_id: str
    fingerprint: str
    rule: str
    machine_id: str
    sensor_id: str
    kind: str
    severity: str
    created_ms: int
    value: float = math.nan
    message: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    status: str = "ACTIVE"  # ACTIVE | CLEARED
    acknowledged: bool = False
    acknowledged_by: str = ""
    acknowledged_ms: int | None = None
    assignee: str = ""
    cleared_ms: int | None = None
    comments: list[tuple[int, str, str]] = field(default_factory=list)  # (ms, user, text)

    @property
    def active(self) -> bool:
        return self.status == "ACTIVE"

    def as_dict(self) -> dict[str, Any]:
        return {
            "alarm_id": self.alarm_id,
            "status": self.status,
            "ack": "ACK" if self.acknowledged else "UNACK",
            "severity": self.severity,
            "rule": self.rule,
            "machine_id": self.machine_id,
            "sensor_id": self.sensor_id,
            "kind": self.kind,
            "value": None if math.isnan(self.value) else self.value,
            "message": self.message,
            "created_ms": self.created_ms,
            "cleared_ms": self.cleared_ms,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_ms": self.acknowledged_ms,
            "assignee": self.assignee,
        }


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    alarm_id: str
    ts_ms: int
    event: str  # created | escalated | cleared | acknowledged | assigned | commented
    alarm: Alarm
    user: str = ""
    comment: str = ""


def events_table(events: Sequence[AlarmEvent]) -> pa.Table:
    def ms(xs: Iterable[int]) -> pa.Array:
        return pa.array(list(xs), pa.int64()).cast(TS_TYPE)

    return pa.table(
        {
            "alarm_id": [e.alarm_id for e in events],
            "ts": ms(e.ts_ms for e in events),
            "event": [e.event for e in events],
            "fingerprint": [e.alarm.fingerprint for e in events],
            "rule": [e.alarm.rule for e in events],
            "machine_id": [e.alarm.machine_id for e in events],
            "sensor_id": [e.alarm.sensor_id for e in events],
            "kind": [e.alarm.kind for e in events],
            "severity": [e.alarm.severity for e in events],
            "value": pa.array([e.alarm.value for e in events], pa.float64()),
            "message": [e.alarm.message for e in events],
            "user": [e.user for e in events],
            "comment": [e.comment for e in events],
            "assignee": [e.alarm.assignee for e in events],
            "created_at": ms(e.alarm.created_ms for e in events),
        },
        schema=ALARM_EVENTS_SCHEMA,
    )


class AlarmBook:
    def __init__(self) -> None:
        self.active: dict[str, Alarm] = {}  # by fingerprint
        self._by_id: OrderedDict[str, Alarm] = OrderedDict()

    # -- from the stream -------------------------------------------------------------------------

    def apply(self, e: AlertEvent) -> list[AlarmEvent]:
        """Alarm changes caused by one alert event (firing creates or escalates, resolved
        clears; pending, recovering and normal change nothing)."""
        fp = e.fingerprint
        current = self.active.get(fp)
        if e.state == "firing":
            if current is None:
                a = Alarm(
                    alarm_id=alarm_id(fp, e.active_since_ms),
                    fingerprint=fp,
                    rule=e.rule,
                    machine_id=e.machine_id,
                    sensor_id=e.sensor_id,
                    kind=e.kind,
                    severity=e.severity,
                    created_ms=e.ts_ms,
                    value=e.value,
                    message=e.message,
                    labels=dict(e.labels),
                    annotations=dict(e.annotations),
                )
                if a.alarm_id in self._by_id:  # the same firing again (a replay)
                    return []
                self._remember(a)
                self.active[fp] = a
                return [AlarmEvent(a.alarm_id, e.ts_ms, "created", replace(a))]
            if SEVERITY_RANK.get(e.severity, 0) > SEVERITY_RANK.get(current.severity, 0):
                current.severity = e.severity
                current.value, current.message = e.value, e.message
                current.labels, current.annotations = dict(e.labels), dict(e.annotations)
                return [AlarmEvent(current.alarm_id, e.ts_ms, "escalated", replace(current))]
            return []
        if e.state == "resolved" and current is not None:
            current.status = "CLEARED"
            current.cleared_ms = e.ts_ms
            del self.active[fp]
            return [AlarmEvent(current.alarm_id, e.ts_ms, "cleared", replace(current))]
        return []

    # -- from people -----------------------------------------------------------------------------

    def get(self, alarm_id: str) -> Alarm:
        a = self._by_id.get(alarm_id)
        if a is None:
            raise AlarmError(
                f"no alarm {alarm_id!r}: `plantwatch alarms list` shows the ids (A + 10 hex)"
            )
        return a

    def acknowledge(self, alarm_id: str, user: str, comment: str, now_ms: int) -> AlarmEvent:
        _need_user(user)
        a = self.get(alarm_id)
        if not a.acknowledged:
            a.acknowledged, a.acknowledged_by, a.acknowledged_ms = True, user, now_ms
        return AlarmEvent(a.alarm_id, now_ms, "acknowledged", replace(a), user, comment)

    def assign(self, alarm_id: str, user: str, now_ms: int, *, by: str = "") -> AlarmEvent:
        _need_user(user)
        a = self.get(alarm_id)
        a.assignee = user
        return AlarmEvent(a.alarm_id, now_ms, "assigned", replace(a), by or user)

    def comment(self, alarm_id: str, user: str, text: str, now_ms: int) -> AlarmEvent:
        _need_user(user)
        a = self.get(alarm_id)
        a.comments.append((now_ms, user, text))
        return AlarmEvent(a.alarm_id, now_ms, "commented", replace(a), user, text)

    # -- state -----------------------------------------------------------------------------------

    def for_fingerprint(self, fingerprint: str) -> Alarm | None:
        return self.active.get(fingerprint)

    def alarms(self, *, active_only: bool = False) -> list[Alarm]:
        xs = [a for a in self._by_id.values() if a.active or not active_only]
        return sorted(xs, key=lambda a: (-SEVERITY_RANK.get(a.severity, 0), a.created_ms))

    def restore(self, alarms: Iterable[Alarm]) -> int:
        n = 0
        for a in sorted(alarms, key=lambda x: x.created_ms):
            self._remember(a)
            if a.active:
                self.active[a.fingerprint] = a
            n += 1
        return n

    def _remember(self, a: Alarm) -> None:
        self._by_id[a.alarm_id] = a
        while len(self._by_id) > len(self.active) + KEEP_CLEARED:
            oldest = next(iter(self._by_id))
            if self._by_id[oldest].active:
                self._by_id.move_to_end(oldest)
                continue
            del self._by_id[oldest]


def _need_user(user: str) -> None:
    if not user.strip():
        raise AlarmError("say who you are: --user NAME")


def load_alarms(store: Store, *, cleared: int = 1000) -> list[Alarm]:
    """Active alarms and the ``cleared`` most recently cleared ones, from the ``alarms`` view."""
    db = store.database
    cols = (
        "alarm_id, fingerprint, toString(rule), toString(machine_id), toString(sensor_id), "
        "toString(kind), toString(severity), toUnixTimestamp64Milli(created_at), value, message, "
        "status, ack, acknowledged_by, toUnixTimestamp64Milli(acknowledged_at), assignee, "
        "toUnixTimestamp64Milli(cleared_at)"
    )
    rows = store.query_rows(
        f"SELECT {cols} FROM {db}.alarms WHERE status = 'ACTIVE' "
        f"UNION ALL SELECT * FROM (SELECT {cols} FROM {db}.alarms WHERE status = 'CLEARED' "
        f"ORDER BY cleared_at DESC LIMIT {int(cleared)})"
    )
    out = []
    for r in rows:
        acked = r[11] == "ACK"
        out.append(
            Alarm(
                alarm_id=str(r[0]),
                fingerprint=str(r[1]),
                rule=str(r[2]),
                machine_id=str(r[3]),
                sensor_id=str(r[4]),
                kind=str(r[5]),
                severity=str(r[6]),
                created_ms=int(r[7]),
                value=float(r[8]),
                message=str(r[9]),
                status=str(r[10]),
                acknowledged=acked,
                acknowledged_by=str(r[12]),
                acknowledged_ms=int(r[13]) if acked else None,
                assignee=str(r[14]),
                cleared_ms=int(r[15]) if r[10] == "CLEARED" else None,
            )
        )
    return out
