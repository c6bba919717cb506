"""Event-time tumbling windows per sensor, a watermark, allowed lateness.

Each source (a machine) has its own progress, the highest event time it sent; the watermark is
the slowest *active* source's progress minus ``out_of_orderness``, so a gateway, or a Kafka
partition a worker reads behind the others, does not make its readings late. A source from which
nothing has *arrived* for ``idle`` milliseconds of processing time is idle and stops holding the
watermark back (Flink's ``withIdleness``): a silent machine cannot stall the plant. (Without
arrival times, idleness falls back to event time: ``idle`` behind the most advanced source.)
A window fires when the watermark passes its end. A reading whose window has already fired is
*late*: within ``allowed_lateness`` it still updates its window (the features are written again
with a higher version); beyond it the window is gone and the reading only counts as late. Late
readings are always stored and counted, never dropped silently.

Accumulators are NumPy arrays per open window, indexed by sensor; a batch is merged per window
with sorted segment reductions (Chan's parallel mean/variance), never row by row in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
NEVER = np.iinfo(np.int64).min


class _Acc:
    """Running statistics of one window for every sensor."""

    def __init__(self, n: int) -> None:
        self.count = np.zeros(n, np.int64)
        self.mean = np.zeros(n, np.float64)
        self.m2 = np.zeros(n, np.float64)
        self.sumsq = np.zeros(n, np.float64)
        self.min = np.full(n, np.inf)
        self.max = np.full(n, -np.inf)
        self.last_ts = np.full(n, NEVER, np.int64)
        self.seen_ts = np.full(n, NEVER, np.int64)  # any reading, included or not
        self.last = np.full(n, np.nan)
        self.oor = np.zeros(n, np.int64)
        self.version = np.zeros(n, np.int64)
        self.dirty = np.zeros(n, np.bool_)
        self.fired = False

    def ensure(self, n: int) -> None:
        if len(self.count) >= n:
            return
        fresh = _Acc(max(n, 2 * len(self.count)))
        k = len(self.count)
        for name in (
            "count",
            "mean",
            "m2",
            "sumsq",
            "min",
            "max",
            "last_ts",
            "seen_ts",
            "last",
            "oor",
            "version",
            "dirty",
        ):
            getattr(fresh, name)[:k] = getattr(self, name)
            setattr(self, name, getattr(fresh, name))


@dataclass(frozen=True, slots=True)
class Closed:
    """Statistics of one window for sensors ``0 .. n-1`` (count 0: no data in the window)."""

    start_ms: int
    end_ms: int
    count: I64
    mean: F64
    std: F64
    min: F64
    max: F64
    last: F64
    rms: F64
    out_of_range: I64
    last_seen_ms: I64
    version: I64
    sensors: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # rows present


@dataclass(frozen=True, slots=True)
class AddResult:
    late: B  # the reading's window had already fired
    too_late: B  # ... and is past allowed lateness: not in any feature


class Tumbling:
    def __init__(
        self,
        *,
        size_ms: int,
        out_of_orderness_ms: int,
        allowed_lateness_ms: int,
        idle_ms: int = 30_000,
    ) -> None:
        if size_ms <= 0:
            raise ValueError(f"window size must be > 0 ms, got {size_ms}")
        if idle_ms <= 0:
            raise ValueError(f"idle timeout must be > 0 ms, got {idle_ms}")
        self.size = size_ms
        self.idle = idle_ms
        self._source_max: I64 = np.zeros(0, np.int64)
        self._source_seen: I64 = np.zeros(0, np.int64)  # arrival (processing) time per source
        self._now: int | None = None  # latest arrival time
        self.delay = out_of_orderness_ms
        self.lateness = allowed_lateness_ms
        self.watermark: int = NEVER
        self.max_ts: int = NEVER
        self._open: dict[int, _Acc] = {}
        self._last_fired_start: int = NEVER
        self.last_seen: I64 = np.zeros(0, np.int64)
        self._n = 0

    def _ensure(self, n: int) -> None:
        if n > self._n:
            self._n = n
        if len(self.last_seen) < n:
            grown = np.full(max(n, 2 * len(self.last_seen), 16), NEVER, np.int64)
            grown[: len(self.last_seen)] = self.last_seen
            self.last_seen = grown

    def restore_watermark(self, max_event_ms: int) -> None:
        """After a restart: event time already processed (readings before it are late)."""
        self.max_ts = max(self.max_ts, max_event_ms)
        self.watermark = max(self.watermark, max_event_ms - self.delay)
        self._last_fired_start = max(
            self._last_fired_start, (self.watermark // self.size) * self.size - self.size
        )

    def resume(self, arrival_ms: int) -> None:
        """After a restore of this state (a Flink checkpoint): the time the job was down does not
        count as silence. Arrival times move forward by the gap, so a source that was active is
        still active and one that was idle is still idle."""
        if self._now is None or arrival_ms <= self._now:
            return
        shift = arrival_ms - self._now
        known = self._source_seen != NEVER
        self._source_seen[known] += shift
        self._now = arrival_ms

    def restore_last_seen(self, sensor: int, ts_ms: int) -> None:
        self._ensure(sensor + 1)
        self.last_seen[sensor] = max(int(self.last_seen[sensor]), ts_ms)

    def add(
        self,
        sensor: I64,
        ts: I64,
        value: F64,
        *,
        include: B,
        out_of_range: B,
        n_sensors: int,
        source: I64 | None = None,
        arrival_ms: int | None = None,
    ) -> AddResult:
        """Account a batch. ``include``: rows whose value enters the statistics; ``source``: the
        source (machine) index of each row, for the watermark (default: one source);
        ``arrival_ms``: processing time the batch arrived, for idleness."""
        self._ensure(n_sensors)
        if arrival_ms is not None:
            self._now = arrival_ms if self._now is None else max(self._now, arrival_ms)
        if source is not None and len(source):
            n_src = int(source.max()) + 1
            if len(self._source_max) < n_src:
                size = max(n_src, 2 * len(self._source_max), 16)
                for name in ("_source_max", "_source_seen"):
                    old = getattr(self, name)
                    grown = np.full(size, NEVER, np.int64)
                    grown[: len(old)] = old
                    setattr(self, name, grown)
            np.maximum.at(self._source_max, source, ts)
            if arrival_ms is not None:
                self._source_seen[np.unique(source)] = arrival_ms
        if len(sensor) == 0:
            z = np.zeros(0, np.bool_)
            return AddResult(z, z.copy())
        start = (ts // self.size) * self.size
        end = start + self.size
        late = end <= self.watermark
        too_late = late & (end + self.lateness <= self.watermark)
        use = ~too_late
        for s in np.unique(start[use]):
            rows = np.flatnonzero(use & (start == s))
            acc = self._open.get(int(s))
            if acc is None:
                acc = self._open[int(s)] = _Acc(max(self._n, 16))
            acc.ensure(self._n)
            self._merge(acc, sensor[rows], ts[rows], value[rows], include[rows], out_of_range[rows])
        self.max_ts = max(self.max_ts, int(ts.max()))
        return AddResult(late, too_late)

    @staticmethod
    def _merge(acc: _Acc, sensor: I64, ts: I64, value: F64, include: B, oor: B) -> None:
        np.maximum.at(acc.seen_ts, sensor, ts)
        if oor.any():
            np.add.at(acc.oor, sensor[oor], 1)
        if acc.fired:
            acc.dirty[sensor[include]] = True
        sensor, ts, x = sensor[include], ts[include], value[include]
        if len(sensor) == 0:
            return
        order = np.lexsort((ts, sensor))
        s_o, t_o, x_o = sensor[order], ts[order], x[order]
        uniq, starts, cnt = np.unique(s_o, return_index=True, return_counts=True)
        ends = starts + cnt - 1
        mean_b = np.add.reduceat(x_o, starts) / cnt
        dev = x_o - np.repeat(mean_b, cnt)
        m2_b = np.add.reduceat(dev * dev, starts)
        na = acc.count[uniq].astype(np.float64)
        nb = cnt.astype(np.float64)
        tot = na + nb
        delta = mean_b - acc.mean[uniq]
        acc.mean[uniq] += delta * nb / tot
        acc.m2[uniq] += m2_b + delta * delta * na * nb / tot
        acc.count[uniq] += cnt
        acc.sumsq[uniq] += np.add.reduceat(x_o * x_o, starts)
        acc.min[uniq] = np.minimum(acc.min[uniq], np.minimum.reduceat(x_o, starts))
        acc.max[uniq] = np.maximum(acc.max[uniq], np.maximum.reduceat(x_o, starts))
        newer = t_o[ends] >= acc.last_ts[uniq]
        acc.last_ts[uniq] = np.where(newer, t_o[ends], acc.last_ts[uniq])
        acc.last[uniq] = np.where(newer, x_o[ends], acc.last[uniq])

    def advance(self, *, flush: bool = False) -> tuple[list[Closed], list[Closed]]:
        """Move the watermark; return (windows that fire now, fired windows updated by late data).

        ``flush`` fires every open window (end of a run).
        """
        if self.max_ts != NEVER:
            progress = self.max_ts
            known = self._source_max != NEVER
            if self._now is not None:  # idle: nothing arrived for a while (processing time)
                active = self._source_max[known & (self._source_seen >= self._now - self.idle)]
            else:  # idle: far behind the most advanced source (event time)
                active = self._source_max[known & (self._source_max >= self.max_ts - self.idle)]
            if len(active) and not flush:
                progress = int(active.min())
            self.watermark = max(self.watermark, progress - self.delay)
        wm = self.watermark
        fired: list[Closed] = []
        updates: list[Closed] = []
        for s in sorted(self._open):
            acc = self._open[s]
            if acc.fired:
                if acc.dirty.any():
                    acc.version[acc.dirty] += 1
                    updates.append(self._closed(s, acc, np.flatnonzero(acc.dirty[: self._n])))
                    acc.dirty[:] = False
                continue
            if s + self.size <= wm or flush:
                acc.ensure(self._n)
                acc.fired = True
                np.maximum(
                    self.last_seen[: self._n], acc.seen_ts[: self._n], out=self.last_seen[: self._n]
                )
                fired.append(self._closed(s, acc, np.arange(self._n)))
                self._last_fired_start = max(self._last_fired_start, s)
        # A complete window in which no sensor sent anything still fires, so silence is seen.
        if wm != NEVER and self._n:
            last_complete = (wm // self.size) * self.size - self.size
            if (
                self._last_fired_start != NEVER
                and last_complete > self._last_fired_start
                and last_complete not in self._open
            ):
                acc = _Acc(self._n)
                acc.fired = True
                self._open[last_complete] = acc
                fired.append(self._closed(last_complete, acc, np.arange(self._n)))
                self._last_fired_start = last_complete
        for s in [
            s for s, a in self._open.items() if a.fired and s + self.size + self.lateness <= wm
        ]:
            del self._open[s]
        return fired, updates

    def _closed(self, start: int, acc: _Acc, sensors: I64) -> Closed:
        n = self._n
        acc.ensure(n)
        cnt = acc.count[:n].copy()
        has = cnt > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(has, acc.mean[:n], np.nan)
            std = np.where(
                cnt > 1,
                np.sqrt(np.maximum(acc.m2[:n], 0.0) / np.maximum(cnt - 1, 1)),
                np.where(has, 0.0, np.nan),
            )
            rms = np.where(has, np.sqrt(acc.sumsq[:n] / np.maximum(cnt, 1)), np.nan)
        return Closed(
            start_ms=start,
            end_ms=start + self.size,
            count=cnt,
            mean=mean,
            std=std,
            min=np.where(has, acc.min[:n], np.nan),
            max=np.where(has, acc.max[:n], np.nan),
            last=np.where(has, acc.last[:n], np.nan),
            rms=rms,
            out_of_range=acc.oor[:n].copy(),
            last_seen_ms=self.last_seen[:n].copy(),
            version=acc.version[:n].copy(),
            sensors=sensors,
        )

    @property
    def open_windows(self) -> int:
        return len(self._open)
