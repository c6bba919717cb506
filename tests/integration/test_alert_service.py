"""The alert service end to end: alert events in, alarms and silences in a real store,
notifications out over HTTP to real webhook receivers (a local capture server), all driven by
a simulated plant clock."""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from plantwatch.alert.rulefile import RuleSet, parse_rules
from plantwatch.alert.service import AlertService, read_listing, send_command, service_lock
from plantwatch.core.clock import SimulatedClock
from plantwatch.store import ClickHouseStore, migrate
from plantwatch.stream import Pipeline
from plantwatch.stream.outputs import AlertEvent

from alertmanager_support import Answer, HttpCapture, free_port
from batches import T0_MS, readings

T0_S = T0_MS / 1000
MIN = 60.0
HOUR = 3600.0
FAST = {"backoff_s": 0.01}

RULES = """\
version: 1
rules: []
notifications:
  receivers:
    - name: oncall
      webhook: {url: "${HOOK}/oncall"}
    - name: lead
      webhook: {url: "${HOOK}/lead"}
    - name: dead
      webhook: {url: "${DEAD}/dead", timeout_s: 2}
  route:
    receiver: oncall
    group_by: [alertname, machine_id]
    group_wait: 0s
    group_interval: 1m
    repeat_interval: 1h
    escalate:
      - {after: 15m, receiver: lead}
    routes:
      - matchers: [machine_id=DEAD-1]
        receiver: dead
"""


def rules(hook: str, text: str = RULES) -> RuleSet:
    env = {"HOOK": hook, "DEAD": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    return parse_rules(textwrap.dedent(text), source="rules.yaml", env=env)


def event(
    state: str = "firing",
    *,
    machine: str = "M1",
    sensor: str = "vib",
    rule: str = "vibration_zone",
    severity: str = "major",
    at_s: float = T0_S,
    since_s: float = T0_S,
    value: float = 5.2,
) -> AlertEvent:
    labels = {
        "alertname": rule,
        "severity": severity,
        "machine_id": machine,
        "sensor_id": sensor,
        "kind": "vibration",
    }
    return AlertEvent(
        ts_ms=round(at_s * 1000),
        rule=rule,
        state=state,
        severity=severity,
        machine_id=machine,
        sensor_id=sensor,
        kind="vibration",
        value=value,
        message=f"{rule} on {machine}/{sensor}: {value:g} mm/s",
        active_since_ms=round(since_s * 1000),
        labels=labels,
        annotations={"runbook_url": "https://wiki.example/vibration"},
    )


@pytest.fixture
def hook() -> Iterator[HttpCapture]:
    with HttpCapture() as capture:
        yield capture


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0_S)


ServiceFactory = Callable[..., AlertService]


@pytest.fixture
def make_service(
    store: ClickHouseStore, clock: SimulatedClock, tmp_path: Path, hook: HttpCapture
) -> Iterator[ServiceFactory]:
    """AlertServices on the test's store, clock and data folder; closed at the end."""
    made: list[AlertService] = []

    def make(**kw: Any) -> AlertService:
        args: dict[str, Any] = {
            "rules": rules(hook.url),
            "store": store,
            "clock": clock,
            "data_dir": tmp_path,
            "delivery_options": FAST,
        }
        svc = AlertService(**{**args, **kw})
        made.append(svc)
        return svc

    yield make
    for svc in reversed(made):
        svc.close()  # again for those a test closed: harmless


def at(clock: SimulatedClock, svc: AlertService, seconds_after_t0: float) -> None:
    """Move the plant clock and let the service tick once."""
    clock.advance_to(T0_S + seconds_after_t0)
    svc.poll()


def posts(hook: HttpCapture, path: str) -> list[dict[str, Any]]:
    return [r.json() for r in hook.requests if r.path == path]


def delivered(svc: AlertService) -> None:
    assert svc.wait_delivered(5), "notifications still queued after 5 s"


def alarm_row(store: ClickHouseStore, alarm_id: str) -> dict[str, Any]:
    cols = ["status", "ack", "severity", "acknowledged_by", "assignee", "machine_id", "rule"]
    rows = store.query_rows(
        f"SELECT {', '.join(cols)} FROM {store.database}.alarms WHERE alarm_id = %(id)s",
        {"id": alarm_id},
    )
    assert len(rows) == 1, rows
    return dict(zip(cols, rows[0], strict=True))


def alarm_events(store: ClickHouseStore, alarm_id: str) -> list[tuple[Any, ...]]:
    return store.query_rows(
        f"SELECT event, user, comment, assignee, severity FROM {store.database}.alarm_events "
        "WHERE alarm_id = %(id)s ORDER BY ts, event",
        {"id": alarm_id},
    )


def notifications(store: ClickHouseStore) -> list[dict[str, Any]]:
    cols = ["receiver", "reason", "status", "escalation_step", "ok", "attempts", "error"]
    rows = store.query_rows(
        f"SELECT {', '.join(cols)} FROM {store.database}.notifications ORDER BY ts, receiver"
    )
    return [dict(zip(cols, r, strict=True)) for r in rows]


def only_alarm(svc: AlertService, machine: str = "M1", sensor: str = "vib") -> str:
    a = svc.book.for_fingerprint(f"vibration_zone:{machine}/{sensor}")
    assert a is not None
    return a.alarm_id


# --- firing and resolving -------------------------------------------------------------------------


def test_firing_posts_to_oncall_and_creates_an_alarm_resolved_posts_and_clears_it(
    make_service: ServiceFactory, hook: HttpCapture, clock: SimulatedClock, store: ClickHouseStore
) -> None:
    svc = make_service()
    svc.handle([event("firing", at_s=T0_S)])
    delivered(svc)
    [fired] = posts(hook, "/oncall")
    assert (fired["status"], fired["reason"], fired["receiver"]) == ("firing", "new", "oncall")
    [a] = fired["alerts"]
    assert a["fingerprint"] == "vibration_zone:M1/vib"
    assert a["labels"]["machine_id"] == "M1" and a["severity"] == "major"
    assert a["endsAt"] == "0001-01-01T00:00:00Z"
    aid = only_alarm(svc)
    assert a["alarmId"] == aid
    row = alarm_row(store, aid)
    assert (row["status"], row["ack"], row["machine_id"]) == ("ACTIVE", "UNACK", "M1")

    at(clock, svc, 2 * MIN)
    svc.handle([event("resolved", at_s=T0_S + 2 * MIN)])
    delivered(svc)
    [_, res] = posts(hook, "/oncall")
    assert (res["status"], res["reason"]) == ("resolved", "resolved")
    assert res["alerts"][0]["alarmId"] == aid
    assert res["alerts"][0]["endsAt"].endswith("Z") and res["alerts"][0]["endsAt"][0] != "0"
    assert alarm_row(store, aid)["status"] == "CLEARED"
    assert [e[0] for e in alarm_events(store, aid)] == ["created", "cleared"]
    assert svc.book.for_fingerprint("vibration_zone:M1/vib") is None

    at(clock, svc, 3 * HOUR)  # sent once; no escalation of a cleared alarm either
    delivered(svc)
    assert len(hook.requests) == 2


# --- escalation and acknowledgement ---------------------------------------------------------------


def test_unacknowledged_alarm_escalates_to_lead_an_acknowledged_one_does_not(
    make_service: ServiceFactory, hook: HttpCapture, clock: SimulatedClock, store: ClickHouseStore
) -> None:
    svc = make_service()
    svc.handle([event(machine="M1"), event(machine="M2")])
    delivered(svc)
    assert len(posts(hook, "/oncall")) == 2
    m2 = only_alarm(svc, "M2")

    at(clock, svc, 5 * MIN)
    result = svc.execute({"op": "ack", "alarm_id": m2, "user": "ana", "comment": "on it"})
    assert result["ok"] is True
    assert result["alarm"]["ack"] == "ACK" and result["alarm"]["acknowledged_by"] == "ana"

    at(clock, svc, 15 * MIN - 1)
    delivered(svc)
    assert posts(hook, "/lead") == []
    at(clock, svc, 15 * MIN)
    delivered(svc)
    [esc] = posts(hook, "/lead")
    assert (esc["reason"], esc["escalationStep"], esc["receiver"]) == ("escalation", 1, "lead")
    assert [a["labels"]["machine_id"] for a in esc["alerts"]] == ["M1"]

    at(clock, svc, 3 * HOUR)  # M1 repeats; the acknowledged M2 neither repeats nor escalates
    delivered(svc)
    assert len(posts(hook, "/lead")) == 1
    oncall_machines = [
        a["labels"]["machine_id"] for p in posts(hook, "/oncall") for a in p["alerts"]
    ]
    assert oncall_machines.count("M2") == 1

    row = alarm_row(store, m2)
    assert (row["status"], row["ack"], row["acknowledged_by"]) == ("ACTIVE", "ACK", "ana")
    assert ("acknowledged", "ana", "on it") in [e[:3] for e in alarm_events(store, m2)]


def test_commands_on_an_unknown_alarm_fail_naming_it(make_service: ServiceFactory) -> None:
    svc = make_service()
    for op in ("ack", "assign", "comment"):
        cmd = {"op": op, "alarm_id": "A0000000000", "user": "ana", "assignee": "bo", "comment": "x"}
        result = svc.execute(cmd)
        assert result["ok"] is False
        assert "A0000000000" in result["error"]
    no_user = svc.execute({"op": "ack", "alarm_id": "A0000000000"})
    assert no_user["ok"] is False
    assert svc.execute({"op": "reboot"}) == {"ok": False, "error": "unknown command 'reboot'"}


def test_assign_and_comment_land_in_alarm_events(
    make_service: ServiceFactory, clock: SimulatedClock, store: ClickHouseStore
) -> None:
    svc = make_service()
    svc.handle([event()])
    aid = only_alarm(svc)
    at(clock, svc, MIN)
    assert svc.execute({"op": "assign", "alarm_id": aid, "assignee": "bo", "user": "ana"})["ok"]
    at(clock, svc, 2 * MIN)
    cmd = {"op": "comment", "alarm_id": aid, "user": "bo", "comment": "bearing ordered"}
    assert svc.execute(cmd)["ok"]
    events = alarm_events(store, aid)
    assert [e[0] for e in events] == ["created", "assigned", "commented"]
    assert events[1][:4] == ("assigned", "ana", "", "bo")
    assert events[2][:4] == ("commented", "bo", "bearing ordered", "bo")
    assert alarm_row(store, aid)["assignee"] == "bo"
    assert svc.book.get(aid).comments == [(round((T0_S + 2 * MIN) * 1000), "bo", "bearing ordered")]


# --- silences -------------------------------------------------------------------------------------


def test_silences_mute_matching_alerts_until_they_end_or_are_expired(
    make_service: ServiceFactory, hook: HttpCapture, clock: SimulatedClock, store: ClickHouseStore
) -> None:
    svc = make_service()
    add = svc.execute(
        {
            "op": "silence_add",
            "matchers": ["machine_id=M2"],
            "duration_ms": 600_000,
            "user": "ana",
            "comment": "maintenance",
        }
    )
    assert add["ok"] is True
    long_one = svc.execute(
        {"op": "silence_add", "matchers": ["machine_id=M3"], "duration_ms": 3_600_000, "user": "bo"}
    )
    svc.handle([event(machine="M1"), event(machine="M2"), event(machine="M3")])
    delivered(svc)

    def machines() -> list[str]:
        return [a["labels"]["machine_id"] for p in posts(hook, "/oncall") for a in p["alerts"]]

    assert machines() == ["M1"]
    at(clock, svc, 5 * MIN)
    delivered(svc)
    assert machines() == ["M1"]
    at(clock, svc, 10 * MIN)  # M2's silence ends: M2 still fires
    delivered(svc)
    assert machines() == ["M1", "M2"]

    sid = long_one["silence"]["silence_id"]
    expired = svc.execute({"op": "silence_expire", "silence_id": sid, "user": "bo"})
    assert expired["ok"] is True and expired["silence"]["state"] == "expired"
    at(clock, svc, 11 * MIN)
    delivered(svc)
    assert machines() == ["M1", "M2", "M3"]

    rows = store.query_rows(
        "SELECT silence_id, created_by, comment, toUnixTimestamp64Milli(ends_at) "
        f"FROM {store.database}.silences FINAL ORDER BY created_by"
    )
    assert rows == [
        (add["silence"]["silence_id"], "ana", "maintenance", round(T0_S * 1000) + 600_000),
        (sid, "bo", "", round((T0_S + 10 * MIN) * 1000)),  # expired when the clock showed 10 min
    ]
    bad = svc.execute({"op": "silence_expire", "silence_id": "Snope"})
    assert bad["ok"] is False and "Snope" in bad["error"]
    everything = svc.execute({"op": "silence_add", "matchers": [], "duration_ms": 1, "user": "x"})
    assert everything["ok"] is False


# --- repeats --------------------------------------------------------------------------------------


def test_a_still_firing_alarm_is_repeated_after_the_repeat_interval_not_before(
    make_service: ServiceFactory, hook: HttpCapture, clock: SimulatedClock
) -> None:
    svc = make_service()
    svc.handle([event()])
    for minutes in (1, 15, 30, 59):
        at(clock, svc, minutes * MIN)
    at(clock, svc, HOUR - 0.001)
    delivered(svc)
    assert [p["reason"] for p in posts(hook, "/oncall")] == ["new"]
    at(clock, svc, HOUR)
    delivered(svc)
    assert [p["reason"] for p in posts(hook, "/oncall")] == ["new", "repeat"]
    assert posts(hook, "/oncall")[1]["alerts"][0]["status"] == "firing"


# --- restart --------------------------------------------------------------------------------------


def test_a_restart_keeps_alarms_and_routing_state(
    make_service: ServiceFactory, hook: HttpCapture, clock: SimulatedClock, store: ClickHouseStore
) -> None:
    svc1 = make_service()
    svc1.handle([event()])
    at(clock, svc1, 2 * MIN)
    delivered(svc1)
    aid = only_alarm(svc1)
    svc1.close()
    assert len(hook.requests) == 1

    svc2 = make_service()
    restored = svc2.book.for_fingerprint("vibration_zone:M1/vib")
    assert restored is not None and restored.alarm_id == aid and restored.active
    assert svc2.router.pending_escalations() == 1
    at(clock, svc2, 10 * MIN)  # less than the repeat interval: nothing new
    delivered(svc2)
    assert len(hook.requests) == 1
    at(clock, svc2, 15 * MIN - 1)
    delivered(svc2)
    assert posts(hook, "/lead") == []
    at(clock, svc2, 15 * MIN)  # the pending escalation, on time
    delivered(svc2)
    [esc] = posts(hook, "/lead")
    assert (esc["reason"], esc["escalationStep"], esc["alerts"][0]["alarmId"]) == (
        "escalation",
        1,
        aid,
    )

    at(clock, svc2, 20 * MIN)
    svc2.handle([event("resolved", at_s=T0_S + 20 * MIN)])
    at(clock, svc2, 2 * HOUR)
    delivered(svc2)
    assert [(p["reason"], p["status"]) for p in posts(hook, "/oncall")] == [
        ("new", "firing"),
        ("resolved", "resolved"),
    ]
    assert alarm_row(store, aid)["status"] == "CLEARED"


def test_a_replayed_firing_of_a_cleared_alarm_is_not_notified_again(
    make_service: ServiceFactory, hook: HttpCapture, clock: SimulatedClock
) -> None:
    """After a crash the stream may replay events the service already handled: the firing and
    the resolution of an alarm since cleared. The alarm book ignores them (the same firing is
    the same alarm); the notifications must too, or the receivers hear of a fire nobody will
    ever resolve, every repeat interval, and the lead gets an escalation."""
    svc = make_service()
    fired, cleared = event(), event("resolved", at_s=T0_S + MIN)
    svc.handle([fired])
    at(clock, svc, 2 * MIN)
    svc.handle([cleared])
    delivered(svc)
    assert [p["status"] for p in posts(hook, "/oncall")] == ["firing", "resolved"]

    at(clock, svc, 3 * MIN)
    svc.handle([fired])  # the replay
    svc.handle([cleared])
    for minutes in (4, 20, 90, 180):
        at(clock, svc, minutes * MIN)
    delivered(svc)
    assert [(r.path, r.json()["status"]) for r in hook.requests] == [
        ("/oncall", "firing"),
        ("/oncall", "resolved"),
    ]


# --- severity -------------------------------------------------------------------------------------


def test_a_higher_severity_escalates_the_alarm(
    make_service: ServiceFactory, clock: SimulatedClock, store: ClickHouseStore
) -> None:
    svc = make_service()
    svc.handle([event(severity="major", value=5.0)])
    aid = only_alarm(svc)
    at(clock, svc, MIN)
    svc.handle([event(severity="critical", at_s=T0_S + MIN, value=8.0)])
    at(clock, svc, 2 * MIN)
    svc.handle([event(severity="major", at_s=T0_S + 2 * MIN, value=5.0)])  # never downwards
    assert only_alarm(svc) == aid
    assert [e[0] for e in alarm_events(store, aid)] == ["created", "escalated"]
    assert alarm_events(store, aid)[1][4] == "critical"
    assert alarm_row(store, aid)["severity"] == "critical"
    assert svc.book.get(aid).severity == "critical"


# --- the notifications table ----------------------------------------------------------------------


def test_every_delivery_is_recorded_failures_after_their_retries(
    make_service: ServiceFactory, hook: HttpCapture, clock: SimulatedClock, store: ClickHouseStore
) -> None:
    svc = make_service(delivery_options={"backoff_s": 0.01, "max_attempts": 2})
    svc.handle([event(machine="M1"), event(machine="DEAD-1")])
    at(clock, svc, 15 * MIN)
    delivered(svc)
    rows = notifications(store)
    ok = [
        (r["receiver"], r["reason"], r["escalation_step"], r["attempts"]) for r in rows if r["ok"]
    ]
    # DEAD-1's route inherits the root's escalation chain: the lead hears of both
    assert sorted(ok) == [
        ("lead", "escalation", 1, 1),
        ("lead", "escalation", 1, 1),
        ("oncall", "new", 0, 1),
    ]
    assert len(posts(hook, "/lead")) == 2
    assert all(r["error"] == "" for r in rows if r["ok"])
    [failed] = [r for r in rows if not r["ok"]]
    assert (failed["receiver"], failed["reason"], failed["attempts"]) == ("dead", "new", 2)
    assert "connection refused" in failed["error"]
    assert "'dead'" in failed["error"]
    summary = svc.summary()
    assert (summary["notifications_sent"], summary["notifications_failed"]) == (3, 1)
    assert summary["alarms_active"] == 2 and summary["alarms_unacknowledged"] == 2


# --- the CLI side ---------------------------------------------------------------------------------


def test_the_cli_inbox_lock_and_listing_while_the_service_runs(
    make_service: ServiceFactory, clock: SimulatedClock, tmp_path: Path, store: ClickHouseStore
) -> None:
    svc = make_service(tick_s=0.05)
    svc.handle([event()])
    aid = only_alarm(svc)
    svc.start()
    try:
        with service_lock(tmp_path) as free:
            assert free is False
        result = send_command(
            tmp_path, {"op": "ack", "alarm_id": aid, "user": "ana", "comment": "cli"}, timeout_s=5
        )
        assert result["ok"] is True, result
        assert result["alarm"]["ack"] == "ACK"
        assert svc.book.get(aid).acknowledged_by == "ana"
        bad = send_command(tmp_path, {"op": "ack", "alarm_id": "Anope", "user": "ana"}, timeout_s=5)
        assert bad["ok"] is False and "Anope" in bad["error"]
        deadline = time.monotonic() + 5
        while True:  # the ticker publishes the listing after the command
            listing = read_listing(tmp_path)
            assert listing is not None
            [shown] = listing["alarms"]
            if shown["ack"] == "ACK" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert (shown["alarm_id"], shown["status"], shown["ack"]) == (aid, "ACTIVE", "ACK")
    finally:
        svc.close()
    with service_lock(tmp_path) as free:
        assert free is True
    assert list((tmp_path / "commands").glob("*.json")) == []
    assert alarm_row(store, aid)["ack"] == "ACK"


# --- a slow receiver does not slow the pipeline ---------------------------------------------------

PUMP = {"p1": "centrifugal_pump", "p2": "centrifugal_pump"}
SLOW_RULES = """\
version: 1
rules: []
notifications:
  receivers:
    - name: hook
      webhook: {url: "${HOOK}/hook", timeout_s: 5}
  route:
    receiver: hook
    group_by: [alertname, machine_id, sensor_id]
    group_wait: 0s
"""


def vibration_batches(n: int, seconds: int = 30) -> list[pa.Table]:
    """Two pumps at 1 Hz; their vibration steps to 9 mm/s from 5 to 9 minutes in."""
    rng = np.random.default_rng(7)
    out = []
    for b in range(n):
        t = np.arange(b * seconds, (b + 1) * seconds)
        vib = np.where((t >= 300) & (t < 540), 9.0, 2.0) + rng.normal(0, 0.05, seconds)
        out.append(
            pa.concat_tables(
                readings(
                    machine=m,
                    sensor="vib",
                    kind="vibration",
                    values=vib,
                    ts_ms=T0_MS + 1000 * t,
                    seq=t + 1,
                )
                for m in PUMP
            )
        )
    return out


@contextmanager
def fresh_store(engine: ClickHouseStore) -> Iterator[ClickHouseStore]:
    """A database of its own (as the ``store`` fixture), for a second run in one test."""
    db = engine.using(f"t_{uuid.uuid4().hex[:12]}")
    migrate(db)
    try:
        yield db
    finally:
        db.command(f"DROP DATABASE IF EXISTS {db.database}")


def run_plant(
    engine: ClickHouseStore, hook: HttpCapture, data_dir: Path
) -> tuple[float, float, int]:
    """Stream the batches through a fresh pipeline into a fresh alert service whose receiver
    is ``hook``: (seconds for all batches, the slowest handle() call, alert events handled)."""
    data_dir.mkdir()
    clock = SimulatedClock(T0_S)
    with fresh_store(engine) as store:
        svc = AlertService(
            rules=rules(hook.url, SLOW_RULES),
            store=store,
            clock=clock,
            data_dir=data_dir,
            delivery_options={"backoff_s": 0.01, "max_attempts": 1},
        )
        try:
            pipeline = Pipeline(machine_types=PUMP)
            slowest, handled = 0.0, 0
            start = time.perf_counter()
            for b in vibration_batches(40):
                now_ms = int(b.column("ts")[-1].value) + 1000
                clock.advance_to(now_ms / 1000)
                out = pipeline.process(b, now_ms=now_ms)
                t = time.perf_counter()
                svc.handle(out.alerts)
                slowest = max(slowest, time.perf_counter() - t)
                handled += len(out.alerts)
                svc.poll()
            elapsed = time.perf_counter() - start
            hook.wait_for(lambda r: r.path == "/hook", timeout=5)  # it was called
        finally:
            hook.close()  # frees a hanging handler: the worker gives up at once
            svc.close()
    return elapsed, slowest, handled


@pytest.mark.slow
def test_a_hanging_receiver_does_not_slow_the_pipeline(
    chdb_engine: ClickHouseStore, tmp_path: Path
) -> None:
    run_plant(chdb_engine, HttpCapture(), tmp_path / "warm-up")
    hanging = HttpCapture(Answer(hang_s=10))
    slow_s, slow_max, slow_n = run_plant(chdb_engine, hanging, tmp_path / "hanging")
    fast = HttpCapture()
    fast_s, fast_max, fast_n = run_plant(chdb_engine, fast, tmp_path / "fast")
    print(
        f"fast {fast_s:.3f} s (max handle {fast_max:.3f}), hanging {slow_s:.3f} s "
        f"(max handle {slow_max:.3f}), {fast_n} alert events"
    )
    assert fast_n == slow_n and fast_n >= 4  # fired and resolved, two pumps
    assert len(fast.requests) >= 4
    assert len(hanging.requests) < len(fast.requests)  # it really hung
    assert slow_max < 0.5
    assert slow_s <= 2 * fast_s + 0.5
