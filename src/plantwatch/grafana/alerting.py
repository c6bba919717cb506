"""Grafana alert rules, contact points and notification policies compiled from the rules file.

The stream judges each closed event-time window once. A Grafana rule evaluates on a schedule
(the group's interval = the window, 10 s by default) a query over a relative time range that
holds exactly one closed window per sensor: windows whose end lies in
``(now - delay - window, now - delay]``, ``delay`` covering the stream's out-of-orderness and
the time to store a window (see :func:`compile_rules`). One Grafana rule per severity level
(``severity`` label), because a Grafana rule has one condition:

==============  ==============================================================================
source          query
==============  ==============================================================================
mean, min, …    the window's statistic from ``features``
value           the window's max (above a limit) or min (below it) from ``features``
rate            the change between the last two windows' means, per ``per`` (``features``)
score           the detector's score from ``anomalies`` (only rows the detector flagged: a
                limit below the detector's own warning level cannot be seen)
stuck           ``features``: at least 3 readings, max = min
out_of_range    ``readings``: readings outside the kind's physical range in the window
no_data         ``readings``: seconds since the sensor's last reading (looking back 1 h)
==============  ==============================================================================

``for`` and ``keepFiringFor`` are counted by Grafana from the first evaluation that sees the
window (its end), by the stream from the window's start: the compiled durations are one window
shorter, so both fire after the same windows. Hysteresis becomes a recovery threshold
(``unloadEvaluator``).
"""

from __future__ import annotations

import hashlib
import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plantwatch.alert.notify.config import NotificationConfig, ReceiverConfig, Route
from plantwatch.alert.rules import Health, Level, Rule, Selector, Threshold
from plantwatch.core.kinds import KIND_NAMES, KINDS, SensorKind
from plantwatch.grafana.model import DATASOURCE_UID, FORMATS, PLUGIN, PLUGIN_VERSION
from plantwatch.store.queries import sql_string

FOLDER = "plantwatch"
GROUP = "plantwatch"
NO_DATA_LOOKBACK_S = 3600
STUCK_MIN_COUNT = 3  # detect/health.py Stuck(min_count=3)


class CompileError(ValueError):
    """A rule Grafana cannot evaluate the way the stream does."""


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One Grafana alert rule: a plantwatch rule at one severity level."""

    uid: str
    title: str
    rule: str
    severity: str
    sql: str
    evaluator: tuple[str, tuple[float, ...]]
    unload: tuple[str, tuple[float, ...]] | None
    for_s: float
    keep_firing_for_s: float
    range_s: tuple[int, int]  # relativeTimeRange (from, to): seconds before the evaluation
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Skipped:
    rule: str
    reason: str


def _glob_regex(pattern: str) -> str:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return "^" + "".join(out) + "$"


def _any_of(column: str, patterns: tuple[str, ...]) -> str:
    parts = []
    plain = [p for p in patterns if not any(c in p for c in "*?[")]
    if plain:
        parts.append(f"{column} IN ({', '.join(sql_string(p) for p in plain)})")
    for p in patterns:
        if p not in plain:
            if "[" in p:
                raise CompileError(f"glob {p!r}: character classes are not compiled")
            parts.append(f"match({column}, {sql_string(_glob_regex(p))})")
    return "(" + " OR ".join(parts) + ")"


def _selector(sel: Selector, t: str) -> list[str]:
    """SQL conditions for a selector; ``t`` is the alias of the table with the sensor columns,
    ``m`` the machines' alias."""
    if sel.labels:
        raise CompileError("selecting by machine labels: the machine registry has no labels")
    where = []
    for col, pats in (
        (f"{t}.machine_id", sel.machine),
        (f"{t}.sensor_id", sel.sensor),
        (f"{t}.kind", sel.kind),
        ("m.machine_type", sel.machine_type),
        ("m.line", sel.line),
        ("m.site", sel.site),
    ):
        if pats:
            where.append(_any_of(col, pats))
    return where


def _by_kind(column: str, values: Sequence[object], default: str) -> str:
    """A per-kind constant (``values`` in the order of ``KIND_NAMES``) as SQL."""
    kinds = ", ".join(sql_string(k) for k in KIND_NAMES)
    vals = ", ".join(sql_string(v) if isinstance(v, str) else repr(v) for v in values)
    return f"transform({column}, [{kinds}], [{vals}], {default})"


_SPECS = [KINDS[SensorKind(k)] for k in KIND_NAMES]
_LOW = _by_kind("r.kind", [k.low for k in _SPECS], "nan")
_HIGH = _by_kind("r.kind", [k.high for k in _SPECS], "nan")


def _query(db: str, t: str, table: str, value: str, where: list[str], *, group: bool) -> str:
    labels = (
        f"{t}.machine_id AS machine_id, {t}.sensor_id AS sensor_id, {t}.kind AS kind, "
        f"m.machine_type AS machine_type, m.line AS line, m.site AS site, "
        f"{_by_kind(f'{t}.kind', [k.unit for k in _SPECS], sql_string(''))} AS unit"
    )
    final = " FINAL" if table in ("features",) else ""
    sql = (
        f"SELECT {labels}, {value} AS value\n"
        f"FROM {db}.{table} AS {t}{final}\n"
        f"INNER JOIN (SELECT machine_id, machine_type, line, site FROM {db}.machines FINAL) AS m"
        f" ON m.machine_id = {t}.machine_id\n"
        f"WHERE {' AND '.join(where)}"
    )
    if group:
        sql += "\nGROUP BY machine_id, sensor_id, kind, machine_type, line, site, unit"
    return sql


def _level_value(c: Threshold, lv: Level) -> str:
    if c.source == "value":
        if lv.low == -math.inf:
            return "f.max"
        if lv.high == math.inf:
            return "f.min"
        return f"if(f.max > {lv.high!r}, f.max, f.min)"
    if c.source == "count":
        return "toFloat64(f.count)"
    return f"f.{c.source}"


def _evaluator(lv: Level) -> tuple[str, tuple[float, ...]]:
    if lv.low == -math.inf:
        return ("gt", (lv.high,))
    if lv.high == math.inf:
        return ("lt", (lv.low,))
    return ("outside_range", (lv.low, lv.high))


def _unload(lv: Level, h: float) -> tuple[str, tuple[float, ...]] | None:
    if h <= 0:
        return None
    if lv.low == -math.inf:
        return ("lt", (lv.high - h,))
    if lv.high == math.inf:
        return ("gt", (lv.low + h,))
    return ("within_range", (lv.low + h, lv.high - h))


def _limit(lv: Level) -> float:
    return lv.high if lv.high < math.inf else lv.low


_LABEL_FIELDS = {
    "machine": "machine_id",
    "sensor": "sensor_id",
    "kind": "kind",
    "unit": "unit",
    "machine_type": "machine_type",
    "line": "line",
    "site": "site",
}


def template(text: str, constants: Mapping[str, object]) -> str:
    """A plantwatch annotation template (``str.format`` fields) as a Grafana one."""
    out = []
    for literal, name, spec, _ in string.Formatter().parse(text):
        out.append(literal.replace("{{", '{{ "{{" }}'))
        if name is None:
            continue
        if name in ("value", "score"):
            out.append(
                f'{{{{ printf "%{spec}" $values.A.Value }}}}' if spec else "{{ $values.A.Value }}"
            )
        elif name in _LABEL_FIELDS:
            out.append(f"{{{{ $labels.{_LABEL_FIELDS[name]} }}}}")
        elif name in constants:
            out.append(format(constants[name], spec or ""))
        else:
            out.append("{" + name + (f":{spec}" if spec else "") + "}")
    return "".join(out)


def _uid(name: str, severity: str) -> str:
    uid = f"pw-{name}-{severity}"
    if len(uid) <= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", uid):
        return uid
    return "pw-" + hashlib.sha1(f"{name}/{severity}".encode()).hexdigest()[:20]


def compile_rules(
    rules: Sequence[Rule], db: str, *, window_s: float, delay_s: float
) -> tuple[list[CompiledRule], list[Skipped]]:
    """Every rule at every level, and the rules Grafana cannot run (with the reason)."""
    w = int(window_s)
    if w != window_s or w < 10:
        raise CompileError(f"the window ({window_s} s) must be whole seconds, at least 10")
    d = math.ceil(delay_s)
    out: list[CompiledRule] = []
    skipped: list[Skipped] = []
    for r in rules:
        try:
            out.extend(_compile(r, db, w, d))
        except CompileError as exc:
            skipped.append(Skipped(r.name, str(exc)))
    return out, skipped


def _compile(r: Rule, db: str, w: int, d: int) -> list[CompiledRule]:
    c = r.condition
    in_window = ["f.window_end > $__fromTime_ms", "f.window_end <= $__toTime_ms"]
    rng = (d + w, d)
    levels: list[tuple[str, Level, str, str]] = []  # severity, level, sql, value column
    if isinstance(c, Health):
        one = Level(r.severity, high=0.0)
        if c.check == "stuck":
            v = f"toFloat64(f.count >= {STUCK_MIN_COUNT} AND f.max = f.min)"
            sql = _query(db, "f", "features", v, in_window + _selector(r.select, "f"), group=False)
            levels.append((r.severity, one, sql, v))
        elif c.check == "out_of_range":
            v = f"toFloat64(countIf(r.value < {_LOW} OR r.value > {_HIGH}))"
            where = ["r.ts >= $__fromTime_ms", "r.ts < $__toTime_ms", *_selector(r.select, "r")]
            levels.append((r.severity, one, _query(db, "r", "readings", v, where, group=True), v))
        else:  # no_data
            v = "dateDiff('millisecond', max(r.ts), $__toTime_ms) / 1000"
            where = ["r.ts >= $__fromTime_ms", "r.ts < $__toTime_ms", *_selector(r.select, "r")]
            sql = _query(db, "r", "readings", v, where, group=True)
            levels.append((r.severity, Level(r.severity, high=c.after_s), sql, v))
            rng = (d + NO_DATA_LOOKBACK_S, d)
    elif c.source == "score":
        v = "max(a.score)"
        where = [
            "a.ts > $__fromTime_ms",
            "a.ts <= $__toTime_ms",
            f"a.detector = {sql_string(c.detector)}",
            *_selector(r.select, "a"),
        ]
        sql = _query(db, "a", "anomalies", v, where, group=True)
        levels.extend((lv.severity, lv, sql, v) for lv in c.levels)
    elif c.source == "rate":
        v = (
            "(argMax(f.mean, f.window_end) - argMin(f.mean, f.window_end))"
            " / (dateDiff('millisecond', min(f.window_end), max(f.window_end)) / 1000)"
            f" * {c.per_s!r}"
        )
        sql = _query(db, "f", "features", v, in_window + _selector(r.select, "f"), group=True)
        sql += f"\nHAVING count() = 2 AND max(f.window_end) > $__fromTime_ms + INTERVAL {w} SECOND"
        levels.extend((lv.severity, lv, sql, v) for lv in c.levels)
        rng = (d + 2 * w, d)
    else:
        for lv in c.levels:
            v = _level_value(c, lv)
            sel = in_window + _selector(r.select, "f")
            if c.source == "rms":
                sel.append("f.rms IS NOT NULL")
            levels.append((lv.severity, lv, _query(db, "f", "features", v, sel, group=False), v))
    many = len(levels) > 1
    out = []
    for severity, lv, sql, _ in levels:
        h = c.hysteresis if isinstance(c, Threshold) else 0.0
        constants = {
            "limit": _limit(lv),
            "rule": r.name,
            "severity": severity,
            "detector": c.detector if isinstance(c, Threshold) else c.check,
        }
        out.append(
            CompiledRule(
                uid=_uid(r.name, severity),
                title=f"{r.name} ({severity})" if many else r.name,
                rule=r.name,
                severity=severity,
                sql=sql,
                evaluator=_evaluator(lv),
                unload=_unload(lv, h),
                for_s=max(0.0, r.for_s - w),
                keep_firing_for_s=max(0.0, r.keep_firing_for_s - w),
                range_s=rng,
                labels={
                    **r.labels,
                    "rule": r.name,
                    "severity": severity,
                    "category": r.category,
                    "source": "plantwatch",
                },
                annotations={k: template(v, constants) for k, v in r.annotations.items()},
            )
        )
    return out


def _duration(s: float) -> str:
    s = round(s)
    if s % 3600 == 0 and s:
        return f"{s // 3600}h"
    if s % 60 == 0 and s:
        return f"{s // 60}m"
    return f"{s}s"


def rule_file(compiled: Sequence[CompiledRule], *, interval_s: float) -> dict[str, Any]:
    """Grafana's alert-rule provisioning file (``provisioning/alerting/*.yaml``)."""
    rules = []
    for cr in compiled:
        cond: dict[str, Any] = {
            "evaluator": {"type": cr.evaluator[0], "params": list(cr.evaluator[1])}
        }
        if cr.unload:
            cond["unloadEvaluator"] = {"type": cr.unload[0], "params": list(cr.unload[1])}
        rules.append(
            {
                "uid": cr.uid,
                "title": cr.title,
                "condition": "B",
                "data": [
                    {
                        "refId": "A",
                        "queryType": "table",
                        "relativeTimeRange": {"from": cr.range_s[0], "to": cr.range_s[1]},
                        "datasourceUid": DATASOURCE_UID,
                        "model": {
                            "refId": "A",
                            "datasource": {"type": PLUGIN, "uid": DATASOURCE_UID},
                            "editorType": "sql",
                            "format": FORMATS["table"],
                            "queryType": "table",
                            "rawSql": cr.sql,
                            "pluginVersion": PLUGIN_VERSION,
                        },
                    },
                    {
                        "refId": "B",
                        "datasourceUid": "__expr__",
                        "model": {
                            "refId": "B",
                            "type": "threshold",
                            "expression": "A",
                            "datasource": {"type": "__expr__", "uid": "__expr__"},
                            "conditions": [cond],
                        },
                    },
                ],
                # no row: nothing is wrong (a threshold needs a window with readings)
                "noDataState": "OK",
                "execErrState": "Error",
                "for": _duration(cr.for_s),
                "keepFiringFor": _duration(cr.keep_firing_for_s),
                "annotations": dict(cr.annotations),
                "labels": dict(cr.labels),
                "isPaused": False,
            }
        )
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": GROUP,
                "folder": FOLDER,
                "interval": _duration(interval_s),
                "rules": rules,
            }
        ],
    }


# -- contact points and notification policies --------------------------------------------------


def _contact(rc: ReceiverConfig) -> dict[str, Any] | None:
    o = rc.options
    if rc.kind == "webhook":
        settings: dict[str, Any] = {"url": o["url"], "httpMethod": "POST"}
        kind = "webhook"
    elif rc.kind == "slack":
        settings = {"url": o["url"]}
        if o.get("channel"):
            settings["recipient"] = o["channel"]
        kind = "slack"
    elif rc.kind == "teams":
        settings, kind = {"url": o["url"]}, "teams"
    elif rc.kind == "email":
        to = o["to"]
        settings = {"addresses": ";".join(to if isinstance(to, list | tuple) else [to])}
        kind = "email"
    elif rc.kind == "alertmanager":
        settings, kind = {"url": o["url"]}, "prometheus-alertmanager"
    else:
        return None
    return {
        "orgId": 1,
        "name": rc.name,
        "receivers": [
            {
                "uid": _uid(rc.name, kind)[:40],
                "type": kind,
                "settings": settings,
                "disableResolveMessage": False,
            }
        ],
    }


def contact_points(n: NotificationConfig) -> tuple[dict[str, Any], list[Skipped]]:
    """Contact points for the receivers. ``log`` (plantwatch's own log) has no Grafana
    counterpart: policies that name it go to the default contact point instead."""
    points, skipped = [], []
    for rc in n.receivers:
        cp = _contact(rc)
        if cp is None:
            skipped.append(
                Skipped(
                    rc.name,
                    f"receiver kind {rc.kind!r} has no Grafana contact point; "
                    "alerts routed to it go to plantwatch-default",
                )
            )
        else:
            points.append(cp)
    return {"apiVersion": 1, "contactPoints": points}, skipped


def _route(r: Route, names: set[str], fallback: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.receiver:
        out["receiver"] = r.receiver if r.receiver in names else fallback
    if r.matchers:
        out["object_matchers"] = [[m.label, m.op, m.value] for m in r.matchers]
    if r.group_by is not None:
        out["group_by"] = list(r.group_by)
    for key, v in (
        ("group_wait", r.group_wait_s),
        ("group_interval", r.group_interval_s),
        ("repeat_interval", r.repeat_interval_s),
    ):
        if v is not None:
            out[key] = _duration(v)
    if r.continue_:
        out["continue"] = True
    if r.routes:
        out["routes"] = [_route(x, names, fallback) for x in r.routes]
    return out


def policies(n: NotificationConfig, default_contact: str) -> dict[str, Any]:
    """The notification policy tree from the rules file's route (matchers, grouping, timing).
    plantwatch's escalation chains are not Grafana's: they stay with plantwatch."""
    names = {rc.name for rc in n.receivers if _contact(rc) is not None}
    root = _route(n.route, names, default_contact)
    root.setdefault("receiver", default_contact)
    if root["receiver"] not in names:
        root["receiver"] = default_contact
    return {"apiVersion": 1, "policies": [{"orgId": 1, **root}]}
