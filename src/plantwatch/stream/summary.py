"""The run summary: accounting, detection quality against injected faults, speed.

Detection is judged against ground truth the simulator labelled: a *machine* fault counts as
detected when a machine detector (static limit, baseline or a pre-trained model) raised an
anomaly or alert on that machine inside the fault window; a *sensor* fault when anything was
raised on that sensor inside its window. An alert is *false* when it fired on a machine outside
every fault window of that machine (window end extended by ``grace_s``, the time a repaired
machine's baseline needs to settle).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from plantwatch.store.client import Store

MACHINE_DETECTORS = ("static_limit", "baseline")
#: anomalies of a pre-trained model (``model:<name>``) are about the machine too
MODEL_PREFIX = "model:"


@dataclass(frozen=True, slots=True)
class Truth:
    machine_id: str
    sensor_id: str
    kind: str
    start: float  # epoch s
    end: float
    scope: str  # "machine" | "sensor"

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine_id,
            "sensor": self.sensor_id,
            "kind": self.kind,
            "start": _iso(self.start),
            "end": _iso(self.end),
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _events(store: Store, since_ms: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    db = store.database
    an = store.query_arrow(
        f"SELECT toString(machine_id) AS machine_id, toString(sensor_id) AS sensor_id, "
        f"toString(detector) AS source, toUnixTimestamp64Milli(ts) AS ts_ms "
        f"FROM {db}.anomalies FINAL WHERE ts >= fromUnixTimestamp64Milli({{s:Int64}})",
        {"s": since_ms},
    )
    al = store.query_arrow(
        f"SELECT toString(machine_id) AS machine_id, toString(sensor_id) AS sensor_id, "
        f"toString(rule) AS source, toUnixTimestamp64Milli(ts) AS ts_ms "
        f"FROM {db}.alert_events FINAL "
        f"WHERE state = 'firing' AND ts >= fromUnixTimestamp64Milli({{s:Int64}})",
        {"s": since_ms},
    )

    def cols(t: Any) -> dict[str, np.ndarray]:
        return {c: np.asarray(t.column(c).to_numpy(zero_copy_only=False)) for c in t.column_names}

    return cols(an), cols(al)


def _first(
    ev: Mapping[str, np.ndarray], truth: Truth, sources: Sequence[str] | None
) -> tuple[float, str] | None:
    if len(ev["ts_ms"]) == 0:
        return None
    ts = ev["ts_ms"].astype(np.int64)
    mask = (
        (ev["machine_id"] == truth.machine_id)
        & (ts >= truth.start * 1000)
        & (ts <= truth.end * 1000)
    )
    if truth.scope == "sensor":
        mask &= ev["sensor_id"] == truth.sensor_id
    if sources is not None:
        src = ev["source"].astype(str)
        mask &= np.isin(src, list(sources)) | np.char.startswith(src, MODEL_PREFIX)
    if not mask.any():
        return None
    i = int(np.flatnonzero(mask)[np.argmin(ts[mask])])
    return (ts[i] / 1000.0 - truth.start, str(ev["source"][i]))


def _outside_faults(
    ev: Mapping[str, np.ndarray], truths: Sequence[Truth], grace_s: float
) -> np.ndarray:
    """Rows of ``ev`` on a machine outside all of its fault windows (+ grace)."""
    ts = ev["ts_ms"].astype(np.int64)
    inside = np.zeros(len(ts), np.bool_)
    for t in truths:
        inside |= (
            (ev["machine_id"] == t.machine_id)
            & (ts >= t.start * 1000)
            & (ts <= (t.end + grace_s) * 1000)
        )
    return ~inside


def evaluate(
    store: Store,
    truths: Sequence[Truth],
    *,
    since_ms: int,
    machines: int,
    sim_seconds: float,
    machine_rules: Sequence[str],
    grace_s: float = 300.0,
) -> dict[str, Any]:
    """How well the run's alerts and anomalies found the injected faults. A machine fault
    counts as alerted only by ``machine_rules`` (rules about what the machine does, not about
    its sensors' health)."""
    anomalies, alerts = _events(store, since_ms)
    detected = []
    for t in truths:
        machine_scope = t.scope == "machine"
        a = _first(anomalies, t, MACHINE_DETECTORS if machine_scope else None)
        b = _first(alerts, t, machine_rules if machine_scope else None)
        if a is None and b is None:
            continue
        delays = [x[0] for x in (a, b) if x is not None]
        detected.append(
            {
                **t.as_dict(),
                "detection_delay_s": round(min(delays), 1),
                "first_anomaly": None
                if a is None
                else {"delay_s": round(a[0], 1), "detector": a[1]},
                "first_alert": None if b is None else {"delay_s": round(b[0], 1), "rule": b[1]},
            }
        )
    # false alerts: fired on a machine outside all its fault windows (+ grace)
    outside = _outside_faults(anomalies, truths, grace_s)
    false_anomalies = (
        {
            str(det): int(n)
            for det, n in zip(
                *np.unique(anomalies["source"][outside].astype(str), return_counts=True),
                strict=True,
            )
        }
        if outside.any()
        else {}
    )
    false = []
    ts = alerts["ts_ms"].astype(np.int64) if len(alerts["ts_ms"]) else np.zeros(0, np.int64)
    for i in range(len(ts)):
        m = str(alerts["machine_id"][i])
        t = ts[i] / 1000.0
        if not any(f.machine_id == m and f.start <= t <= f.end + grace_s for f in truths):
            false.append(
                {
                    "ts": _iso(t),
                    "machine": m,
                    "sensor": str(alerts["sensor_id"][i]),
                    "rule": str(alerts["source"][i]),
                }
            )
    machine_truths = [t for t in truths if t.scope == "machine"]
    sensor_kinds = sorted({t.kind for t in truths if t.scope == "sensor"})
    detected_keys = {(d["machine"], d["sensor"], d["kind"], d["start"]) for d in detected}
    n_machine_detected = sum(
        1
        for t in machine_truths
        if (t.machine_id, t.sensor_id, t.kind, _iso(t.start)) in detected_keys
    )
    sensor_kinds_detected = sorted({d["kind"] for d in detected if d["kind"] in sensor_kinds})
    machine_hours = machines * sim_seconds / 3600.0
    return {
        "faults_detected": detected,
        "false_alerts": false,
        "detection": {
            "machine_faults": len(machine_truths),
            "machine_faults_detected": n_machine_detected,
            "machine_fault_recall": round(n_machine_detected / len(machine_truths), 3)
            if machine_truths
            else None,
            "machine_faults_alerted": sum(
                1 for d in detected if d["first_alert"] and d["kind"] not in sensor_kinds
            ),
            "sensor_fault_kinds": sensor_kinds,
            "sensor_fault_kinds_detected": sensor_kinds_detected,
            "false_alerts_per_machine_hour": round(len(false) / machine_hours, 4)
            if machine_hours
            else None,
            "anomalies_outside_faults": false_anomalies,
            "grace_s": grace_s,
        },
    }
