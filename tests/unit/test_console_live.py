"""The live view and its log line render a snapshot people can read."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from plantwatch.console.live import MachineRow, Snapshot, log_line, render


def snapshot(machines: list[MachineRow]) -> Snapshot:
    return Snapshot(
        sim_time=1_800_000_000.0,
        wall_elapsed=12.0,
        generated=1000,
        stored=990,
        duplicates=4,
        dead_letters={"bad_unit": 6},
        late=2,
        anomalies=7,
        alerts_fired=3,
        alerts_resolved=1,
        rate=1234.0,
        latency_p50=120.0,
        latency_p95=15_000.0,
        spool_pending=10,
        machines=machines,
        recent_anomalies=[
            {
                "ts": datetime(2027, 1, 15, 8, 0, 5, tzinfo=UTC),
                "machine_id": "B-PUMP",
                "sensor_id": "vib",
                "detector": "static_limit",
                "severity": "critical",
            }
        ],
        recent_alerts=["firing critical machine_limit B-PUMP/vib"],
    )


def text(s: Snapshot, **kw: int) -> str:
    console = Console(width=140, record=True, force_terminal=False)
    console.print(render(s, **kw))
    return console.export_text()


def test_worst_machines_come_first_with_values_and_alerts() -> None:
    s = snapshot(
        [
            MachineRow("A-FAN", "motor_fan", "OK", [("vibration", 2.2, "mm/s", "good")], []),
            MachineRow(
                "B-PUMP",
                "centrifugal_pump",
                "ALARM",
                [("vib", 8.1, "mm/s", "good")],
                ["machine_limit:vib"],
            ),
            MachineRow(
                "C-COMP",
                "air_compressor",
                "SENSOR",
                [("humidity", -9999.0, "%", "bad")],
                ["sensor_out_of_range:humidity"],
            ),
        ]
    )
    out = text(s)
    assert out.index("B-PUMP") < out.index("C-COMP") < out.index("A-FAN")
    assert "vib 8.1 mm/s" in out
    assert "machine_limit:vib" in out and "sensor_out_of_range:humidity" in out
    assert "2027-01-15 08:00:00 UTC" in out
    assert "1,234 readings/s" in out and "120 ms / 15.0 s" in out
    assert "dead letters 6" in out
    assert "08:00:05 B-PUMP/vib static_limit critical" in out
    assert "firing critical machine_limit B-PUMP/vib" in out


def test_long_plants_are_cut_with_a_count() -> None:
    rows = [MachineRow(f"M{i:02d}", "motor_fan", "OK", [], []) for i in range(30)]
    out = text(snapshot(rows), max_machines=5)
    assert "M04" in out and "M05" not in out
    assert "… 25 more" in out and "25 OK" in out


def test_log_line_has_the_counts() -> None:
    s = snapshot([MachineRow("A", "motor_fan", "WARN", [], ["x"])])
    line = log_line(s)
    assert "stored 990/1,000" in line and "dead 6" in line and "machines-not-ok 1" in line


def alarm(i: int, severity: str, ack: str = "UNACK", by: str = "") -> dict[str, object]:
    return {
        "alarm_id": f"A{i:010x}",
        "status": "ACTIVE",
        "ack": ack,
        "severity": severity,
        "rule": "vibration_zone",
        "machine_id": f"L1-PUMP-{i:02d}",
        "sensor_id": "vib_de",
        "created_ms": 1_800_000_000_000 + i * 1000,
        "acknowledged_by": by,
        "assignee": "joe" if by else "",
        "message": f"vibration {7 + i} mm/s beyond 7.1 mm/s",
    }


def test_active_alarms_are_shown_with_their_ids_and_acknowledgement() -> None:
    base = snapshot([])
    s = Snapshot(
        **{
            **{f: getattr(base, f) for f in base.__dataclass_fields__},
            "alarms": [alarm(1, "critical"), alarm(2, "major", "ACK", "ana")],
            "notifications": "sent 5, failed 1",
        }
    )
    out = text(s)
    assert "active alarms (2)" in out
    assert "A0000000001" in out and "L1-PUMP-01/vib_de" in out and "UNACK" in out
    assert "ACK ana → joe" in out
    assert "notifications sent 5, failed 1" in out
    assert "alarms-active 2" in log_line(s)
    many = Snapshot(
        **{
            **{f: getattr(s, f) for f in s.__dataclass_fields__},
            "alarms": [alarm(i, "minor") for i in range(14)],
        }
    )
    assert "… 4 more" in text(many, max_alarms=10)
    assert "no active alarms" in text(base)
