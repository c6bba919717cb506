"""Evaluate provisioned Grafana alert rules over stored data, as Grafana's scheduler would.

For every evaluation time the rule's query runs with its relative time range (macros expanded
as the ClickHouse plugin expands them); each row is one alert instance (its string columns are
the labels, ``value`` the number), the threshold expression decides, and each instance moves
through Grafana's states: Normal → Pending → Alerting (after ``for``) → Recovering for
``keepFiringFor`` → Normal. A recovery threshold (``unloadEvaluator``) decides while firing. A
series that is missing counts as a condition that does not hold.

Used by ``plantwatch grafana check`` and the tests that compare Grafana's rules with the stream's
alert engine over the same data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from plantwatch.alert.rulefile import parse_duration
from plantwatch.grafana.macros import QueryContext, expand


class _Store(Protocol):
    def query_named(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]: ...


def _holds(evaluator: Mapping[str, Any], x: float) -> bool:
    kind, p = evaluator["type"], [float(v) for v in evaluator["params"]]
    if math.isnan(x):
        return False
    if kind == "gt":
        return x > p[0]
    if kind == "lt":
        return x < p[0]
    if kind == "outside_range":
        return x < p[0] or x > p[1]
    if kind == "within_range":
        return p[0] < x < p[1]
    raise ValueError(f"threshold evaluator {kind!r} is not supported")


_Labels = tuple[tuple[str, str], ...]


@dataclass
class _Instance:
    state: str = "normal"
    since_ms: int = 0


@dataclass
class Replay:
    """What the rules did: every instance that fired, and every state change."""

    fired: set[tuple[str, str, str]] = field(default_factory=set)  # (rule, machine, sensor)
    transitions: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    evaluations: int = 0
    queries: int = 0


def replay(store: _Store, rule_file: Mapping[str, Any], *, start_ms: int, end_ms: int) -> Replay:
    """Evaluate every rule of a provisioning file at its group's interval from ``start_ms``
    (rounded up to the interval) to ``end_ms``."""
    out = Replay()
    for group in rule_file["groups"]:
        step = int(parse_duration(group["interval"]) * 1000)
        first = -(-start_ms // step) * step
        states: dict[str, dict[_Labels, _Instance]] = {r["uid"]: {} for r in group["rules"]}
        for t in range(first, end_ms + 1, step):
            cache: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
            for rule in group["rules"]:
                _evaluate(store, rule, t, states[rule["uid"]], cache, out)
            out.evaluations += 1
    return out


def _evaluate(
    store: _Store,
    rule: Mapping[str, Any],
    t: int,
    states: dict[_Labels, _Instance],
    cache: dict[str, tuple[list[str], list[tuple[Any, ...]]]],
    out: Replay,
) -> None:
    query = next(d for d in rule["data"] if d["refId"] == "A")
    cond = next(d for d in rule["data"] if d["refId"] == rule["condition"])["model"]
    condition = cond["conditions"][0]
    rng = query["relativeTimeRange"]
    ctx = QueryContext(t - rng["from"] * 1000, t - rng["to"] * 1000)
    sql = expand(query["model"]["rawSql"], ctx)
    if sql not in cache:
        cache[sql] = store.query_named(sql)
        out.queries += 1
    cols, rows = cache[sql]
    vi = cols.index("value") if rows else -1
    for_ms = parse_duration(rule["for"]) * 1000
    keep_ms = parse_duration(rule.get("keepFiringFor") or "0s") * 1000
    seen = set()
    for row in rows:
        labels = tuple(
            (c, str(v)) for i, (c, v) in enumerate(zip(cols, row, strict=True)) if i != vi
        )
        seen.add(labels)
        inst = states.setdefault(labels, _Instance())
        x = float(row[vi]) if row[vi] is not None else math.nan
        firing = inst.state in ("alerting", "recovering")
        if firing and "unloadEvaluator" in condition:
            holds = not _holds(condition["unloadEvaluator"], x)
        else:
            holds = _holds(condition["evaluator"], x)
        _step(rule, labels, inst, holds, t, for_ms, keep_ms, out)
    for labels, inst in states.items():
        if inst.state != "normal" and labels not in seen:
            _step(rule, labels, inst, False, t, for_ms, keep_ms, out)


def _step(
    rule: Mapping[str, Any],
    labels: Sequence[tuple[str, str]],
    inst: _Instance,
    holds: bool,
    t: int,
    for_ms: float,
    keep_ms: float,
    out: Replay,
) -> None:
    before = inst.state
    if holds:
        if inst.state == "normal":
            inst.state, inst.since_ms = "pending", t
        if (inst.state == "pending" and t - inst.since_ms >= for_ms) or inst.state == "recovering":
            inst.state = "alerting"
    elif inst.state == "pending":
        inst.state = "normal"
    elif inst.state == "alerting":
        inst.state, inst.since_ms = "recovering", t
    if inst.state == "recovering" and not holds and t - inst.since_ms >= keep_ms:
        inst.state = "normal"
    if inst.state != before:
        lab = dict(labels)
        name = rule["labels"].get("rule", rule["title"])
        out.transitions.append(
            (t, name, lab.get("machine_id", ""), lab.get("sensor_id", ""), inst.state)
        )
        if inst.state == "alerting":
            out.fired.add((name, lab.get("machine_id", ""), lab.get("sensor_id", "")))
