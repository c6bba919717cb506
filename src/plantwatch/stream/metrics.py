"""Run metrics shared between the runner and whoever displays them (thread-safe snapshots)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from plantwatch.stream.outputs import AlertEvent, Counts

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
    active_alerts: dict[str, AlertEvent] = field(default_factory=dict)
    latest: dict[tuple[str, str], tuple[float, str, str]] = field(default_factory=dict)
    rate: float = 0.0  # readings stored per wall second, smoothed
    event_time_ms: int = 0

    def throughput(self) -> float:
        if (
            self.first_stored is None
            or self.last_stored is None
            or self.last_stored <= self.first_stored
        ):
            return 0.0
        return self.counts.stored / (self.last_stored - self.first_stored)
