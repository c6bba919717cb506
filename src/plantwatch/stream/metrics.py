"""Run metrics shared between the runner and whoever displays them (thread-safe snapshots)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.core.clock import Clock
from plantwatch.core.codec import ts_ms
from plantwatch.stream.outputs import AlertEvent, Counts, Output

#: Latency histogram bins: 0.1 ms .. 10^7 ms, log-spaced (about 4 % wide).
_EDGES = np.logspace(-1, 7, 481)


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts = np.zeros(len(_EDGES) + 1, np.int64)

    def add(self, latencies_ms: npt.NDArray[np.float64]) -> None:
        if len(latencies_ms):
            self.counts += np.bincount(
                np.searchsorted(_EDGES, latencies_ms), minlength=len(self.counts)
            )

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> float | None:
        """Upper edge of the bin holding the q-th percentile (ms), None when empty."""
        total = self.total
        if total == 0:
            return None
        i = int(np.searchsorted(np.cumsum(self.counts), q / 100.0 * total))
        return float(_EDGES[min(i, len(_EDGES) - 1)])


@dataclass(slots=True)
class RunMetrics:
    """Totals of one run and what the live view shows. Guard with ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.time)
    first_stored: float | None = None
    last_stored: float | None = None
    counts: Counts = field(default_factory=Counts)
    batches: int = 0
    anomalies: int = 0
    anomalies_by_detector: Counter[str] = field(default_factory=Counter)
    alerts_fired: int = 0
    alerts_resolved: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    recent_anomalies: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=12))
    recent_alerts: deque[AlertEvent] = field(default_factory=lambda: deque(maxlen=12))
    latest: dict[tuple[str, str], tuple[float, str, str]] = field(default_factory=dict)
    rate: float = 0.0  # readings stored per wall second, smoothed
    event_time_ms: int = 0

    def account_processed(self, out: Output) -> None:
        """What the pipeline made of a batch (everything but what got stored)."""
        counts = Counts(
            received=out.counts.received,
            duplicates=out.counts.duplicates,
            late=out.counts.late,
            late_beyond_lateness=out.counts.late_beyond_lateness,
            out_of_range=out.counts.out_of_range,
            dead=out.counts.dead.copy(),
        )
        detectors = np.asarray(out.anomalies.column("detector"), dtype=object)
        with self.lock:
            self.counts.add(counts)
            self.batches += 1
            self.anomalies += out.anomalies.num_rows
            for det, n in zip(*np.unique(detectors, return_counts=True), strict=True):
                self.anomalies_by_detector[str(det)] += int(n)
            tail = out.anomalies.slice(max(0, out.anomalies.num_rows - 12))
            self.recent_anomalies.extend(tail.to_pylist())
            for e in out.alerts:
                if e.state not in ("firing", "resolved"):
                    continue  # pending, recovering, normal: not what people count
                self.recent_alerts.append(e)
                if e.state == "resolved":
                    self.alerts_resolved += 1
                elif e.previous in ("", "normal", "pending"):
                    self.alerts_fired += 1  # not: back from recovering, or escalated

    def account_stored(self, readings: pa.Table, clock: Clock, *, duplicates: int = 0) -> None:
        """Readings committed to the store: counts, latency from event time, latest values."""
        now = time.time()
        n = readings.num_rows
        with self.lock:
            self.counts.duplicates += duplicates
            if n == 0:
                return
            self.counts.stored += n
            ev_ms = ts_ms(readings).astype(np.float64)
            # wall time of each event: linear between the batch's first and last event (exact
            # for a clock running at a constant speed)
            ends = np.array([clock.wall_at(t) for t in (ev_ms[[0, -1]] / 1000.0)])
            span = ev_ms[-1] - ev_ms[0]
            frac = (ev_ms - ev_ms[0]) / span if span > 0 else np.zeros(n)
            self.latency.add(np.maximum(0.0, (now - (ends[0] + frac * (ends[1] - ends[0]))) * 1000))
            if self.first_stored is None:
                self.first_stored = now
            self.last_stored = now
            self.event_time_ms = max(self.event_time_ms, int(ev_ms.max()))
            self._latest(readings)

    def _latest(self, readings: pa.Table) -> None:
        """Latest value per sensor (its last row in the batch), for the live view."""
        key = pc.binary_join_element_wise(
            readings.column("machine_id").combine_chunks(),
            readings.column("sensor_id").combine_chunks(),
            "\x1f",
        )
        codes = np.asarray(pc.dictionary_encode(key).indices.to_numpy(zero_copy_only=False))
        last = np.full(int(codes.max()) + 1, -1, np.int64)
        last[codes] = np.arange(len(codes))  # the last write per code wins
        cols = ["machine_id", "sensor_id", "value", "unit", "quality"]
        tail = readings.select(cols).take(pa.array(last))
        rows = zip(*(tail.column(c).to_pylist() for c in cols), strict=True)
        for machine, sensor, value, unit, quality in rows:
            self.latest[(machine, sensor)] = (value, unit, quality)

    def throughput(self) -> float:
        if (
            self.first_stored is None
            or self.last_stored is None
            or self.last_stored <= self.first_stored
        ):
            return 0.0
        return self.counts.stored / (self.last_stored - self.first_stored)
