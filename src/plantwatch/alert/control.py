"""What ``plantwatch alarms …`` and ``plantwatch silences …`` do.

When a plant (``run``, or a ``sink``) runs on the data folder, it owns the store and the alarm
state, so a command goes through its inbox and the answer comes back from it. When nothing runs,
the command is carried out here, on the store directly, by the same
:class:`~plantwatch.alert.service.AlertService` code (without notifications).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from plantwatch.alert.rulefile import RuleSet, default_rule_set, load_rules, parse_duration
from plantwatch.alert.service import AlertService, read_listing, send_command, service_lock
from plantwatch.core.clock import SimulatedClock
from plantwatch.core.errors import ConfigError
from plantwatch.core.settings import Settings
from plantwatch.store import migrate, open_configured
from plantwatch.stream.producer import read_plant_clock


def duration_s(text: str) -> float:
    """Seconds from a CLI duration (``30m``, ``2h``, ``1d``, ``1h30m``, ``90``); > 0."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not 0 < seconds < math.inf:
        raise ConfigError(f"a duration must be > 0, got {text!r}")
    return seconds


def parse_time_ms(text: str) -> int:
    """Epoch ms from an ISO 8601 time (``2026-12-05T06:00:00Z``; no zone means UTC)."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{text!r} is not an ISO 8601 time (2026-12-05T06:00:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return round(t.timestamp() * 1000)


def rule_set(settings: Settings) -> RuleSet:
    return load_rules(settings.rules_file) if settings.rules_file else default_rule_set()


def execute(
    settings: Settings, cmd: Mapping[str, Any], *, timeout_s: float = 15.0
) -> dict[str, Any]:
    """Carry out one alarm or silence command; ``{"ok": bool, …}``."""
    data = settings.data_dir.resolve()
    with service_lock(data) as free:
        if not free:
            answer = send_command(data, cmd, timeout_s=timeout_s)
            return {**answer, "via": "running plant"}
        store = open_configured(settings)
        try:
            migrate(store)
            # nothing runs: the plant's clock stands where its last run left it
            now = max(time.time(), read_plant_clock(data / "plant-clock.json"))
            svc = AlertService(
                rules=rule_set(settings),
                store=store,
                clock=SimulatedClock(now),
                data_dir=data,
                notify=False,
            )
            answer = svc.execute(cmd)
            svc.save()
            return {**answer, "via": "store"}
        finally:
            store.close()


def listing(settings: Settings, *, active_only: bool = False) -> dict[str, Any]:
    """Alarms and silences: from the running plant if there is one, else from the store."""
    data = settings.data_dir.resolve()
    with service_lock(data) as free:
        found = None if free else read_listing(data)
    if found is not None:
        alarms = [a for a in found["alarms"] if a["status"] == "ACTIVE" or not active_only]
        return {**found, "alarms": alarms, "via": "running plant"}
    answer = execute(settings, {"op": "list", "active": active_only})
    if not answer.get("ok"):
        raise ConfigError(str(answer.get("error")))
    return answer
