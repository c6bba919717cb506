"""Notification configuration: receivers, a routing tree, escalation chains, silences' matchers.

Loaded from the ``notifications:`` section of the rules file (see ``docs/alerts.md``).
Semantics follow Prometheus Alertmanager where they overlap (matchers, ``group_by``,
``group_wait``, ``group_interval``, ``repeat_interval``, ``continue``); escalation chains follow
ThingsBoard (the next receiver is notified when nobody acknowledged within ``after``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

MatchOp = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True, slots=True)
class Matcher:
    """``label op value``; regexes are anchored (the whole value must match), as in Alertmanager."""

    label: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"matcher {self.label}: unknown operator {self.op!r}")
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self.label}{self.op}{self.value!r}: {exc}") from exc

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.label, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = re.fullmatch(self.value, v) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'

    @staticmethod
    def parse(text: str) -> Matcher:
        """``machine_id=L1-PUMP-01``, ``severity=~"major|critical"``, ``rule!=x``."""
        m = re.fullmatch(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*', text)
        if not m:
            raise ValueError(
                f"matcher {text!r}: write label=value, label!=value, label=~regex or label!~regex"
            )
        return Matcher(m.group(1), m.group(2), m.group(3))  # type: ignore[arg-type]


def matches_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    name: str
    kind: str  # webhook | slack | teams | email | alertmanager | log
    options: Mapping[str, Any] = field(default_factory=dict)  # ${ENV} already expanded


@dataclass(frozen=True, slots=True)
class EscalationStep:
    after_s: float  # since the alarm started firing, unacknowledged
    receiver: str


@dataclass(frozen=True, slots=True)
class Route:
    receiver: str = ""  # empty: inherit from the parent
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] | None = None  # None: inherit
    group_wait_s: float | None = None
    group_interval_s: float | None = None
    repeat_interval_s: float | None = None
    escalate: tuple[EscalationStep, ...] = ()
    continue_: bool = False
    routes: tuple[Route, ...] = ()


#: the root route's defaults (Alertmanager's, but a shorter group_wait: plants are not web apps)
ROOT_DEFAULTS = Route(
    receiver="log",
    group_by=("alertname", "machine_id"),
    group_wait_s=10.0,
    group_interval_s=60.0,
    repeat_interval_s=4 * 3600.0,
)


@dataclass(frozen=True, slots=True)
class NotificationConfig:
    receivers: tuple[ReceiverConfig, ...] = (ReceiverConfig("log", "log"),)
    route: Route = ROOT_DEFAULTS
    external_url: str = ""
