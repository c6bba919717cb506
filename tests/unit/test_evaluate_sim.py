"""``plantwatch evaluate sim``'s judgement of a test run's summary: which fault was found, how
late, by what, and the per-machine-hour figures (the runs themselves are the e2e models test)."""

from __future__ import annotations

import argparse

from plantwatch.evaluate.sim import judge


def _fault(machine: str, sensor: str, kind: str, start: str) -> dict[str, str]:
    return {"machine": machine, "sensor": sensor, "kind": kind, "start": start, "end": "x"}


def test_judge_counts_detections_delays_and_who_found_first() -> None:
    wear = _fault("P-1", "vib_de", "bearing_wear", "2026-01-01T01:00:00Z")
    leak = _fault("P-2", "pressure", "pressure_leak", "2026-01-01T02:00:00Z")
    stuck = _fault("F-1", "temp", "stuck", "2026-01-01T03:00:00Z")
    summary = {
        "faults_injected": [wear, leak, stuck],
        "faults_detected": [
            {
                **wear,
                "detection_delay_s": 300.0,
                "first_anomaly": {"delay_s": 300.0, "detector": "model:pca"},
                "first_alert": {"delay_s": 900.0, "rule": "vibration_zone"},
            },
            {
                **leak,
                "detection_delay_s": 60.0,
                "first_anomaly": {"delay_s": 120.0, "detector": "model:pca"},
                "first_alert": {"delay_s": 60.0, "rule": "pressure_low"},  # the rule was first
            },
        ],
        "detection": {
            "machine_fault_recall": 1.0,
            "false_alerts_per_machine_hour": 0.0,
            "anomalies_outside_faults": {"model:pca": 12, "static_limit": 5},
        },
        "anomalies_by_detector": {"model:pca": 40},
    }
    args = argparse.Namespace(machines=4, hours=3.0, train_hours=24.0, model="pca")
    report = judge(summary, args)

    by_kind = {row[1]: row for row in report.rows}
    assert by_kind["bearing_wear"][2:] == ["machine", wear["start"], True, 300.0, "model:pca"]
    assert by_kind["pressure_leak"][2:] == ["machine", leak["start"], True, 60.0, "pressure_low"]
    assert by_kind["stuck"][2:] == ["sensor", stuck["start"], False, None, None]
    s = report.summary
    assert (s["faults"], s["faults_detected"], s["detection_rate"]) == (3, 2, 0.667)
    assert s["median_delay_s"] == 180.0
    assert s["faults_first_found_by_a_model"] == 1
    assert s["model_anomalies_outside_faults"] == 12
    assert s["model_anomalies_outside_faults_per_machine_hour"] == 1.0  # 12 / (4 × 3)
