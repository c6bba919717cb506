"""Rules evaluated on closed windows: selectors, conditions and instance states, vectorised.

The stream's :class:`~plantwatch.stream.pipeline.Pipeline` (embedded runner, Python workers and
the Flink job alike) calls :meth:`RuleEvaluator.evaluate` once per closed window with the
window's statistics and the detectors' findings; it returns the state changes as
:class:`~plantwatch.stream.outputs.AlertEvent` rows with labels and rendered annotations.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from plantwatch.alert.rules import SEVERITIES, Health, Rule, Selector, Threshold
from plantwatch.alert.state import AlertStates, Instance, Transition
from plantwatch.core.kinds import KINDS, SensorKind
from plantwatch.detect.base import KIND_LABELS, Detector, Finding, Windows
from plantwatch.detect.health import NoData, OutOfRange, Stuck

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
_UNITS = [KINDS[SensorKind(k)].unit if k != "unknown" else "" for k in KIND_LABELS]


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """What selectors and labels know about a machine besides its id and type."""

    line: str = ""
    site: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Targets:
    """Every sensor the stream knows, by sensor index."""

    machine: npt.NDArray[np.object_]
    sensor: npt.NDArray[np.object_]
    kind: npt.NDArray[np.int8]
    machine_type: npt.NDArray[np.object_]
    info: Mapping[str, MachineInfo]

    def __len__(self) -> int:
        return len(self.machine)


@dataclass(frozen=True, slots=True)
class Fired:
    """One transition with what people read: labels and rendered annotations."""

    transition: Transition
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    summary: str


class _Fields(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(template: str, fields: Mapping[str, object]) -> str:
    """``str.format`` that never raises: an unknown field stays as written."""
    try:
        return string.Formatter().vformat(template, (), _Fields(fields))
    except (ValueError, TypeError, IndexError, KeyError):
        return template


def _match(patterns: tuple[str, ...], values: npt.NDArray[np.object_]) -> B:
    if not patterns:
        return np.ones(len(values), np.bool_)
    out = np.zeros(len(values), np.bool_)
    for p in patterns:
        if any(c in p for c in "*?["):
            out |= np.fromiter((fnmatch.fnmatchcase(str(v), p) for v in values), np.bool_)
        else:
            out |= values == p
    return out


def _health_detector(c: Health) -> Detector:
    if c.check == "no_data":
        return NoData(after_s=c.after_s)
    return Stuck() if c.check == "stuck" else OutOfRange()


def selected(sel: Selector, t: Targets) -> B:
    """Which sensors of ``t`` a selector picks."""
    mask = _match(sel.machine, t.machine) & _match(sel.sensor, t.sensor)
    mask &= _match(sel.machine_type, t.machine_type)
    if sel.kind:
        kinds = np.array(KIND_LABELS, dtype=object)[t.kind]
        mask &= _match(sel.kind, kinds)
    if sel.line or sel.site or sel.labels:
        ok = {}
        for m in set(t.machine[mask].tolist()):
            inf = t.info.get(m, MachineInfo())
            ok[m] = (
                (not sel.line or any(fnmatch.fnmatchcase(inf.line, p) for p in sel.line))
                and (not sel.site or any(fnmatch.fnmatchcase(inf.site, p) for p in sel.site))
                and all(inf.labels.get(k) == v for k, v in sel.labels.items())
            )
        mask &= np.fromiter((ok.get(m, False) for m in t.machine), np.bool_, len(t.machine))
    return mask


class RuleEvaluator:
    def __init__(self, rules: Sequence[Rule], targets: Callable[[], Targets]) -> None:
        self.rules = tuple(rules)
        self.states = AlertStates(self.rules)
        self._targets = targets
        self._masks: dict[str, B] = {}
        self._masks_key: tuple[int, int] = (-1, -1)
        self._prev_mean: F64 = np.zeros(0)
        self._prev_end = np.zeros(0, np.int64)
        self._warned: set[str] = set()
        self._health_detectors: dict[str, Detector] = {}

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_masks"], state["_masks_key"] = {}, (-1, -1)
        return state

    def invalidate(self) -> None:
        """Machine metadata changed: selectors are matched again on the next window."""
        self._masks_key = (-1, -1)

    def _rows(self, rule: Rule, t: Targets, n: int) -> npt.NDArray[np.intp]:
        key = (len(t), id(t.info))
        if key != self._masks_key:
            self._masks = {}
            self._masks_key = key
        mask = self._masks.get(rule.name)
        if mask is None:
            mask = self._masks[rule.name] = selected(rule.select, t)
        return np.flatnonzero(mask[:n])

    def evaluate(self, w: Windows, rms: F64, findings: Mapping[str, Finding]) -> list[Fired]:
        n = len(w)
        if n == 0:
            return []
        t = self._targets()
        rate = self._rate(w)
        out: list[Fired] = []
        for rule in self.rules:
            rows = self._rows(rule, t, n)
            if len(rows) == 0:
                continue
            c = rule.condition
            if isinstance(c, Health):
                enter, hold, value, thr = self._health(rule, c, w, findings, rows)
            else:
                enter, hold, value, thr = self._threshold(rule, c, w, rms, rate, findings, rows)
            for tr in self.states.evaluate(
                rule,
                sensor=w.sensor[rows],
                start_ms=w.start_ms[rows],
                end_ms=w.end_ms[rows],
                enter=enter,
                hold=hold,
                value=value,
                threshold=thr,
            ):
                out.append(self._fired(tr, t))
        self._remember(w)
        return out

    # -- conditions ------------------------------------------------------------------------------

    def _rate(self, w: Windows) -> F64:
        n = len(w)
        if len(self._prev_mean) < n:
            grown = np.full(max(n, 2 * len(self._prev_mean), 16), np.nan)
            grown[: len(self._prev_mean)] = self._prev_mean
            ends = np.full(len(grown), np.iinfo(np.int64).min, np.int64)
            ends[: len(self._prev_end)] = self._prev_end
            self._prev_mean, self._prev_end = grown, ends
        span_s = (w.end_ms - w.start_ms) / 1000.0
        adjacent = self._prev_end[w.sensor] == w.start_ms
        with np.errstate(invalid="ignore", divide="ignore"):
            per_s = (w.mean - self._prev_mean[w.sensor]) / span_s
        return np.where(adjacent, per_s, np.nan)

    def _remember(self, w: Windows) -> None:
        has = w.count > 0
        self._prev_mean[w.sensor] = np.where(has, w.mean, np.nan)
        self._prev_end[w.sensor] = w.end_ms

    def _threshold(
        self,
        rule: Rule,
        c: Threshold,
        w: Windows,
        rms: F64,
        rate: F64,
        findings: Mapping[str, Finding],
        rows: npt.NDArray[np.intp],
    ) -> tuple[npt.NDArray[np.int8], B, F64, F64]:
        k = len(rows)
        if c.source == "score":
            f = findings.get(c.detector)
            if f is None:
                if rule.name not in self._warned:
                    self._warned.add(rule.name)
                    log.warning("rule %s: detector %r is not running", rule.name, c.detector)
                nan = np.full(k, np.nan)
                return np.zeros(k, np.int8), np.zeros(k, np.bool_), nan, nan.copy()
            hi = lo = f.score[rows]
        elif c.source == "value":
            hi, lo = w.max[rows], w.min[rows]
        elif c.source == "rate":
            hi = lo = rate[rows] * c.per_s
        elif c.source == "rms":
            hi = lo = rms[rows]
        elif c.source == "count":
            hi = lo = w.count[rows].astype(np.float64)
        else:
            hi = lo = getattr(w, c.source)[rows]
        enter = np.zeros(k, np.int8)
        hold = np.zeros(k, np.bool_)
        value = np.where(np.isnan(hi), lo, hi)
        thr = np.full(k, np.nan)
        h = c.hysteresis
        with np.errstate(invalid="ignore"):
            for lv in sorted(c.levels, key=lambda x: x.rank):
                up = hi > lv.high
                down = lo < lv.low
                hit = up | down
                enter = np.where(hit & (lv.rank > enter), lv.rank, enter).astype(np.int8)
                thr = np.where(hit & (enter == lv.rank), np.where(up, lv.high, lv.low), thr)
                value = np.where(hit & (enter == lv.rank), np.where(up, hi, lo), value)
                hold |= (hi > lv.high - h) | (lo < lv.low + h)
        # the limit an instance that is not breaching is held against: the lowest level's
        lowest = min(c.levels, key=lambda x: x.rank)
        fallback = lowest.high if lowest.high < math.inf else lowest.low
        thr = np.where(np.isnan(thr), fallback, thr)
        return enter, hold, value, thr

    def _health(
        self,
        rule: Rule,
        c: Health,
        w: Windows,
        findings: Mapping[str, Finding],
        rows: npt.NDArray[np.intp],
    ) -> tuple[npt.NDArray[np.int8], B, F64, F64]:
        rank = np.int8(SEVERITIES.index(rule.severity) + 1)
        # the health detectors judge; a rule reuses the running one's finding when it can (a
        # no_data rule has its own silence duration, so its own detector)
        f = None if c.check == "no_data" else findings.get(c.check)
        if f is None:
            det = self._health_detectors.get(rule.name)
            if det is None:
                det = self._health_detectors[rule.name] = _health_detector(c)
            f = det.evaluate(w)
        hit = f.level[rows] > 0
        value = f.value[rows]
        thr = np.full(len(rows), c.after_s if c.check == "no_data" else 0.0)
        enter = np.where(hit, rank, 0).astype(np.int8)
        return enter, hit, value, thr

    # -- events ----------------------------------------------------------------------------------

    def _fired(self, tr: Transition, t: Targets) -> Fired:
        rule = tr.rule
        s = tr.sensor
        machine = str(t.machine[s])
        info = t.info.get(machine, MachineInfo())
        kind = KIND_LABELS[int(t.kind[s])]
        severity = SEVERITIES[max(1, min(tr.level, len(SEVERITIES))) - 1]
        labels = {
            **info.labels,
            **rule.labels,
            "alertname": rule.name,
            "severity": severity,
            "machine_id": machine,
            "sensor_id": str(t.sensor[s]),
            "kind": kind,
            "machine_type": str(t.machine_type[s]),
        }
        if info.line:
            labels["line"] = info.line
        if info.site:
            labels["site"] = info.site
        c = rule.condition
        fields: dict[str, object] = {
            "value": tr.value,
            "limit": tr.threshold,
            "machine": machine,
            "sensor": labels["sensor_id"],
            "kind": kind,
            "unit": _UNITS[int(t.kind[s])],
            "machine_type": labels["machine_type"],
            "line": info.line,
            "site": info.site,
            "rule": rule.name,
            "severity": severity,
            "score": tr.value if isinstance(c, Threshold) and c.source == "score" else math.nan,
            "detector": c.detector if isinstance(c, Threshold) else c.check,
        }
        annotations = {k: render(v, fields) for k, v in rule.annotations.items()}
        summary = annotations.get("summary") or (
            f"{rule.name} on {machine}/{labels['sensor_id']}: {kind} {tr.value:.4g}"
        )
        if tr.state == "resolved":
            summary = (
                f"resolved: {rule.name} on {machine}/{labels['sensor_id']} "
                f"({kind} now {tr.value:.4g} {fields['unit']})"
            ).replace(" )", ")")
        return Fired(tr, severity, labels, annotations, summary)

    # -- restore ---------------------------------------------------------------------------------

    def restore(self, instances: Sequence[Instance]) -> int:
        return sum(1 for i in instances if self.states.restore(i))
