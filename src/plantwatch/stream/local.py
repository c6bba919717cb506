"""The in-process runner: bus → pipeline → store → commit, in micro-batches.

One step polls the raw topic until it has ``max_batch_rows`` readings or waited
``max_batch_wait_s``, decodes every message (Arrow or JSON), runs the pipeline once over the
whole batch, writes the outputs to the store with the processed readings *last* (their insert is
the commit point), then commits the messages. In the embedded plant the bus turns that commit
into the edge spool's acknowledgement, so a reading leaves the device's spool only once stored.

After a restart :meth:`LocalRunner.restore` rebuilds the pipeline's state from the store: which
seqs are already stored (so replays are recognised as duplicates), the watermark, each sensor's
baseline and when it was last seen.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.bus.base import Bus, Message
from plantwatch.core.clock import Clock
from plantwatch.core.codec import ARROW, Reject, decode, ts_ms
from plantwatch.core.reading import READING_SCHEMA
from plantwatch.core.topics import Topics
from plantwatch.detect import RobustBaseline
from plantwatch.store import queries
from plantwatch.store.client import Store
from plantwatch.stream.metrics import RunMetrics
from plantwatch.stream.outputs import Output
from plantwatch.stream.pipeline import Pipeline

log = logging.getLogger(__name__)

_TOPICS = Topics()

#: Write order: the processed readings go last; their insert is the batch's commit point.
WRITE_ORDER = ("dead_letters", "features", "anomalies", "alert_events", "readings_ingest")


@dataclass(frozen=True, slots=True)
class Restored:
    sensors: int
    gappy_sensors: int
    max_event_ms: int | None
    baselines: int


class LocalRunner:
    def __init__(
        self,
        *,
        bus: Bus,
        store: Store,
        pipeline: Pipeline,
        clock: Clock,
        topics: Topics = _TOPICS,
        group: str = "plantwatch-stream",
        max_batch_rows: int = 50_000,
        max_batch_wait_s: float = 0.2,
        metrics: RunMetrics | None = None,
        on_output: Callable[[Output], None] | None = None,
    ) -> None:
        self.bus, self.store, self.pipeline, self.clock, self.topics = (
            bus,
            store,
            pipeline,
            clock,
            topics,
        )
        self.max_batch_rows = max_batch_rows
        self.max_batch_wait_s = max_batch_wait_s
        self.metrics = metrics or RunMetrics()
        self.on_output = on_output
        self._consumer = bus.subscribe(topics.raw, group)

    # -- state ---------------------------------------------------------------------------------

    def restore(self) -> Restored:
        p = self.pipeline
        p.registry.set_machine_types(queries.machine_types(self.store))
        gappy = 0
        histories = queries.sensor_histories(self.store)
        horizon = p.deduper.horizon
        for h in histories:
            idx = p.registry.add(h.machine_id, h.sensor_id, h.kind)
            # As the live state would be: seqs start at 1 (or 0); a history that starts
            # higher and spans more than the horizon was cut below its oldest seq.
            floor = min(h.first - 1, 0) if h.first <= 1 or h.last <= horizon else h.first - 1
            if h.contiguous and floor == h.first - 1:
                p.deduper.restore(idx, floor=floor, contig=h.last, seen_above=[])
                continue
            gappy += 1
            floor = max(floor, h.last - horizon - 1)
            seen = queries.seqs_above(self.store, h.machine_id, h.sensor_id, floor)
            p.deduper.restore(idx, floor=floor, contig=floor, seen_above=seen)
            if h.last_ts_ms >= 0:
                p.windows.restore_last_seen(idx, h.last_ts_ms)
        max_ms = queries.max_event_ms(self.store)
        if max_ms is not None:
            p.windows.restore_watermark(max_ms)
        baselines = 0
        scorer = next((d for d in p.detectors if isinstance(d, RobustBaseline)), None)
        if scorer is not None:
            for machine, sensor, means in queries.recent_window_means(self.store, scorer.history):
                found = p.registry.find(machine, sensor)
                if found is not None:
                    scorer.restore(found, int(p.registry.kinds[found]), means)
                    baselines += 1
        return Restored(len(histories), gappy, max_ms, baselines)

    # -- the loop ------------------------------------------------------------------------------

    def poll(self, timeout: float) -> list[Message]:
        msgs = self._consumer.poll(1, timeout)
        if not msgs:
            return msgs
        rows = _count(msgs[0])
        deadline = time.monotonic() + self.max_batch_wait_s
        while rows < self.max_batch_rows and time.monotonic() < deadline:
            more = self._consumer.poll(1, max(0.0, min(0.02, deadline - time.monotonic())))
            msgs.extend(more)
            rows += sum(_count(m) for m in more)
        return msgs

    def step(self, timeout: float = 0.2) -> int:
        """One micro-batch. Returns the number of readings received (0: nothing arrived)."""
        msgs = self.poll(timeout)
        if not msgs:
            return 0
        tables: list[pa.Table] = []
        rejects: list[Reject] = []
        for m in msgs:
            d = decode(m.headers.get("content-type", ARROW), m.value)
            if d.table.num_rows:
                tables.append(d.table)
            rejects.extend(d.rejects)
        table = pa.concat_tables(tables) if tables else READING_SCHEMA.empty_table()
        now_ms = int(self.clock.time() * 1000)
        out = self.pipeline.process(table, now_ms=now_ms, rejects=rejects, source=self.topics.raw)
        self.write(out)
        self._consumer.commit(msgs)
        self._account(out)
        return out.counts.received

    def write(self, out: Output) -> None:
        tables = {
            "dead_letters": out.dead_letters,
            "features": out.features,
            "anomalies": out.anomalies,
            "alert_events": out.alerts_table(),
            "readings_ingest": out.readings,
        }
        for name in WRITE_ORDER:
            self.store.insert(name, tables[name])
        self._publish(out)

    def finish(self) -> Output:
        """Fire the open windows (end of run) and store what they produce."""
        out = self.pipeline.flush(now_ms=int(self.clock.time() * 1000))
        self.write(out)
        self._account(out)
        return out

    def close(self) -> None:
        self._consumer.close()

    # -- side effects of a batch -----------------------------------------------------------------

    def _publish(self, out: Output) -> None:
        """Outputs onto their topics for other consumers (dropped if nobody subscribes)."""
        for event in out.alerts:
            payload = {
                "ts_ms": event.ts_ms,
                "rule": event.rule,
                "state": event.state,
                "severity": event.severity,
                "machine_id": event.machine_id,
                "sensor_id": event.sensor_id,
                "kind": event.kind,
                "value": event.value,
                "message": event.message,
                "fingerprint": event.fingerprint,
            }
            self.bus.publish(
                self.topics.alerts,
                json.dumps(payload).encode(),
                key=event.machine_id.encode(),
                headers={"content-type": "application/json"},
                timeout=0.0,
            )

    def _account(self, out: Output) -> None:
        m = self.metrics
        now = time.time()
        lat = np.zeros(0)
        if out.readings.num_rows:
            ev_ms = ts_ms(out.readings).astype(np.float64)
            wall = np.asarray([self.clock.wall_at(t) for t in (ev_ms[[0, -1]] / 1000.0)])
            # linear map between the batch's first and last event (exact for a constant speed)
            span = ev_ms[-1] - ev_ms[0]
            frac = (ev_ms - ev_ms[0]) / span if span > 0 else np.zeros(len(ev_ms))
            lat = np.maximum(0.0, (now - (wall[0] + frac * (wall[1] - wall[0]))) * 1000.0)
        with m.lock:
            m.counts.add(out.counts)
            m.batches += 1
            m.anomalies += out.anomalies.num_rows
            for det, n in zip(
                *np.unique(
                    np.asarray(out.anomalies.column("detector"), dtype=object), return_counts=True
                ),
                strict=True,
            ):
                m.anomalies_by_detector[str(det)] += int(n)
            for row in out.anomalies.slice(max(0, out.anomalies.num_rows - 12)).to_pylist():
                m.recent_anomalies.append(row)
            for e in out.alerts:
                m.recent_alerts.append(e)
                if e.state == "firing":
                    m.alerts_fired += 1
                    m.active_alerts[e.fingerprint] = e
                else:
                    m.alerts_resolved += 1
                    m.active_alerts.pop(e.fingerprint, None)
            if out.readings.num_rows:
                m.latency.add(lat)
                if m.first_stored is None:
                    m.first_stored = now
                m.last_stored = now
                m.event_time_ms = max(m.event_time_ms, int(ts_ms(out.readings).max()))
                _update_latest(m, out.readings)


def _count(m: Message) -> int:
    try:
        return int(m.headers.get("count", "1"))
    except ValueError:
        return 1


def _update_latest(m: RunMetrics, readings: pa.Table) -> None:
    """Latest value per sensor (its last row in the batch), for the live view."""
    key = pc.binary_join_element_wise(
        readings.column("machine_id").combine_chunks(),
        readings.column("sensor_id").combine_chunks(),
        "\x1f",
    )
    codes = np.asarray(pc.dictionary_encode(key).indices.to_numpy(zero_copy_only=False), np.int64)
    last = np.full(int(codes.max()) + 1, -1, np.int64)
    last[codes] = np.arange(len(codes))  # the last write per code wins
    tail = readings.select(["machine_id", "sensor_id", "value", "unit", "quality"]).take(
        pa.array(last)
    )
    for machine, sensor, value, unit, quality in zip(
        *(tail.column(c).to_pylist() for c in tail.column_names), strict=True
    ):
        m.latest[(machine, sensor)] = (value, unit, quality)


def stop_when_idle(runner: LocalRunner, idle_s: float, *, limit_s: float) -> int:
    """Step until nothing arrives for ``idle_s`` (tests and tools). Returns batches run."""
    deadline = time.monotonic() + limit_s
    batches = 0
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if runner.step(timeout=0.05):
            batches += 1
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= idle_s:
            break
    return batches


__all__: Sequence[str] = ("WRITE_ORDER", "LocalRunner", "Restored", "stop_when_idle")
