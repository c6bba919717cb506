"""Routing, grouping, repeats, escalation and silences: which notification leaves, and when.

The algorithm is Prometheus Alertmanager's, driven by an explicit clock (``tick(now_ms)``) so it
runs the same on the plant's simulated clock and in tests:

- an alert's labels pick routes in the tree (first matching child, more with ``continue``);
- a route groups alerts by ``group_by`` labels; a new group waits ``group_wait`` before its
  first notification (to batch alerts that fire together), a group that changed waits
  ``group_interval`` after its last one, and a group that still fires is repeated every
  ``repeat_interval``;
- resolved alerts are sent once, then leave the group;
- silences mute matching alerts (evaluation goes on; a silence that ends lets them through);
- escalation (ThingsBoard's chains): while an alarm is firing and nobody acknowledged it, each
  ``escalate`` step's receiver is notified once ``after`` has passed since it fired;
  acknowledging stops the chain and the repeats.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from plantwatch.alert.notify.config import (
    ROOT_DEFAULTS,
    EscalationStep,
    NotificationConfig,
    Route,
    matches_all,
)
from plantwatch.alert.notify.model import AlertInstance, Notification, Reason
from plantwatch.alert.notify.silences import Silences


@dataclass(frozen=True, slots=True)
class Effective:
    """A route with everything it inherits filled in."""

    route_id: str
    receiver: str
    group_by: tuple[str, ...]
    group_wait_ms: int
    group_interval_ms: int
    repeat_interval_ms: int
    escalate: tuple[EscalationStep, ...]


def _inherit(parent: Effective, r: Route, rid: str) -> Effective:
    def ms(own: float | None, inherited: int) -> int:
        return inherited if own is None else round(own * 1000)

    return Effective(
        route_id=rid,
        receiver=r.receiver or parent.receiver,
        group_by=parent.group_by if r.group_by is None else r.group_by,
        group_wait_ms=ms(r.group_wait_s, parent.group_wait_ms),
        group_interval_ms=ms(r.group_interval_s, parent.group_interval_ms),
        repeat_interval_ms=ms(r.repeat_interval_s, parent.repeat_interval_ms),
        escalate=r.escalate or parent.escalate,
    )


_BASE = Effective(
    "",
    ROOT_DEFAULTS.receiver,
    ROOT_DEFAULTS.group_by or (),
    round((ROOT_DEFAULTS.group_wait_s or 0) * 1000),
    round((ROOT_DEFAULTS.group_interval_s or 0) * 1000),
    round((ROOT_DEFAULTS.repeat_interval_s or 0) * 1000),
    (),
)


def routes_for(root: Route, labels: Mapping[str, str]) -> list[Effective]:
    """The routes an alert with ``labels`` goes to (Alertmanager's tree walk)."""

    def walk(route: Route, parent: Effective, rid: str) -> list[Effective]:
        eff = _inherit(parent, route, rid)
        found: list[Effective] = []
        for i, child in enumerate(route.routes):
            if matches_all(child.matchers, labels):
                found += walk(child, eff, f"{rid}.{i}")
                if not child.continue_:
                    break
        return found or [eff]

    return walk(root, _BASE, "0")


def _all_routes(root: Route) -> dict[str, Effective]:
    out: dict[str, Effective] = {}

    def walk(route: Route, parent: Effective, rid: str) -> None:
        eff = out[rid] = _inherit(parent, route, rid)
        for i, child in enumerate(route.routes):
            walk(child, eff, f"{rid}.{i}")

    walk(root, _BASE, "0")
    return out


@dataclass(slots=True)
class _Group:
    key: str
    route: Effective
    labels: dict[str, str]
    first_ms: int
    alerts: dict[str, AlertInstance] = field(default_factory=dict)
    sent: dict[str, str] = field(default_factory=dict)  # fingerprint -> status last sent
    last_flush_ms: int | None = None


@dataclass(slots=True)
class _Escalation:
    alert: AlertInstance
    route: Effective
    since_ms: int
    done: int = 0


class Router:
    def __init__(
        self,
        config: NotificationConfig,
        *,
        silences: Silences | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.silences = silences if silences is not None else Silences()
        self._routes = _all_routes(config.route)
        self._groups: dict[str, _Group] = {}
        self._escalations: dict[str, _Escalation] = {}
        self._acked: set[str] = set()
        self._on_change = on_change

    # -- input -----------------------------------------------------------------------------------

    def observe(self, alert: AlertInstance, now_ms: int) -> None:
        """An alert instance fired, escalated or resolved."""
        fp = alert.fingerprint
        if alert.status == "firing" and not alert.acknowledged:
            self._acked.discard(fp)
        if alert.status == "resolved":
            # its labels may have changed since it fired (a higher severity can pick other
            # routes or groups): resolve it wherever it is, and end all its escalations
            for holder in self._groups.values():
                if fp in holder.alerts:
                    holder.alerts[fp] = replace(alert, acknowledged=fp in self._acked)
            for k in [k for k, e in self._escalations.items() if e.alert.fingerprint == fp]:
                del self._escalations[k]
        for route in routes_for(self.config.route, alert.labels):
            glabels = _group_labels(route.group_by, alert.labels)
            key = f"{route.route_id}:{json.dumps(glabels, sort_keys=True)}"
            g = self._groups.get(key)
            if g is None:
                if alert.status == "resolved":
                    continue  # nobody was told it fired
                g = self._groups[key] = _Group(key, route, glabels, now_ms)
            g.alerts[fp] = replace(alert, acknowledged=fp in self._acked)
            if route.escalate:
                if alert.status == "firing" and fp not in self._acked:
                    esc = self._escalations.get(_chain_key(route, fp))
                    if esc is None:
                        self._escalations[_chain_key(route, fp)] = _Escalation(alert, route, now_ms)
                    else:
                        esc.alert = alert
                else:
                    self._escalations.pop(_chain_key(route, fp), None)

    def acknowledge(self, fingerprint: str) -> None:
        """Someone acknowledged the alarm: no escalation, no repeats for it."""
        self._acked.add(fingerprint)
        for k in [k for k, e in self._escalations.items() if e.alert.fingerprint == fingerprint]:
            del self._escalations[k]
        for g in self._groups.values():
            a = g.alerts.get(fingerprint)
            if a is not None:
                g.alerts[fingerprint] = replace(a, acknowledged=True)

    # -- output ----------------------------------------------------------------------------------

    def tick(self, now_ms: int, *, final: bool = False) -> list[Notification]:
        """Notifications due at ``now_ms`` (plant clock). ``final``: the process stops, so
        changes waiting for ``group_wait`` or ``group_interval`` are sent now, not lost."""
        out: list[Notification] = []
        for key in list(self._groups):
            n = self._flush(self._groups[key], now_ms, final)
            if n is not None:
                out.append(n)
        for esc in list(self._escalations.values()):
            steps = esc.route.escalate
            while esc.done < len(steps) and now_ms >= esc.since_ms + round(
                steps[esc.done].after_s * 1000
            ):
                if self.silences.muting(esc.alert.labels, now_ms) is not None:
                    break  # the step waits for the silence to end
                step = steps[esc.done]
                esc.done += 1
                out.append(
                    self._notification(
                        step.receiver, esc.route, {}, [esc.alert], now_ms, "escalation", esc.done
                    )
                )
        if out and self._on_change is not None:
            self._on_change()
        return out

    def _flush(self, g: _Group, now_ms: int, final: bool = False) -> Notification | None:
        visible: dict[str, AlertInstance] = {}
        for fp, a in list(g.alerts.items()):
            muted = self.silences.muting(a.labels, now_ms) is not None
            told = g.sent.get(fp, "resolved")
            if a.status == "resolved" and (muted or told == "resolved"):
                del g.alerts[fp]  # nobody heard it fire (or it was muted): nothing to clear
                g.sent.pop(fp, None)
                continue
            if not muted:
                visible[fp] = a
        if not g.alerts:
            del self._groups[g.key]
            return None
        # what receivers must hear: a new alert, a resolved one, or a higher severity
        changed = any(g.sent.get(fp) != _told(a) for fp, a in visible.items())
        firing = [a for a in visible.values() if a.status == "firing"]
        r = g.route
        if g.last_flush_ms is None:
            due, reason = changed and (final or now_ms >= g.first_ms + r.group_wait_ms), "new"
        elif changed:
            due, reason = final or now_ms >= g.last_flush_ms + r.group_interval_ms, "update"
        else:
            repeat = [a for a in firing if not a.acknowledged]
            due = bool(repeat) and now_ms >= g.last_flush_ms + r.repeat_interval_ms
            reason = "repeat"
        if not due:
            return None
        alerts = list(visible.values())
        if reason == "repeat":
            alerts = [a for a in alerts if not a.acknowledged]
        if not firing:
            reason = "resolved"
        for a in alerts:
            g.sent[a.fingerprint] = _told(a)
            if a.status == "resolved":
                del g.alerts[a.fingerprint]
                del g.sent[a.fingerprint]
        g.last_flush_ms = now_ms
        if not g.alerts:
            del self._groups[g.key]
        return self._notification(r.receiver, r, g.labels, alerts, now_ms, reason, 0)  # type: ignore[arg-type]

    def _notification(
        self,
        receiver: str,
        route: Effective,
        group_labels: Mapping[str, str],
        alerts: list[AlertInstance],
        now_ms: int,
        reason: Reason,
        step: int,
    ) -> Notification:
        common_l = _common([a.labels for a in alerts])
        common_a = _common([a.annotations for a in alerts])
        key = f"{route.route_id}:{json.dumps(dict(group_labels), sort_keys=True)}"
        if step:
            key += f":escalation{step}"
        return Notification(
            receiver=receiver,
            group_key=key,
            group_labels=dict(group_labels) or common_l,
            status="firing" if any(a.status == "firing" for a in alerts) else "resolved",
            alerts=tuple(sorted(alerts, key=lambda a: a.fingerprint)),
            reason=reason,
            escalation_step=step,
            created_ms=now_ms,
            external_url=self.config.external_url,
            common_labels=common_l,
            common_annotations=common_a,
        )

    # -- persistence -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "groups": [
                {
                    "key": g.key,
                    "route": g.route.route_id,
                    "labels": g.labels,
                    "first_ms": g.first_ms,
                    "last_flush_ms": g.last_flush_ms,
                    "sent": g.sent,
                    "alerts": [asdict(a) for a in g.alerts.values()],
                }
                for g in self._groups.values()
            ],
            "escalations": [
                {
                    "key": k,
                    "route": e.route.route_id,
                    "since_ms": e.since_ms,
                    "done": e.done,
                    "alert": asdict(e.alert),
                }
                for k, e in self._escalations.items()
            ],
            "acked": sorted(self._acked),
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Continue from :meth:`snapshot` (routes that no longer exist are dropped)."""
        self._acked = set(snap.get("acked", ()))
        for g in snap.get("groups", ()):
            route = self._routes.get(g["route"])
            if route is None:
                continue
            grp = _Group(g["key"], route, dict(g["labels"]), int(g["first_ms"]))
            grp.last_flush_ms = g["last_flush_ms"]
            grp.sent = dict(g["sent"])
            grp.alerts = {a["fingerprint"]: _instance(a) for a in g["alerts"]}
            self._groups[grp.key] = grp
        for e in snap.get("escalations", ()):
            route = self._routes.get(e["route"])
            if route is not None:
                self._escalations[e["key"]] = _Escalation(
                    _instance(e["alert"]), route, int(e["since_ms"]), int(e["done"])
                )

    def pending_escalations(self) -> int:
        """Escalation chains with steps still to come."""
        return sum(1 for e in self._escalations.values() if e.done < len(e.route.escalate))


def _instance(d: Mapping[str, Any]) -> AlertInstance:
    return AlertInstance(
        **{**d, "labels": dict(d["labels"]), "annotations": dict(d["annotations"])}
    )


def _chain_key(route: Effective, fingerprint: str) -> str:
    """One chain per alert and chain: routes that share a chain (a child inherits its parent's;
    ``continue`` sends an alert down several) escalate it once."""
    steps = ",".join(f"{st.after_s:g}>{st.receiver}" for st in route.escalate)
    return f"{steps}|{fingerprint}"


def _told(a: AlertInstance) -> str:
    """What a receiver was told of an alert: resolved, or firing at a severity."""
    return "resolved" if a.status == "resolved" else f"firing:{a.severity}"


def _group_labels(group_by: tuple[str, ...], labels: Mapping[str, str]) -> dict[str, str]:
    if "..." in group_by:
        return dict(labels)
    return {k: labels.get(k, "") for k in group_by}


def _common(maps: list[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = dict(maps[0])
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}
