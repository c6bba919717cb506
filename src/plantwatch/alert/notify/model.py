"""What a receiver is given: one notification about a group of alert instances.

The shape follows Prometheus Alertmanager's webhook payload (version 4) so that tools written
for it read ours too; :func:`plantwatch.alert.notify.receivers.webhook_payload` documents the
JSON. Times are epoch milliseconds, UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["firing", "resolved"]
#: why this notification was sent
Reason = Literal["new", "update", "repeat", "escalation", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertInstance:
    """One alert instance (one rule × one label set) as a receiver sees it."""

    fingerprint: str
    rule: str
    status: Status
    severity: str  # critical | major | minor | warning | info
    labels: Mapping[str, str]
    annotations: Mapping[str, str]  # summary, description, runbook_url, … (rendered)
    starts_at_ms: int
    ends_at_ms: int | None  # set once resolved
    value: float
    alarm_id: str = ""
    acknowledged: bool = False
    #: processing (wall) time at which the reading that made this instance fire was
    #: produced: latency = time the notification left − this
    trigger_wall_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    receiver: str  # the receiver's configured name
    group_key: str
    group_labels: Mapping[str, str]
    status: Status  # firing if any alert in it fires
    alerts: tuple[AlertInstance, ...]
    reason: Reason = "new"
    escalation_step: int = 0  # 0: the route's own receiver; n: the n-th escalation step
    created_ms: int = 0  # plant-clock time the notification was decided
    external_url: str = ""
    common_labels: Mapping[str, str] = field(default_factory=dict)
    common_annotations: Mapping[str, str] = field(default_factory=dict)
