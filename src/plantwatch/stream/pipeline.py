"""The stream's logic, written once: pure functions over Arrow batches plus explicit state.

    validate keys → de-duplicate → validate values → normalize units → quality and anomaly
    score per reading → event-time windows → detectors on closed windows → alert rules

:class:`Pipeline` holds the state (sensor index, de-duplication, windows, detectors, alert
states) and turns one batch into an :class:`~plantwatch.stream.outputs.Output`: the rows to
store, dead letters, features, anomalies, alert events and counts. It performs no I/O, so the
local runner and the Flink job drive the very same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.alert.evaluate import Fired, MachineInfo, RuleEvaluator, Targets
from plantwatch.alert.rulefile import default_rule_set
from plantwatch.alert.rules import Rule
from plantwatch.core.codec import Reject, table_to_json_rows, ts_ms
from plantwatch.core.deadletter import DEAD_LETTER_SCHEMA, Reason
from plantwatch.core.kinds import KIND_NAMES, KINDS, SensorKind
from plantwatch.core.reading import TS_TYPE
from plantwatch.core.settings import StreamSettings
from plantwatch.detect import (
    SEVERITY,
    Detector,
    Finding,
    RobustBaseline,
    Windows,
    default_detectors,
)
from plantwatch.detect.base import KIND_LABELS
from plantwatch.stream.dedupe import Deduper
from plantwatch.stream.outputs import (
    ANOMALIES_SCHEMA,
    FEATURES_SCHEMA,
    READINGS_INGEST_SCHEMA,
    AlertEvent,
    Counts,
    Output,
)
from plantwatch.stream.registry import SensorRegistry
from plantwatch.stream.validate import REASONS, Problems, TimeLimits, key_problems, value_problems
from plantwatch.stream.windows import Closed, Tumbling

if TYPE_CHECKING:
    from plantwatch.models.scoring import ModelScorer

_LOW = np.array([KINDS[SensorKind(k)].low for k in KIND_NAMES] + [-np.inf])
_HIGH = np.array([KINDS[SensorKind(k)].high for k in KIND_NAMES] + [np.inf])
_VIBRATION = KIND_NAMES.index("vibration")


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    window_s: float = 10.0
    out_of_orderness_s: float = 5.0
    allowed_lateness_s: float = 60.0
    max_future_skew_s: float = 300.0
    max_age_s: float = 7 * 86_400.0
    dedupe_horizon: int = 100_000
    no_data_after_s: float = 60.0
    idle_source_s: float = 5.0  # processing time: see windows.Tumbling

    @classmethod
    def from_settings(cls, st: StreamSettings) -> PipelineConfig:
        return cls(
            window_s=st.window_s,
            out_of_orderness_s=st.out_of_orderness_s,
            allowed_lateness_s=st.allowed_lateness_s,
            max_future_skew_s=st.max_future_skew_s,
            max_age_s=st.max_age_s,
            dedupe_horizon=st.dedupe_horizon,
            no_data_after_s=st.no_data_after_s,
            idle_source_s=st.idle_source_s,
        )


class Pipeline:
    def __init__(
        self,
        config: PipelineConfig = PipelineConfig(),
        *,
        machine_types: Mapping[str, str] | None = None,
        detectors: Sequence[Detector] | None = None,
        rules: Sequence[Rule] | None = None,
        machine_info: Mapping[str, MachineInfo] | None = None,
        models: ModelScorer | None = None,
    ) -> None:
        self.config = config
        #: pre-trained models (the promoted one per machine type) on every closed window
        self.models = models
        self.registry = SensorRegistry(machine_types)
        self.deduper = Deduper(horizon=config.dedupe_horizon)
        self.windows = Tumbling(
            size_ms=int(config.window_s * 1000),
            out_of_orderness_ms=int(config.out_of_orderness_s * 1000),
            allowed_lateness_ms=int(config.allowed_lateness_s * 1000),
            idle_ms=int(config.idle_source_s * 1000),
        )
        self.detectors = list(
            default_detectors(no_data_after_s=config.no_data_after_s)
            if detectors is None
            else detectors
        )
        if rules is None:
            rules = default_rule_set().rules
        self.machine_info: Mapping[str, MachineInfo] = dict(machine_info or {})
        self.alerts = RuleEvaluator(rules, self._targets)
        self.limits = TimeLimits(
            max_future_skew_ms=int(config.max_future_skew_s * 1000),
            max_age_ms=int(config.max_age_s * 1000),
        )
        baselines = [d for d in self.detectors if isinstance(d, RobustBaseline)]
        self._scorer = baselines[0] if baselines else None

    def _targets(self) -> Targets:
        machines, sensors = self.registry.names()
        return Targets(
            machine=machines,
            sensor=sensors,
            kind=self.registry.kinds,
            machine_type=self.registry.types,
            info=self.machine_info,
        )

    def register_machines(self, rows: Iterable[Mapping[str, str]]) -> None:
        """Machine registry rows (machine_id, machine_type, line, site): types for the static
        limits, lines, sites and types for rule selectors and alert labels."""
        rows = list(rows)
        self.registry.set_machine_types({r["machine_id"]: r["machine_type"] for r in rows})
        self.machine_info = {
            **self.machine_info,
            **{
                r["machine_id"]: MachineInfo(line=r.get("line", ""), site=r.get("site", ""))
                for r in rows
            },
        }
        self.alerts.invalidate()

    # -- one batch ------------------------------------------------------------------------------

    def process(
        self,
        table: pa.Table,
        *,
        now_ms: int,
        rejects: Sequence[Reject] = (),
        source: str = "",
        arrival_ms: int | None = None,
    ) -> Output:
        """One batch. ``now_ms``: the pipeline clock (validation, ingestion times);
        ``arrival_ms``: processing (wall) time the batch arrived, for source idleness."""
        counts = Counts(received=table.num_rows + len(rejects))
        keyed_rejects = [r for r in rejects if r.seq is not None]
        dead: list[pa.Table] = [
            _rejects_table([r for r in rejects if r.seq is None], now_ms, source)
        ]

        kp = key_problems(table)
        dead.append(_dead_table(table, kp, now_ms, source))
        keyed = table.filter(pa.array(kp.ok)) if not kp.ok.all() else table

        idx = self.registry.lookup(
            keyed.column("machine_id").combine_chunks(),
            keyed.column("sensor_id").combine_chunks(),
            keyed.column("kind").combine_chunks().fill_null(""),
        )
        seq = np.asarray(pc.cast(keyed.column("seq"), pa.int64(), safe=False).to_numpy(), np.int64)
        # Records and readable-key rejects are de-duplicated together, in one pass.
        r_idx = np.array(
            [self.registry.add(r.machine_id, r.sensor_id, "") for r in keyed_rejects], np.int64
        )
        r_seq = np.array([r.seq for r in keyed_rejects], np.int64)
        dd = self.deduper.check(np.concatenate([idx, r_idx]), np.concatenate([seq, r_seq]))
        n = len(idx)
        counts.duplicates = int(dd.duplicate.sum())
        dead.append(
            _rejects_table(
                [r for j, r in enumerate(keyed_rejects) if dd.new[n + j] or dd.stale[n + j]],
                now_ms,
                source,
            )
        )
        stale, new = dd.stale[:n], dd.new[:n]
        if stale.any():
            rows = keyed.filter(pa.array(stale))
            codes = np.full(rows.num_rows, REASONS.index(Reason.STALE_SEQUENCE), np.int16)
            detail = "seq is older than the de-duplication history of this sensor"
            dead.append(
                _dead_table(
                    rows,
                    Problems(codes, dict.fromkeys(range(rows.num_rows), detail)),
                    now_ms,
                    source,
                )
            )
        fresh = keyed.filter(pa.array(new))
        idx = idx[new]

        vp, norm = value_problems(fresh, now_ms=now_ms, limits=self.limits)
        dead.append(_dead_table(fresh, vp, now_ms, source))
        ok = vp.ok
        good = fresh.filter(pa.array(ok))
        idx = idx[ok]
        values = norm.values[ok]
        units = norm.units.filter(pa.array(ok))
        arrival = now_ms if arrival_ms is None else arrival_ms
        readings, windows_out = self._accept(good, idx, values, units, now_ms, arrival, counts)

        dead_letters = pa.concat_tables(
            [d for d in dead if d.num_rows] or [DEAD_LETTER_SCHEMA.empty_table()]
        )
        for reason, n in zip(
            *np.unique(np.asarray(dead_letters.column("reason")), return_counts=True), strict=True
        ):
            counts.dead[str(reason)] += int(n)
        counts.stored = readings.num_rows
        features, anomalies, alerts = windows_out
        return Output(readings, dead_letters, features, anomalies, alerts, counts)

    def flush(self, *, now_ms: int) -> Output:
        """Fire every open window (end of a run): features, detectors and rules for the tail."""
        fired, updates = self.windows.advance(flush=True)
        features, anomalies, alerts = self._judge(fired, updates, now_ms)
        return Output(
            READINGS_INGEST_SCHEMA.empty_table(),
            DEAD_LETTER_SCHEMA.empty_table(),
            features,
            anomalies,
            alerts,
            Counts(),
        )

    # -- accepted readings ----------------------------------------------------------------------

    def _accept(
        self,
        good: pa.Table,
        idx: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
        units: pa.Array,
        now_ms: int,
        arrival_ms: int,
        counts: Counts,
    ) -> tuple[pa.Table, tuple[pa.Table, pa.Table, list[AlertEvent]]]:
        kind = self.registry.kinds[idx] if len(idx) else np.zeros(0, np.int8)
        oor = (values < _LOW[kind]) | (values > _HIGH[kind])
        quality = good.column("quality").combine_chunks().fill_null("good")
        quality = pc.if_else(pa.array(oor), "bad", quality)
        include = np.asarray(pc.not_equal(quality, "bad").to_numpy(zero_copy_only=False), np.bool_)
        ts = ts_ms(good)
        score = self._scorer.score_readings(idx, values) if self._scorer else np.zeros(len(idx))
        added = self.windows.add(
            idx,
            ts,
            values,
            include=include,
            out_of_range=oor,
            n_sensors=len(self.registry),
            source=self.registry.machine_of[idx],
            arrival_ms=arrival_ms,
        )
        counts.late = int(added.late.sum())
        counts.late_beyond_lateness = int(added.too_late.sum())
        counts.out_of_range = int(oor.sum())
        n = good.num_rows
        readings = pa.Table.from_arrays(
            [
                good.column("machine_id"),
                pa.array(self.registry.types[idx] if n else [], pa.string()),
                good.column("sensor_id"),
                good.column("kind"),
                good.column("ts"),
                good.column("seq"),
                good.column("value"),
                good.column("unit"),
                pa.array(values, pa.float64()),
                units,
                quality,
                pa.array(np.nan_to_num(score, nan=0.0, posinf=1e9).astype(np.float32)),
                pa.array(added.late.astype(np.uint8)),
                good.column("schema_version").fill_null(1),
                pa.array(np.full(n, now_ms, np.int64)).cast(TS_TYPE),
            ],
            schema=READINGS_INGEST_SCHEMA,
        )
        fired, updates = self.windows.advance()
        return readings, self._judge(fired, updates, now_ms)

    # -- windows, detectors, rules --------------------------------------------------------------

    def _judge(
        self, fired: list[Closed], updates: list[Closed], now_ms: int
    ) -> tuple[pa.Table, pa.Table, list[AlertEvent]]:
        # one features row per sensor with readings in the window
        rows = [c.sensors[c.count[c.sensors] > 0] for c in (*fired, *updates)]
        feats = [
            self._features(c, r, now_ms) for c, r in zip((*fired, *updates), rows, strict=True)
        ]
        anomalies: list[pa.Table] = []
        alerts: list[AlertEvent] = []
        if self.models is not None and fired:
            # every window closed in this batch, all machines of a type in one model call
            n_fired = len(fired)
            anomalies.append(
                self.models.score(
                    pa.concat_tables(feats[:n_fired]),
                    self.registry.types[np.concatenate(rows[:n_fired])],
                    now_ms,
                )
            )
        for c in fired:
            w = self._detector_input(c)
            findings: dict[str, Finding] = {}
            for det in self.detectors:
                finding = findings[det.name] = det.evaluate(w)
                anomalies.append(self._anomalies(det.name, w, finding, now_ms))
            n = len(w)
            alerts.extend(self._event(f) for f in self.alerts.evaluate(w, c.rms[:n], findings))
        return (
            pa.concat_tables([f for f in feats if f.num_rows] or [FEATURES_SCHEMA.empty_table()]),
            pa.concat_tables(
                [a for a in anomalies if a.num_rows] or [ANOMALIES_SCHEMA.empty_table()]
            ),
            alerts,
        )

    def _detector_input(self, c: Closed) -> Windows:
        n = len(c.count)
        return Windows(
            sensor=np.arange(n, dtype=np.int64),
            kind=self.registry.kinds[:n],
            machine_type=self.registry.types[:n],
            start_ms=np.full(n, c.start_ms, np.int64),
            end_ms=np.full(n, c.end_ms, np.int64),
            count=c.count,
            mean=c.mean,
            std=c.std,
            min=c.min,
            max=c.max,
            last=c.last,
            last_seen_ms=np.where(c.last_seen_ms == np.iinfo(np.int64).min, -1, c.last_seen_ms),
            out_of_range=c.out_of_range,
        )

    def _features(self, c: Closed, rows: npt.NDArray[np.int64], now_ms: int) -> pa.Table:
        machines, sensors = self.registry.names()
        kind = self.registry.kinds[rows]
        k = len(rows)
        rms = np.where(kind == _VIBRATION, c.rms[rows], np.nan)
        return pa.Table.from_arrays(
            [
                pa.array(machines[rows], pa.string()),
                pa.array(sensors[rows], pa.string()),
                pa.array(np.array(KIND_LABELS, dtype=object)[kind] if k else [], pa.string()),
                pa.array(np.full(k, c.start_ms, np.int64)).cast(TS_TYPE),
                pa.array(np.full(k, c.end_ms, np.int64)).cast(TS_TYPE),
                pa.array(c.count[rows].astype(np.uint32)),
                pa.array(c.mean[rows]),
                pa.array(c.min[rows]),
                pa.array(c.max[rows]),
                pa.array(c.std[rows]),
                pa.array(c.last[rows]),
                pa.array(rms, pa.float64(), mask=np.isnan(rms)),
                pa.array(c.version[rows].astype(np.uint32)),
                pa.array(np.full(k, now_ms, np.int64)).cast(TS_TYPE),
            ],
            schema=FEATURES_SCHEMA,
        )

    def _anomalies(self, detector: str, w: Windows, f: Finding, now_ms: int) -> pa.Table:
        rows = np.flatnonzero(f.level > 0)
        if len(rows) == 0:
            return ANOMALIES_SCHEMA.empty_table()
        machines, sensors = self.registry.names()
        s = w.sensor[rows]
        kinds = [KIND_LABELS[k] for k in w.kind[rows]]
        values, thr, score = f.value[rows], f.threshold[rows], f.score[rows]
        messages = [
            f"{detector}: {kinds[j]} {values[j]:.4g} vs {thr[j]:.4g} (score {score[j]:.3g})"
            for j in range(len(rows))
        ]
        return pa.Table.from_arrays(
            [
                pa.array(w.end_ms[rows]).cast(TS_TYPE),
                pa.array(machines[s], pa.string()),
                pa.array(w.machine_type[rows], pa.string()),
                pa.array(sensors[s], pa.string()),
                pa.array(kinds, pa.string()),
                pa.array([detector] * len(rows), pa.string()),
                pa.array([SEVERITY[int(x)] for x in f.level[rows]], pa.string()),
                pa.array(score),
                pa.array(values),
                pa.array(thr),
                pa.array(messages, pa.string()),
                pa.array(np.full(len(rows), now_ms, np.int64)).cast(TS_TYPE),
                pa.array([""] * len(rows), pa.string()),
            ],
            schema=ANOMALIES_SCHEMA,
        )

    @staticmethod
    def _event(f: Fired) -> AlertEvent:
        t = f.transition
        return AlertEvent(
            ts_ms=t.ts_ms,
            rule=t.rule.name,
            state=t.state,
            severity=f.severity,
            machine_id=f.labels["machine_id"],
            sensor_id=f.labels["sensor_id"],
            kind=f.labels["kind"],
            value=t.value,
            message=f.summary,
            active_since_ms=t.active_since_ms,
            previous=t.previous,
            threshold=t.threshold,
            labels=f.labels,
            annotations=f.annotations,
        )


def _dead_table(table: pa.Table, problems: Problems, now_ms: int, source: str) -> pa.Table:
    bad = ~problems.ok
    if not bad.any():
        return DEAD_LETTER_SCHEMA.empty_table()
    rows_idx = np.flatnonzero(bad)
    rows = table.take(pa.array(rows_idx))
    n = len(rows_idx)
    return pa.Table.from_arrays(
        [
            pa.array(np.full(n, now_ms, np.int64)).cast(TS_TYPE),
            pa.array([REASONS[c].value for c in problems.codes[rows_idx]], pa.string()),
            pa.array([problems.details.get(int(r), "") for r in rows_idx], pa.string()),
            pa.array([source] * n, pa.string()),
            rows.column("machine_id").fill_null(""),
            rows.column("sensor_id").fill_null(""),
            rows.column("seq"),
            pa.array(table_to_json_rows(rows), pa.string()),
        ],
        schema=DEAD_LETTER_SCHEMA,
    )


def _rejects_table(rejects: Sequence[Reject], now_ms: int, source: str) -> pa.Table:
    if not rejects:
        return DEAD_LETTER_SCHEMA.empty_table()
    n = len(rejects)
    return pa.Table.from_arrays(
        [
            pa.array(np.full(n, now_ms, np.int64)).cast(TS_TYPE),
            pa.array([r.reason.value for r in rejects], pa.string()),
            pa.array([r.detail for r in rejects], pa.string()),
            pa.array([source] * n, pa.string()),
            pa.array([r.machine_id for r in rejects], pa.string()),
            pa.array([r.sensor_id for r in rejects], pa.string()),
            pa.array([r.seq for r in rejects], pa.uint64()),
            pa.array([r.payload for r in rejects], pa.string()),
        ],
        schema=DEAD_LETTER_SCHEMA,
    )
