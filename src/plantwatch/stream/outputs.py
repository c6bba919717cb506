"""What the pipeline produces: Arrow schemas of its outputs (the store's tables follow them)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from plantwatch.core.deadletter import DEAD_LETTER_SCHEMA
from plantwatch.core.reading import TS_TYPE

READINGS_INGEST_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("machine_type", pa.string()),
        ("sensor_id", pa.string()),
        ("kind", pa.string()),
        ("ts", TS_TYPE),
        ("seq", pa.uint64()),
        ("raw_value", pa.float64()),
        ("raw_unit", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("quality", pa.string()),
        ("anomaly_score", pa.float32()),
        ("late", pa.uint8()),
        ("schema_version", pa.uint8()),
        ("ingested_at", TS_TYPE),
    ]
)

FEATURES_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("sensor_id", pa.string()),
        ("kind", pa.string()),
        ("window_start", TS_TYPE),
        ("window_end", TS_TYPE),
        ("count", pa.uint32()),
        ("mean", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("std", pa.float64()),
        ("last", pa.float64()),
        ("rms", pa.float64()),
        ("version", pa.uint32()),
        ("computed_at", TS_TYPE),
    ]
)

ANOMALIES_SCHEMA = pa.schema(
    [
        ("ts", TS_TYPE),
        ("machine_id", pa.string()),
        ("machine_type", pa.string()),
        ("sensor_id", pa.string()),
        ("kind", pa.string()),
        ("detector", pa.string()),
        ("severity", pa.string()),
        ("score", pa.float64()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("message", pa.string()),
        ("detected_at", TS_TYPE),
        # '<machine type>/<model>/v<N>' for a pre-trained model's anomaly, '' otherwise
        ("model_version", pa.string()),
    ]
)

ALERT_EVENTS_SCHEMA = pa.schema(
    [
        ("ts", TS_TYPE),
        ("rule", pa.string()),
        ("state", pa.string()),
        ("severity", pa.string()),
        ("machine_id", pa.string()),
        ("sensor_id", pa.string()),
        ("kind", pa.string()),
        ("value", pa.float64()),
        ("message", pa.string()),
        ("fingerprint", pa.string()),
        ("active_since", TS_TYPE),
        ("emitted_at", TS_TYPE),
        ("previous", pa.string()),
        ("threshold", pa.float64()),
        ("labels", pa.string()),
        ("annotations", pa.string()),
    ]
)

#: store table name -> schema of what the pipeline writes to it
TABLES: dict[str, pa.Schema] = {
    "readings_ingest": READINGS_INGEST_SCHEMA,
    "features": FEATURES_SCHEMA,
    "anomalies": ANOMALIES_SCHEMA,
    "alert_events": ALERT_EVENTS_SCHEMA,
    "dead_letters": DEAD_LETTER_SCHEMA,
}


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert instance changed state: pending, firing (also: escalated), recovering, resolved,
    or normal (a pending instance gave up). ``fingerprint`` names the instance."""

    ts_ms: int
    rule: str
    state: str
    severity: str
    machine_id: str
    sensor_id: str
    kind: str
    value: float
    message: str
    active_since_ms: int
    previous: str = ""
    threshold: float = math.nan
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return f"{self.rule}:{self.machine_id}/{self.sensor_id}"

    def to_dict(self) -> dict[str, Any]:
        """The alert topic's JSON object (also what the sink reads back)."""
        return {
            "ts_ms": self.ts_ms,
            "rule": self.rule,
            "state": self.state,
            "previous": self.previous,
            "severity": self.severity,
            "machine_id": self.machine_id,
            "sensor_id": self.sensor_id,
            "kind": self.kind,
            "value": _json_float(self.value),
            "threshold": _json_float(self.threshold),
            "message": self.message,
            "fingerprint": self.fingerprint,
            "active_since_ms": self.active_since_ms,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> AlertEvent:
        """Inverse of :meth:`to_dict`; raises KeyError, TypeError or ValueError when malformed."""
        return AlertEvent(
            ts_ms=int(d["ts_ms"]),
            rule=str(d["rule"]),
            state=str(d["state"]),
            severity=str(d["severity"]),
            machine_id=str(d["machine_id"]),
            sensor_id=str(d["sensor_id"]),
            kind=str(d["kind"]),
            value=_float(d["value"]),
            message=str(d["message"]),
            active_since_ms=int(d.get("active_since_ms", d["ts_ms"])),
            previous=str(d.get("previous", "")),
            threshold=_float(d.get("threshold")),
            labels={str(k): str(v) for k, v in dict(d.get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in dict(d.get("annotations") or {}).items()},
        )


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else x


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def alerts_table(events: Sequence[AlertEvent]) -> pa.Table:
    a = events
    return pa.table(
        {
            "ts": pa.array([e.ts_ms for e in a], pa.int64()).cast(TS_TYPE),
            "rule": [e.rule for e in a],
            "state": [e.state for e in a],
            "severity": [e.severity for e in a],
            "machine_id": [e.machine_id for e in a],
            "sensor_id": [e.sensor_id for e in a],
            "kind": [e.kind for e in a],
            "value": pa.array([e.value for e in a], pa.float64()),
            "message": [e.message for e in a],
            "fingerprint": [e.fingerprint for e in a],
            "active_since": pa.array([e.active_since_ms for e in a], pa.int64()).cast(TS_TYPE),
            "emitted_at": pa.array([e.ts_ms for e in a], pa.int64()).cast(TS_TYPE),
            "previous": [e.previous for e in a],
            "threshold": pa.array([e.threshold for e in a], pa.float64()),
            "labels": [json.dumps(dict(e.labels), sort_keys=True) for e in a],
            "annotations": [json.dumps(dict(e.annotations), sort_keys=True) for e in a],
        },
        schema=ALERT_EVENTS_SCHEMA,
    )


@dataclass(slots=True)
class Counts:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    late: int = 0
    late_beyond_lateness: int = 0
    out_of_range: int = 0
    dead: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        self.received += other.received
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.late += other.late
        self.late_beyond_lateness += other.late_beyond_lateness
        self.out_of_range += other.out_of_range
        self.dead.update(other.dead)


@dataclass(slots=True)
class Output:
    readings: pa.Table
    dead_letters: pa.Table
    features: pa.Table
    anomalies: pa.Table
    alerts: list[AlertEvent]
    counts: Counts

    def alerts_table(self) -> pa.Table:
        return alerts_table(self.alerts)
