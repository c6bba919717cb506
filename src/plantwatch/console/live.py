"""The terminal live view of ``plantwatch run`` (rich), and its plain-log twin (``--no-live``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

log = logging.getLogger("plantwatch.run")

_SEVERITY_STYLE = {
    "critical": "bold white on red",
    "major": "bold red",
    "minor": "yellow",
    "warning": "yellow",
    "info": "cyan",
}

_STATE_STYLE = {
    "ALARM": "bold white on red",
    "WARN": "bold black on yellow",
    "SENSOR": "bold magenta",
    "OK": "green",
}


@dataclass(frozen=True, slots=True)
class MachineRow:
    machine_id: str
    machine_type: str
    state: str  # OK | WARN | ALARM | SENSOR
    values: Sequence[tuple[str, float, str, str]]  # sensor, value, unit, quality
    alerts: Sequence[str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    sim_time: float
    wall_elapsed: float
    generated: int
    stored: int
    duplicates: int
    dead_letters: Mapping[str, int]
    late: int
    anomalies: int
    alerts_fired: int
    alerts_resolved: int
    rate: float
    latency_p50: float | None
    latency_p95: float | None
    spool_pending: int
    machines: Sequence[MachineRow]
    recent_anomalies: Sequence[Mapping[str, Any]]
    recent_alerts: Sequence[str]
    #: active alarms (AlarmBook.as_dict rows), most severe first
    alarms: Sequence[Mapping[str, Any]] = ()
    notifications: str = ""  # "sent 12, failed 0"


def _fmt_ms(v: float | None) -> str:
    return "–" if v is None else (f"{v:.0f} ms" if v < 10_000 else f"{v / 1000:.1f} s")


def render(s: Snapshot, *, max_machines: int = 24, max_alarms: int = 10) -> Group:
    when = (
        datetime.fromtimestamp(s.sim_time, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if s.sim_time
        else "–"
    )
    dead = sum(s.dead_letters.values())
    head = Text.assemble(
        ("plantwatch ", "bold cyan"),
        f"plant time {when}   wall {s.wall_elapsed:,.0f} s   ",
        ("throughput ", "dim"),
        f"{s.rate:,.0f} readings/s   ",
        ("latency p50/p95 ", "dim"),
        f"{_fmt_ms(s.latency_p50)} / {_fmt_ms(s.latency_p95)}",
    )
    totals = Text(
        f"generated {s.generated:,}  stored {s.stored:,}  duplicates {s.duplicates:,}  "
        f"dead letters {dead:,}  late {s.late:,}  anomalies {s.anomalies:,}  "
        f"alerts fired {s.alerts_fired:,} / resolved {s.alerts_resolved:,}  "
        f"spool pending {s.spool_pending:,}",
        style="dim",
    )
    machines = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    machines.add_column("machine", no_wrap=True)
    machines.add_column("type", no_wrap=True, style="dim")
    machines.add_column("state", no_wrap=True)
    # one line per machine: cells are cut with an ellipsis rather than wrapped
    machines.add_column("latest values", no_wrap=True, overflow="ellipsis", ratio=3)
    machines.add_column("active alerts", no_wrap=True, overflow="ellipsis", ratio=2)
    order = {"ALARM": 0, "WARN": 1, "SENSOR": 2, "OK": 3}
    rows = sorted(s.machines, key=lambda r: (order.get(r.state, 9), r.machine_id))
    for r in rows[:max_machines]:
        values = Text("  ").join(
            Text.assemble(f"{sensor} ", (f"{v:.4g}", "red" if q == "bad" else ""), f" {u}")
            for sensor, v, u, q in r.values
        )
        machines.add_row(
            r.machine_id,
            r.machine_type,
            Text(r.state, style=_STATE_STYLE.get(r.state, "")),
            values,
            ", ".join(r.alerts),
        )
    if len(rows) > max_machines:
        ok = sum(1 for r in rows[max_machines:] if r.state == "OK")
        machines.add_row(
            f"… {len(rows) - max_machines} more", "", Text(f"{ok} OK", style="green"), "", ""
        )
    alarms = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    for col in ("alarm", "severity", "machine/sensor", "rule", "since", "ack", "message"):
        alarms.add_column(
            col, no_wrap=True, overflow="ellipsis", ratio=3 if col == "message" else None
        )
    for a in list(s.alarms)[:max_alarms]:
        since = datetime.fromtimestamp(a["created_ms"] / 1000, UTC).strftime("%H:%M:%S")
        ack = "ACK " + a.get("acknowledged_by", "") if a["ack"] == "ACK" else "UNACK"
        if a.get("assignee"):
            ack += f" → {a['assignee']}"
        alarms.add_row(
            a["alarm_id"],
            Text(a["severity"], style=_SEVERITY_STYLE.get(a["severity"], "")),
            f"{a['machine_id']}/{a['sensor_id']}",
            a["rule"],
            since,
            Text(ack, style="green" if a["ack"] == "ACK" else "bold"),
            a.get("message", ""),
        )
    if len(s.alarms) > max_alarms:
        alarms.add_row(f"… {len(s.alarms) - max_alarms} more", "", "", "", "", "", "")
    if not s.alarms:
        alarms.add_row(Text("no active alarms", style="green"), "", "", "", "", "", "")
    recent = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    recent.add_column("recent anomalies", no_wrap=True, overflow="ellipsis")
    recent.add_column("recent alert events", no_wrap=True, overflow="ellipsis")
    an = [
        f"{a['ts']:%H:%M:%S} {a['machine_id']}/{a['sensor_id']} {a['detector']} {a['severity']}"
        for a in list(s.recent_anomalies)[-8:]
    ]
    al = list(s.recent_alerts)[-8:]
    for i in range(max(len(an), len(al), 1)):
        recent.add_row(an[i] if i < len(an) else "", al[i] if i < len(al) else "")
    return Group(
        Panel(Group(head, totals), border_style="cyan"),
        Panel(machines, title="machines", border_style="blue"),
        Panel(
            alarms,
            title=f"active alarms ({len(s.alarms)})",
            subtitle=(
                f"notifications {s.notifications} · plantwatch alarms ack ID --user U"
                if s.notifications
                else "plantwatch alarms ack ID --user U"
            ),
            border_style="red" if s.alarms else "green",
        ),
        Panel(recent, border_style="magenta"),
    )


def log_line(s: Snapshot) -> str:
    when = datetime.fromtimestamp(s.sim_time, UTC).strftime("%H:%M:%S") if s.sim_time else "-"
    alarm = sum(1 for m in s.machines if m.state != "OK")
    return (
        f"plant {when} wall {s.wall_elapsed:.0f}s stored {s.stored:,}/{s.generated:,} "
        f"dup {s.duplicates:,} dead {sum(s.dead_letters.values()):,} late {s.late:,} "
        f"anomalies {s.anomalies:,} alerts {s.alerts_fired}/{s.alerts_resolved} "
        f"machines-not-ok {alarm} alarms-active {len(s.alarms)} "
        f"rate {s.rate:,.0f}/s p95 {_fmt_ms(s.latency_p95)}"
    )


def run_live(
    snapshot: Callable[[], Snapshot], wait: Callable[[float], bool], *, refresh_s: float = 0.5
) -> None:
    """Redraw until ``wait(refresh_s)`` returns True (the run is over)."""
    from rich.live import Live

    with Live(render(snapshot()), refresh_per_second=4, screen=False, transient=False) as live:
        while not wait(refresh_s):
            live.update(render(snapshot()))
        live.update(render(snapshot()))


def run_log(
    snapshot: Callable[[], Snapshot], wait: Callable[[float], bool], *, every_s: float = 5.0
) -> None:
    while not wait(every_s):
        log.info(log_line(snapshot()))
    log.info(log_line(snapshot()))
