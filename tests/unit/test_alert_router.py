"""The notification router alone (pure logic, explicit ``now_ms``): the route tree, grouping,
group_wait / group_interval / repeat_interval, resolved alerts, silences, escalation chains and
acknowledgement, snapshot/restore and the final flush."""

from __future__ import annotations

import json

from plantwatch.alert.notify.config import (
    EscalationStep,
    Matcher,
    NotificationConfig,
    Route,
)
from plantwatch.alert.notify.model import AlertInstance, Notification
from plantwatch.alert.notify.router import Router, routes_for
from plantwatch.alert.notify.silences import Silences, new_silence

T0 = 1_800_000_000_000  # plant-clock epoch ms
S = 1000
M = 60 * S
H = 60 * M


def alert(
    machine: str = "M1",
    sensor: str = "vib",
    *,
    rule: str = "vibration_zone",
    status: str = "firing",
    severity: str = "major",
    kind: str = "vibration",
    **extra: str,
) -> AlertInstance:
    labels = {
        "alertname": rule,
        "severity": severity,
        "machine_id": machine,
        "sensor_id": sensor,
        "kind": kind,
        **extra,
    }
    return AlertInstance(
        fingerprint=f"{rule}:{machine}/{sensor}",
        rule=rule,
        status=status,  # type: ignore[arg-type]
        severity=severity,
        labels=labels,
        annotations={"summary": f"{rule} on {machine}/{sensor}"},
        starts_at_ms=T0,
        ends_at_ms=None if status == "firing" else T0 + H,
        value=5.0,
    )


def resolved(a: AlertInstance) -> AlertInstance:
    return alert(
        a.labels["machine_id"],
        a.labels["sensor_id"],
        rule=a.rule,
        status="resolved",
        severity=a.severity,
        kind=a.labels["kind"],
    )


def config(
    *routes: Route,
    receiver: str = "oncall",
    group_by: tuple[str, ...] = ("alertname", "machine_id"),
    group_wait_s: float = 0.0,
    group_interval_s: float = 60.0,
    repeat_interval_s: float = 3600.0,
    escalate: tuple[EscalationStep, ...] = (),
) -> NotificationConfig:
    return NotificationConfig(
        route=Route(
            receiver=receiver,
            group_by=group_by,
            group_wait_s=group_wait_s,
            group_interval_s=group_interval_s,
            repeat_interval_s=repeat_interval_s,
            escalate=escalate,
            routes=routes,
        )
    )


def m(*texts: str) -> tuple[Matcher, ...]:
    return tuple(Matcher.parse(t) for t in texts)


def fps(n: Notification) -> list[str]:
    return [a.fingerprint for a in n.alerts]


def summary(ns: list[Notification]) -> list[tuple[str, str, str, int]]:
    """(receiver, reason, status, alerts) of each notification, in order."""
    return [(n.receiver, n.reason, n.status, len(n.alerts)) for n in ns]


# --- the route tree -------------------------------------------------------------------------------

TREE = Route(
    receiver="default",
    group_by=("alertname", "machine_id"),
    group_wait_s=10.0,
    group_interval_s=60.0,
    repeat_interval_s=4 * 3600.0,
    routes=(
        Route(
            receiver="hydraulics",
            matchers=m("team=hydraulics"),
            routes=(
                Route(receiver="cmms", matchers=m("severity=critical"), repeat_interval_s=3600),
            ),
        ),
        Route(receiver="slack", matchers=m('severity=~"major|critical"'), continue_=True),
        Route(receiver="vibration", matchers=m("kind=vibration"), group_wait_s=0.0),
        Route(receiver="line9", matchers=m("line=L9")),
    ),
)


def receivers_for(**labels: str) -> list[str]:
    return [r.receiver for r in routes_for(TREE, labels)]


def test_the_first_matching_child_takes_the_alert_and_its_children_are_tried_in_turn() -> None:
    # team=hydraulics matches the first child, which does not continue: nothing after it
    assert receivers_for(team="hydraulics", severity="major", kind="vibration") == ["hydraulics"]
    # ... and its own child (severity=critical) takes it further down
    [cmms] = routes_for(TREE, {"team": "hydraulics", "severity": "critical"})
    assert (cmms.receiver, cmms.route_id) == ("cmms", "0.0.0")
    assert cmms.repeat_interval_ms == 3_600_000  # its own
    assert (cmms.group_wait_ms, cmms.group_interval_ms) == (10_000, 60_000)  # inherited
    assert cmms.group_by == ("alertname", "machine_id")


def test_continue_goes_on_to_the_next_siblings_and_stops_at_one_without_it() -> None:
    # slack continues; vibration matches and does not continue: line9 is never tried
    assert receivers_for(severity="critical", kind="vibration", line="L9") == [
        "slack",
        "vibration",
    ]
    assert receivers_for(severity="major", kind="temperature", line="L9") == ["slack", "line9"]
    # a continuing route that is the only match still takes the alert alone
    assert receivers_for(severity="major", kind="temperature") == ["slack"]
    vib = routes_for(TREE, {"severity": "major", "kind": "vibration"})[1]
    assert vib.group_wait_ms == 0 and vib.repeat_interval_ms == 4 * 3_600_000


def test_an_alert_no_child_takes_stays_with_the_parent() -> None:
    [root] = routes_for(TREE, {"severity": "info", "kind": "temperature", "line": "L1"})
    assert (root.receiver, root.route_id) == ("default", "0")
    # hydraulics, but not critical: its child does not match, it stays at hydraulics
    [hyd] = routes_for(TREE, {"team": "hydraulics", "severity": "minor"})
    assert (hyd.receiver, hyd.route_id) == ("hydraulics", "0.0")


def test_alerts_go_to_every_route_they_match_as_separate_notifications() -> None:
    r = Router(NotificationConfig(route=TREE))
    r.observe(alert("M1", severity="critical", kind="vibration"), T0)
    out = r.tick(T0)  # vibration: group_wait 0; slack still waits 10 s
    assert summary(out) == [("vibration", "new", "firing", 1)]
    out = r.tick(T0 + 10 * S)
    assert summary(out) == [("slack", "new", "firing", 1)]


# --- grouping -------------------------------------------------------------------------------------


def test_two_machines_are_two_groups_and_two_sensors_of_one_machine_one_notification() -> None:
    r = Router(config())
    m1_vib, m1_temp, m2_vib = alert("M1", "vib"), alert("M1", "vib2"), alert("M2", "vib")
    for a in (m1_vib, m1_temp, m2_vib):
        r.observe(a, T0)
    out = sorted(r.tick(T0), key=lambda n: n.group_key)
    assert summary(out) == [("oncall", "new", "firing", 2), ("oncall", "new", "firing", 1)]
    assert fps(out[0]) == sorted([m1_vib.fingerprint, m1_temp.fingerprint])
    assert out[0].group_labels == {"alertname": "vibration_zone", "machine_id": "M1"}
    assert out[0].common_labels["machine_id"] == "M1"
    assert "sensor_id" not in out[0].common_labels  # the two sensors differ
    assert fps(out[1]) == [m2_vib.fingerprint]
    assert out[1].group_labels == {"alertname": "vibration_zone", "machine_id": "M2"}
    assert out[0].group_key != out[1].group_key
    assert r.tick(T0 + 1) == []


def test_group_wait_batches_alerts_that_arrive_within_it() -> None:
    r = Router(config(group_wait_s=10))
    r.observe(alert("M1", "vib"), T0)
    assert r.tick(T0) == []
    r.observe(alert("M1", "vib2"), T0 + 5 * S)
    assert r.tick(T0 + 10 * S - 1) == []
    out = r.tick(T0 + 10 * S)
    assert summary(out) == [("oncall", "new", "firing", 2)]
    assert out[0].created_ms == T0 + 10 * S
    assert r.tick(T0 + 11 * S) == []


def test_group_interval_delays_an_update_of_a_group_already_notified() -> None:
    r = Router(config(group_wait_s=10, group_interval_s=60))
    r.observe(alert("M1", "vib"), T0)
    assert summary(r.tick(T0 + 10 * S)) == [("oncall", "new", "firing", 1)]
    r.observe(alert("M1", "vib2"), T0 + 20 * S)  # joins the group after it was sent
    assert r.tick(T0 + 20 * S) == []
    assert r.tick(T0 + 70 * S - 1) == []  # group_interval after the last notification
    out = r.tick(T0 + 70 * S)
    assert summary(out) == [("oncall", "update", "firing", 2)]  # the whole group, as in AM
    assert r.tick(T0 + 71 * S) == []


def test_repeat_interval_resends_a_group_still_firing_and_not_earlier() -> None:
    r = Router(config(repeat_interval_s=3600))
    r.observe(alert(), T0)
    assert summary(r.tick(T0)) == [("oncall", "new", "firing", 1)]
    for t in (T0 + M, T0 + 30 * M, T0 + H - 1):
        assert r.tick(t) == [], t
    assert summary(r.tick(T0 + H)) == [("oncall", "repeat", "firing", 1)]
    assert r.tick(T0 + 2 * H - 1) == []
    assert summary(r.tick(T0 + 2 * H)) == [("oncall", "repeat", "firing", 1)]


def test_a_resolved_alert_is_sent_once_then_leaves_the_group() -> None:
    r = Router(config(group_interval_s=60))
    a = alert()
    r.observe(a, T0)
    assert len(r.tick(T0)) == 1
    r.observe(resolved(a), T0 + 10 * S)
    assert r.tick(T0 + 60 * S - 1) == []  # a change: waits group_interval
    out = r.tick(T0 + 60 * S)
    assert summary(out) == [("oncall", "resolved", "resolved", 1)]
    assert out[0].alerts[0].status == "resolved"
    assert out[0].alerts[0].ends_at_ms is not None
    for t in (T0 + 2 * M, T0 + 2 * H, T0 + 24 * H):
        assert r.tick(t) == []
    assert r.snapshot()["groups"] == []


def test_a_group_with_one_resolved_and_one_firing_alert_sends_both_then_only_the_firing() -> None:
    r = Router(config(group_interval_s=60, repeat_interval_s=3600))
    a, b = alert("M1", "vib"), alert("M1", "vib2")
    r.observe(a, T0)
    r.observe(b, T0)
    assert summary(r.tick(T0)) == [("oncall", "new", "firing", 2)]
    r.observe(resolved(a), T0 + M)
    [n] = r.tick(T0 + 2 * M)
    assert (n.reason, n.status) == ("update", "firing")
    assert {x.fingerprint: x.status for x in n.alerts} == {
        a.fingerprint: "resolved",
        b.fingerprint: "firing",
    }
    [rep] = r.tick(T0 + 2 * M + H)
    assert (rep.reason, fps(rep)) == ("repeat", [b.fingerprint])


def test_an_alert_that_resolves_before_its_group_was_sent_is_never_notified() -> None:
    r = Router(config(group_wait_s=10))
    a = alert()
    r.observe(a, T0)
    r.observe(resolved(a), T0 + 5 * S)
    for t in (T0 + 10 * S, T0 + M, T0 + 2 * H):
        assert r.tick(t) == []
    assert r.snapshot()["groups"] == []
    # a resolution nobody heard fire does not open a group either
    r.observe(resolved(alert("M7")), T0 + 3 * H)
    assert r.tick(T0 + 3 * H) == [] and r.snapshot()["groups"] == []


# --- silences -------------------------------------------------------------------------------------


def silenced_router() -> Router:
    silences = Silences()
    silences.add(
        new_silence(["machine_id=M2"], starts_ms=T0, ends_ms=T0 + 10 * M, created_by="ana")
    )
    return Router(config(), silences=silences)


def test_a_silence_mutes_matching_alerts_until_it_ends_others_go_through() -> None:
    r = silenced_router()
    r.observe(alert("M1"), T0)
    r.observe(alert("M2"), T0)
    out = r.tick(T0)
    assert [n.group_labels["machine_id"] for n in out] == ["M1"]
    for t in (T0 + M, T0 + 5 * M, T0 + 10 * M - 1):
        assert r.tick(t) == [], t
    out = r.tick(T0 + 10 * M)  # the silence ended, M2 still fires
    assert summary(out) == [("oncall", "new", "firing", 1)]
    assert out[0].group_labels["machine_id"] == "M2"
    assert r.tick(T0 + 11 * M) == []


def test_a_silenced_alert_that_resolves_is_never_sent() -> None:
    r = silenced_router()
    a = alert("M2")
    r.observe(a, T0 + M)
    assert r.tick(T0 + M) == []
    r.observe(resolved(a), T0 + 3 * M)
    for t in (T0 + 3 * M, T0 + 10 * M, T0 + 20 * M, T0 + 5 * H):
        assert r.tick(t) == [], t
    assert r.snapshot()["groups"] == []


def test_an_expired_silence_lets_the_alert_through_at_once() -> None:
    r = silenced_router()
    r.observe(alert("M2"), T0)
    assert r.tick(T0 + M) == []
    r.silences.expire(r.silences.all()[0].silence_id, T0 + 2 * M)
    assert summary(r.tick(T0 + 2 * M)) == [("oncall", "new", "firing", 1)]


# --- escalation and acknowledgement ---------------------------------------------------------------

CHAIN = (EscalationStep(15 * 60, "lead"), EscalationStep(60 * 60, "manager"))


def test_an_unacknowledged_alarm_escalates_step_by_step() -> None:
    r = Router(config(escalate=CHAIN, repeat_interval_s=4 * 3600))
    a = alert()
    r.observe(a, T0)
    assert summary(r.tick(T0)) == [("oncall", "new", "firing", 1)]
    assert r.pending_escalations() == 1
    assert r.tick(T0 + 15 * M - 1) == []
    [step1] = r.tick(T0 + 15 * M)
    assert (step1.receiver, step1.reason, step1.escalation_step) == ("lead", "escalation", 1)
    assert (step1.status, fps(step1)) == ("firing", [a.fingerprint])
    assert step1.group_key.endswith(":escalation1")
    assert r.tick(T0 + 30 * M) == []
    assert r.tick(T0 + 60 * M - 1) == []
    [step2] = r.tick(T0 + 60 * M)
    assert (step2.receiver, step2.escalation_step) == ("manager", 2)
    assert r.pending_escalations() == 0
    assert r.tick(T0 + 3 * H) == []  # no more steps; no repeat before 4 h


def test_steps_overdue_at_one_tick_are_all_sent() -> None:
    r = Router(config(escalate=CHAIN))
    r.observe(alert(), T0)
    r.tick(T0)
    out = [n for n in r.tick(T0 + 2 * H) if n.reason == "escalation"]
    assert [(n.receiver, n.escalation_step) for n in out] == [("lead", 1), ("manager", 2)]


def test_acknowledging_before_the_first_step_stops_escalation_and_repeats() -> None:
    r = Router(config(escalate=CHAIN, repeat_interval_s=3600))
    a, other = alert("M1"), alert("M2")
    r.observe(a, T0)
    r.observe(other, T0)
    assert len(r.tick(T0)) == 2
    r.acknowledge(a.fingerprint)
    assert r.pending_escalations() == 1  # only the other one's
    out = r.tick(T0 + 15 * M)
    assert [(n.receiver, fps(n)) for n in out] == [("lead", [other.fingerprint])]
    for t in (T0 + H, T0 + 2 * H, T0 + 5 * H):
        out = r.tick(t)
        assert a.fingerprint not in [f for n in out for f in fps(n)], t
    # the acknowledged alarm still gets its resolution
    r.observe(resolved(a), T0 + 6 * H)
    [n] = [n for n in r.tick(T0 + 6 * H) if a.fingerprint in fps(n)]
    assert (n.status, n.reason, fps(n)) == ("resolved", "resolved", [a.fingerprint])


def test_resolving_stops_the_escalation_chain() -> None:
    r = Router(config(escalate=CHAIN))
    a = alert()
    r.observe(a, T0)
    r.tick(T0)
    r.observe(resolved(a), T0 + 5 * M)
    assert summary(r.tick(T0 + 5 * M)) == [("oncall", "resolved", "resolved", 1)]
    assert r.pending_escalations() == 0
    assert r.tick(T0 + 2 * H) == []


def test_an_alarm_escalated_to_another_route_resolves_everywhere() -> None:
    """Routing on severity: major goes to teams (escalating to the lead after 15 min),
    critical to cmms. An alert that rises from major to critical and then resolves must
    leave both groups and stop the teams route's escalation (its labels changed in between)."""
    r = Router(
        config(
            Route(receiver="teams", matchers=m("severity=major"), escalate=CHAIN[:1]),
            Route(receiver="cmms", matchers=m("severity=critical")),
            receiver="log",
            repeat_interval_s=3600,
        )
    )
    r.observe(alert(severity="major"), T0)
    assert summary(r.tick(T0)) == [("teams", "new", "firing", 1)]
    r.observe(alert(severity="critical"), T0 + M)
    assert summary(r.tick(T0 + M)) == [("cmms", "new", "firing", 1)]
    r.observe(resolved(alert(severity="critical")), T0 + 2 * M)
    out = r.tick(T0 + 3 * M)
    assert sorted(summary(out)) == [
        ("cmms", "resolved", "resolved", 1),
        ("teams", "resolved", "resolved", 1),
    ]
    assert r.pending_escalations() == 0
    for t in (T0 + 15 * M, T0 + H, T0 + 2 * H, T0 + 10 * H):
        assert r.tick(t) == [], t  # neither an escalation nor repeats of a resolved alarm
    assert r.snapshot()["groups"] == []


def test_an_alarm_regrouped_by_a_higher_severity_resolves_in_both_groups() -> None:
    r = Router(config(group_by=("alertname", "machine_id", "severity"), escalate=CHAIN))
    r.observe(alert(severity="major"), T0)
    r.observe(alert(severity="critical"), T0 + M)
    assert [n.group_labels["severity"] for n in r.tick(T0 + M)] == ["major", "critical"]
    r.observe(resolved(alert(severity="critical")), T0 + 2 * M)
    out = r.tick(T0 + 3 * M)
    assert sorted((n.group_labels["severity"], n.status) for n in out) == [
        ("critical", "resolved"),
        ("major", "resolved"),
    ]
    assert r.pending_escalations() == 0
    assert r.tick(T0 + 5 * H) == []


# --- persistence and shutdown ---------------------------------------------------------------------


def test_snapshot_through_json_and_restore_continue_without_duplicates() -> None:
    cfg = config(escalate=CHAIN, repeat_interval_s=3600, group_interval_s=60)
    r1 = Router(cfg)
    a, acked = alert("M1"), alert("M2")
    r1.observe(a, T0)
    r1.observe(acked, T0)
    assert len(r1.tick(T0)) == 2
    r1.acknowledge(acked.fingerprint)
    assert r1.tick(T0 + 5 * M) == []

    r2 = Router(cfg)
    r2.restore(json.loads(json.dumps(r1.snapshot())))
    assert r2.snapshot() == r1.snapshot()
    assert r2.pending_escalations() == 1
    assert r2.tick(T0 + 5 * M) == []  # nothing sent twice
    assert r2.tick(T0 + 15 * M - 1) == []
    [esc] = r2.tick(T0 + 15 * M)  # the pending step, on time
    assert (esc.receiver, esc.escalation_step, fps(esc)) == ("lead", 1, [a.fingerprint])
    assert r2.tick(T0 + H - 1) == []
    out = r2.tick(T0 + H)  # the acknowledged one is not repeated
    assert [(n.receiver, n.reason, fps(n)) for n in out] == [
        ("oncall", "repeat", [a.fingerprint]),
        ("manager", "escalation", [a.fingerprint]),
    ]
    r2.observe(resolved(a), T0 + H + M)
    out = r2.tick(T0 + H + 2 * M)
    assert summary(out) == [("oncall", "resolved", "resolved", 1)]
    assert r2.tick(T0 + 3 * H) == []  # the acknowledged M2 still fires, silently


def test_restore_drops_state_of_routes_that_no_longer_exist() -> None:
    old = Router(config(Route(receiver="teams", matchers=m("machine_id=M1"))))
    old.observe(alert("M1"), T0)
    old.tick(T0)
    new = Router(config())  # the child route is gone
    new.restore(json.loads(json.dumps(old.snapshot())))
    assert new.snapshot()["groups"] == []


def test_final_tick_sends_what_waits_for_group_wait_or_group_interval() -> None:
    r = Router(config(group_wait_s=30, group_interval_s=300))
    r.observe(alert("M1"), T0)
    assert r.tick(T0 + S) == []
    assert summary(r.tick(T0 + S, final=True)) == [("oncall", "new", "firing", 1)]
    r.observe(alert("M1", "vib2"), T0 + 2 * S)
    assert r.tick(T0 + 3 * S) == []
    assert summary(r.tick(T0 + 3 * S, final=True)) == [("oncall", "update", "firing", 2)]
    assert r.tick(T0 + 4 * S, final=True) == []  # nothing changed: nothing to send


def test_on_change_is_called_when_something_was_decided() -> None:
    calls: list[int] = []
    r = Router(config(group_wait_s=10), on_change=lambda: calls.append(1))
    r.observe(alert(), T0)
    r.tick(T0)
    assert calls == []
    r.tick(T0 + 10 * S)
    assert calls == [1]


# --- severity rises -------------------------------------------------------------------------------


def test_a_higher_severity_is_an_update_to_the_same_group() -> None:
    r = Router(config(group_interval_s=60.0))
    r.observe(alert(severity="major"), T0)
    assert summary(r.tick(T0)) == [("oncall", "new", "firing", 1)]
    r.observe(alert(severity="critical"), T0 + 10 * S)  # ISO zone D: the same alarm, worse
    assert r.tick(T0 + 30 * S) == []  # group_interval
    [n] = r.tick(T0 + 60 * S)
    assert (n.reason, n.alerts[0].severity) == ("update", "critical")
    assert r.tick(T0 + 30 * M) == []  # nothing new: no repeat before repeat_interval (1 h)


def test_a_severity_rise_does_not_restart_a_finished_escalation_chain() -> None:
    r = Router(config(escalate=CHAIN))
    r.observe(alert(severity="major"), T0)
    r.tick(T0)
    assert [n.receiver for n in r.tick(T0 + 2 * H) if n.reason == "escalation"] == [
        "lead",
        "manager",
    ]
    r.observe(alert(severity="critical"), T0 + 2 * H)
    later = r.tick(T0 + 4 * H)
    assert [n.reason for n in later if n.reason == "escalation"] == []


def test_an_escalation_step_due_during_a_silence_waits_for_its_end() -> None:
    silences = Silences()
    silences.add(
        new_silence(["machine_id=M1"], starts_ms=T0 + 10 * M, ends_ms=T0 + 40 * M, created_by="ana")
    )
    r = Router(config(escalate=CHAIN), silences=silences)
    r.observe(alert(), T0)
    r.tick(T0)
    assert r.tick(T0 + 15 * M) == []  # step 1 is due, but muted
    [step1] = [n for n in r.tick(T0 + 40 * M) if n.reason == "escalation"]
    assert (step1.receiver, step1.escalation_step) == ("lead", 1)
