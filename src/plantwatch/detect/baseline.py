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


class RobustBaseline:
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
        if not 1 <= min_history <= history:
            raise ValueError(f"need 1 <= min_history <= history, got {min_history}, {history}")
        if not 0 < warn_z <= crit_z:
            raise ValueError(f"need 0 < warn_z <= crit_z, got {warn_z}, {crit_z}")
        self.history, self.min_history = history, min_history
        self.warn_z, self.crit_z, self.rel_floor = warn_z, crit_z, rel_floor
        self._hist: F64 = np.full((0, history), np.nan)
        self._pos: I64 = np.zeros(0, np.int64)
        self._n: I64 = np.zeros(0, np.int64)
        self._noise: F64 = np.zeros(0, np.float64)
        self._kind = np.zeros(0, np.int8)

    def _ensure(self, n: int) -> None:
        self._hist = grow(self._hist, n, np.nan)
        self._pos = grow(self._pos, n, 0)
        self._n = grow(self._n, n, 0)
        self._noise = grow(self._noise, n, 0.0)
        self._kind = grow(self._kind, n, 0)

    def _center_scale(self, sensors: I64) -> tuple[F64, F64]:
        hist = self._hist[sensors]
        ok = self._n[sensors] >= self.min_history
        med = np.full(len(sensors), np.nan)
        scale = np.full(len(sensors), np.nan)
        if ok.any():
            h = hist[ok]
            q10, m, q90 = _quantiles(h, (0.1, 0.5, 0.9))
            (mad,) = _quantiles(np.abs(h - m[:, None]), (0.5,))
            floor = np.maximum(self.rel_floor * np.abs(m), _FLOOR[self._kind[sensors[ok]]])
            med[ok] = m
            scale[ok] = np.maximum(np.maximum(1.4826 * mad, (q90 - q10) / 2.563), floor)
        return med, scale

    def evaluate(self, windows: Windows) -> Finding:
        n = len(windows)
        out = Finding.none(n)
        if n == 0:
            return out
        self._ensure(int(windows.sensor.max()) + 1)
        self._kind[windows.sensor] = windows.kind
        rows = np.flatnonzero((windows.count > 0) & np.isfinite(windows.mean))
        if len(rows) == 0:
            return out
        # One window per sensor per call in practice; if a sensor repeats, judge it in order.
        order = rows[np.argsort(windows.end_ms[rows], kind="stable")]
        while len(order):
            s = windows.sensor[order]
            _, first = np.unique(s, return_index=True)
            batch = order[first]
            self._judge(windows, batch, out)
            order = np.delete(order, first)
        return out

    def _judge(self, w: Windows, rows: I64, out: Finding) -> None:
        sensors = w.sensor[rows]
        x = w.mean[rows]
        med, scale = self._center_scale(sensors)
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
        # Update the history with this window (the baseline follows the process).
        pos = self._pos[sensors]
        self._hist[sensors, pos] = x
        self._pos[sensors] = (pos + 1) % self.history
        self._n[sensors] = np.minimum(self._n[sensors] + 1, self.history)
        std = np.nan_to_num(w.std[rows], nan=0.0)
        fresh = self._n[sensors] <= 1
        self._noise[sensors] = np.where(fresh, std, 0.9 * self._noise[sensors] + 0.1 * std)

    def score_readings(self, sensors: I64, values: F64) -> F64:
        """A z-like anomaly score per reading against the current baseline (NaN in warm-up)."""
        if len(sensors) == 0:
            return np.zeros(0, np.float64)
        self._ensure(int(sensors.max()) + 1)
        uniq, inv = np.unique(sensors, return_inverse=True)
        med, scale = self._center_scale(uniq)
        noise = self._noise[uniq]
        total = np.sqrt(scale**2 + noise**2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.abs(values - med[inv]) / total[inv], np.float64)

    def restore(self, sensor: int, kind: int, means: list[float]) -> None:
        """Seed a sensor's history (oldest first), e.g. from stored features after a restart."""
        self._ensure(sensor + 1)
        tail = [m for m in means if np.isfinite(m)][-self.history :]
        self._hist[sensor] = np.nan
        self._hist[sensor, : len(tail)] = tail
        self._pos[sensor] = len(tail) % self.history
        self._n[sensor] = len(tail)
        self._kind[sensor] = kind
