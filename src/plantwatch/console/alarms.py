"""Tables of alarms and silences for the terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

_STYLE = {
    "critical": "bold red",
    "major": "red",
    "minor": "yellow",
    "warning": "yellow",
    "info": "cyan",
}


def when(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def alarms_table(alarms: Sequence[Mapping[str, Any]]) -> Table:
    t = Table(
        "id",
        "status",
        "ack",
        "severity",
        "machine/sensor",
        "rule",
        "since",
        "assignee",
        "message",
        title=f"{len(alarms)} alarm(s)",
    )
    for a in alarms:
        ack = a["ack"] + (f" ({a['acknowledged_by']})" if a.get("acknowledged_by") else "")
        t.add_row(
            a["alarm_id"],
            a["status"],
            ack,
            f"[{_STYLE.get(a['severity'], '')}]{a['severity']}[/]",
            f"{a['machine_id']}/{a['sensor_id']}",
            a["rule"],
            when(a.get("created_ms")),
            a.get("assignee", ""),
            a.get("message", ""),
        )
    return t


def silences_table(silences: Sequence[Mapping[str, Any]]) -> Table:
    t = Table(
        "id",
        "state",
        "matchers",
        "starts",
        "ends",
        "by",
        "comment",
        title=f"{len(silences)} silence(s)",
    )
    for s in silences:
        t.add_row(
            s["silence_id"],
            s["state"],
            ", ".join(s["matchers"]),
            when(s["starts_ms"]),
            when(s["ends_ms"]),
            s.get("created_by", ""),
            s.get("comment", ""),
        )
    return t


def show(table: Table) -> None:
    Console(width=200).print(table)
