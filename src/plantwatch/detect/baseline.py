"""A robust per-sensor baseline: median and MAD of the last N window means.

The z-score of a window mean is ``(mean - median) / scale`` with
``scale = max(1.4826 * MAD, (q90 - q10) / 2.563, rel_floor * |median|, abs_floor[kind])``.
For a normal distribution both spread terms estimate the standard deviation; the inter-decile
term keeps a two-state signal (a compressor loading and unloading) from looking anomalous
every time it switches, and the floors keep a very steady signal from turning a tiny wiggle
into a huge score. The baseline follows slow changes
(daily load) because the history keeps moving; slow drifts such as bearing wear are the static
limits' job. A sensor needs ``min_history`` windows before it is judged (warm-up).
"""

from __future__ import annotations

import numpy as np

from plantwatch.core.kinds import KIND_NAMES
from plantwatch.detect.base import CRITICAL, F64, I64, NONE, WARNING, Finding, Windows, grow

#: Smallest scale per kind (canonical units): below this a deviation is not meaningful.
ABS_FLOOR: dict[str, float] = {
    "vibration": 0.15,
    "temperature": 0.5,
    "humidity": 1.0,
    "pressure": 0.1,
    "current": 0.5,
    "voltage": 2.0,
    "power": 0.3,
    "speed": 5.0,
    "flow": 2.0,
}
_FLOOR = np.array([ABS_FLOOR.get(k, 0.0) for k in KIND_NAMES] + [0.0], np.float64)


def _quantiles(h: F64, qs: tuple[float, ...]) -> list[F64]:
    """Row-wise quantiles of ``h`` ignoring NaN (linear interpolation), fully vectorised.

    ``np.nanpercentile`` loops over rows in Python; this sorts once (NaN sort last) and gathers.
    """
    s = np.sort(h, axis=1)
    count = np.isfinite(s).sum(axis=1)
    rows = np.arange(len(s))
    out = []
    for q in qs:
        pos = q * np.maximum(count - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        frac = pos - lo
        val = s[rows, lo] * (1.0 - frac) + s[rows, hi] * frac
        out.append(np.where(count > 0, val, np.nan))
    return out


class History:
    """The last ``size`` window means of every sensor (a ring buffer per sensor index) and each
    sensor's kind: the robust centre and scale that :class:`RobustBaseline` and
    :class:`~plantwatch.detect.change.PageHinkley` judge a window mean against."""

    def __init__(self, size: int, min_history: int, rel_floor: float) -> None:
        if not 1 <= min_history <= size:
            raise ValueError(f"need 1 <= min_history <= history, got {min_history}, {size}")
        self.size, self.min_history, self.rel_floor = size, min_history, rel_floor
        self.means: F64 = np.full((0, size), np.nan)
        self.pos: I64 = np.zeros(0, np.int64)
        self.n: I64 = np.zeros(0, np.int64)
        self.kind = np.zeros(0, np.int8)

    def ensure(self, n: int) -> None:
        self.means = grow(self.means, n, np.nan)
        self.pos = grow(self.pos, n, 0)
        self.n = grow(self.n, n, 0)
        self.kind = grow(self.kind, n, 0)

    def center_scale(self, sensors: I64) -> tuple[F64, F64]:
        """Median and robust scale per sensor (see the module docstring); NaN in warm-up."""
        ok = self.n[sensors] >= self.min_history
        med = np.full(len(sensors), np.nan)
        scale = np.full(len(sensors), np.nan)
        if ok.any():
            h = self.means[sensors[ok]]
            q10, m, q90 = _quantiles(h, (0.1, 0.5, 0.9))
            (mad,) = _quantiles(np.abs(h - m[:, None]), (0.5,))
            floor = np.maximum(self.rel_floor * np.abs(m), _FLOOR[self.kind[sensors[ok]]])
            med[ok] = m
            scale[ok] = np.maximum(np.maximum(1.4826 * mad, (q90 - q10) / 2.563), floor)
        return med, scale

    def push(self, sensors: I64, x: F64) -> None:
        """The windows join the history (the baseline follows the process)."""
        pos = self.pos[sensors]
        self.means[sensors, pos] = x
        self.pos[sensors] = (pos + 1) % self.size
        self.n[sensors] = np.minimum(self.n[sensors] + 1, self.size)

    def restore(self, sensor: int, kind: int, means: list[float]) -> None:
        self.ensure(sensor + 1)
        tail = [m for m in means if np.isfinite(m)][-self.size :]
        self.means[sensor] = np.nan
        self.means[sensor, : len(tail)] = tail
        self.pos[sensor] = len(tail) % self.size
        self.n[sensor] = len(tail)
        self.kind[sensor] = kind


class WindowMeanDetector:
    """A detector that judges each window mean against its sensor's :class:`History`
    (:class:`RobustBaseline`, :class:`~plantwatch.detect.change.PageHinkley`): ``evaluate``
    grows the state, then calls ``_judge`` on the rows with data, each sensor at most once per
    call — one window per sensor in practice; if a sensor repeats (after a restart), its windows
    are judged in time order."""

    _h: History

    def _ensure(self, n: int) -> None:
        self._h.ensure(n)

    def _judge(self, w: Windows, rows: I64, out: Finding) -> None:
        raise NotImplementedError

    def evaluate(self, windows: Windows) -> Finding:
        out = Finding.none(len(windows))
        if len(windows) == 0:
            return out
        self._ensure(int(windows.sensor.max()) + 1)
        self._h.kind[windows.sensor] = windows.kind
        rows = np.flatnonzero((windows.count > 0) & np.isfinite(windows.mean))
        order = rows[np.argsort(windows.end_ms[rows], kind="stable")]
        while len(order):
            _, first = np.unique(windows.sensor[order], return_index=True)
            self._judge(windows, order[first], out)
            order = np.delete(order, first)
        return out


class RobustBaseline(WindowMeanDetector):
    name = "baseline"

    def __init__(
        self,
        *,
        history: int = 30,
        min_history: int = 12,
        warn_z: float = 4.0,
        crit_z: float = 6.0,
        rel_floor: float = 0.02,
    ) -> None:
        if not 0 < warn_z <= crit_z:
            raise ValueError(f"need 0 < warn_z <= crit_z, got {warn_z}, {crit_z}")
        self._h = History(history, min_history, rel_floor)
        self.history, self.min_history = history, min_history
        self.warn_z, self.crit_z, self.rel_floor = warn_z, crit_z, rel_floor
        self._noise: F64 = np.zeros(0, np.float64)

    def _ensure(self, n: int) -> None:
        self._h.ensure(n)
        self._noise = grow(self._noise, n, 0.0)

    def _judge(self, w: Windows, rows: I64, out: Finding) -> None:
        sensors = w.sensor[rows]
        x = w.mean[rows]
        med, scale = self._h.center_scale(sensors)
        with np.errstate(invalid="ignore"):
            z = np.abs(x - med) / scale
        judged = np.isfinite(z)
        level = np.where(
            judged & (z >= self.crit_z),
            CRITICAL,
            np.where(judged & (z >= self.warn_z), WARNING, NONE),
        )
        out.level[rows] = level
        out.score[rows] = np.where(judged, z, np.nan)
        out.value[rows] = x
        out.threshold[rows] = np.where(
            level == CRITICAL,
            med + np.sign(x - med) * self.crit_z * scale,
            np.where(level == WARNING, med + np.sign(x - med) * self.warn_z * scale, np.nan),
        )
        self._h.push(sensors, x)
        std = np.nan_to_num(w.std[rows], nan=0.0)
        fresh = self._h.n[sensors] <= 1
        self._noise[sensors] = np.where(fresh, std, 0.9 * self._noise[sensors] + 0.1 * std)

    def score_readings(self, sensors: I64, values: F64) -> F64:
        """A z-like anomaly score per reading against the current baseline (NaN in warm-up)."""
        if len(sensors) == 0:
            return np.zeros(0, np.float64)
        self._ensure(int(sensors.max()) + 1)
        uniq, inv = np.unique(sensors, return_inverse=True)
        med, scale = self._h.center_scale(uniq)
        noise = self._noise[uniq]
        total = np.sqrt(scale**2 + noise**2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.abs(values - med[inv]) / total[inv], np.float64)

    def restore(self, sensor: int, kind: int, means: list[float]) -> None:
        """Seed a sensor's history (oldest first), e.g. from stored features after a restart."""
        self._ensure(sensor + 1)
        self._h.restore(sensor, kind, means)
