"""Alert rules: what to watch (selector), when it is wrong (condition), for how long (``for``,
``keep_firing_for``), how bad (severity) and what to tell people (labels, annotations).

Rules are usually loaded from a YAML file (:mod:`plantwatch.alert.rulefile`; the schema is in
``docs/alerts.md``); the shipped defaults cover the simulator's machine types. A rule has one
instance per sensor it selects; the stream evaluates every instance on each closed window.

Conditions:

- :class:`Threshold` — a window statistic (or any single reading: ``value``; or the rate of
  change of the window mean: ``rate``; or a detector's anomaly score: ``score``) outside a band.
  Each :class:`Level` is a band with a severity: the highest breached level is the instance's
  severity, so one rule covers ISO 10816 zones C and D. ``hysteresis`` widens the band while the
  instance is active, so a value hovering at the limit does not flap.
- :class:`Health` — the sensor itself: ``stuck`` (repeats one value), ``no_data`` (silent for
  ``after_s``), ``out_of_range`` (readings outside the kind's physical range).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

#: severities from least to most severe; the rank (1-based) is what the stream compares
SEVERITIES: tuple[str, ...] = ("info", "warning", "minor", "major", "critical")
SEVERITY_RANK: dict[str, int] = {s: i + 1 for i, s in enumerate(SEVERITIES)}

Source = Literal["value", "mean", "min", "max", "last", "std", "rms", "count", "rate", "score"]
SOURCES: tuple[str, ...] = ("value", "mean", "min", "max", "last", "std", "rms", "count", "rate")
HealthCheck = Literal["stuck", "no_data", "out_of_range"]
HEALTH_CHECKS: tuple[str, ...] = ("stuck", "no_data", "out_of_range")


class RuleError(ValueError):
    """A rule that cannot work; the message names the rule and the field."""


def _finite_nonneg(name: str, what: str, x: float) -> None:
    # ``not 0 <= x < inf`` also rejects NaN, which compares false with everything.
    if not 0 <= x < math.inf:
        raise RuleError(f"rule {name}: {what} must be finite and >= 0, got {x}")


@dataclass(frozen=True, slots=True)
class Selector:
    """Which sensors a rule watches. Empty tuples match everything; values within one field
    are alternatives (OR), fields combine with AND. ``machine`` and ``sensor`` accept shell
    globs (``L1-*``). ``labels`` must all equal the machine's labels."""

    site: tuple[str, ...] = ()
    line: tuple[str, ...] = ()
    machine_type: tuple[str, ...] = ()
    machine: tuple[str, ...] = ()
    kind: tuple[str, ...] = ()
    sensor: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Level:
    """Breached when a value is below ``low`` or above ``high``."""

    severity: str
    low: float = -math.inf
    high: float = math.inf

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self.severity]


@dataclass(frozen=True, slots=True)
class Threshold:
    source: Source
    levels: tuple[Level, ...]
    hysteresis: float = 0.0
    detector: str = ""  # source "score": whose score
    per_s: float = 60.0  # source "rate": the rate is change of the window mean per this many s

    @property
    def kind(self) -> str:
        return "anomaly" if self.source == "score" else "threshold"


@dataclass(frozen=True, slots=True)
class Health:
    check: HealthCheck
    after_s: float = 60.0  # no_data: silent for at least this long


Condition = Threshold | Health


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    condition: Condition
    select: Selector = field(default_factory=Selector)
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    severity: str = "warning"  # of a Health rule, and of levels that give none
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.name
        if not n or not all(c.isalnum() or c in "_-.:" for c in n):
            raise RuleError(f"rule {n!r}: a name is letters, digits and _-.: only")
        _finite_nonneg(n, "for", self.for_s)
        _finite_nonneg(n, "keep_firing_for", self.keep_firing_for_s)
        if self.severity not in SEVERITY_RANK:
            raise RuleError(f"rule {n}: severity {self.severity!r} is not one of {SEVERITIES}")
        c = self.condition
        if isinstance(c, Health):
            if c.check not in HEALTH_CHECKS:
                raise RuleError(f"rule {n}: health check {c.check!r} is not one of {HEALTH_CHECKS}")
            if not 0 < c.after_s < math.inf:
                raise RuleError(f"rule {n}: no_data after must be > 0, got {c.after_s}")
            return
        if c.source not in (*SOURCES, "score"):
            raise RuleError(f"rule {n}: source {c.source!r} is not one of {SOURCES}")
        if c.source == "score" and not c.detector:
            raise RuleError(f"rule {n}: an anomaly condition needs a detector")
        if not c.levels:
            raise RuleError(f"rule {n}: a threshold needs at least one limit")
        _finite_nonneg(n, "hysteresis", c.hysteresis)
        if not 0 < c.per_s < math.inf:
            raise RuleError(f"rule {n}: rate per must be > 0, got {c.per_s}")
        for lv in c.levels:
            if lv.severity not in SEVERITY_RANK:
                raise RuleError(f"rule {n}: severity {lv.severity!r} is not one of {SEVERITIES}")
            if math.isnan(lv.low) or math.isnan(lv.high) or not lv.low < lv.high:
                raise RuleError(f"rule {n}: a band needs low < high, got {lv.low}, {lv.high}")
            if lv.low == -math.inf and lv.high == math.inf:
                raise RuleError(f"rule {n}: level {lv.severity} has no limit")

    @property
    def category(self) -> str:
        """``sensor`` for sensor-health rules, ``machine`` for the rest (what the machine does)."""
        return "sensor" if isinstance(self.condition, Health) else "machine"

    @property
    def top_rank(self) -> int:
        c = self.condition
        if isinstance(c, Health):
            return SEVERITY_RANK[self.severity]
        return max(lv.rank for lv in c.levels)


def check_unique(rules: tuple[Rule, ...] | list[Rule]) -> None:
    names = [r.name for r in rules]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise RuleError(f"rule names must be unique; repeated: {', '.join(dup)}")
