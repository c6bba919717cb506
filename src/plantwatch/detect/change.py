"""Page-Hinkley change detection on window means, per sensor.

A z-score (``RobustBaseline``) judges one window at a time, so a small shift that persists,
half a scale unit say, never crosses its threshold. The Page-Hinkley test (Page 1954, Hinkley
1971) accumulates such evidence. Per sensor, each window mean ``x`` is standardised against a
robust baseline of the previous ``history`` window means,

    u = clip((x - median) / scale, -clip, +clip)
    scale = max(1.4826 MAD, (q90 - q10) / 2.563, rel_floor * |median|, floor[kind])

(the same centre and scale as :mod:`plantwatch.detect.baseline`), and two one-sided statistics
are updated in their recursive form

    g+ = max(0, g+ + u - delta)        g- = max(0, g- - u - delta)

``delta`` is the smallest shift (in scale units) worth accumulating; clipping ``u`` keeps one
wild window from raising an alarm on its own (that is the z-score's job). The score is
``max(g+, g-)``: WARNING from ``warn_h``, CRITICAL from ``crit_h``. The baseline keeps learning
(the window joins the history after it is judged), so after a lasting step the median catches
up within about ``history / 2`` windows, ``u`` returns to about 0 and the statistic drains by
about ``delta`` per window: the alarm clears by itself once the new level is the normal one.
A sensor is judged once it has ``min_history`` windows (warm-up). Windows without data
(``count == 0``) or with a non-finite mean get no verdict (NaN) and leave the state untouched.
"""

from __future__ import annotations

import numpy as np

from plantwatch.detect.base import CRITICAL, F64, I64, NONE, WARNING, Finding, Windows, grow
from plantwatch.detect.baseline import History, WindowMeanDetector


class PageHinkley(WindowMeanDetector):
    name = "page_hinkley"

    def __init__(
        self,
        *,
        history: int = 30,
        min_history: int = 12,
        delta: float = 0.5,
        clip: float = 4.0,
        warn_h: float = 5.0,
        crit_h: float = 10.0,
        rel_floor: float = 0.02,
    ) -> None:
        if not 0 < warn_h <= crit_h:
            raise ValueError(f"need 0 < warn_h <= crit_h, got {warn_h}, {crit_h}")
        if delta < 0 or clip <= 0:
            raise ValueError(f"need delta >= 0 and clip > 0, got {delta}, {clip}")
        self._h = History(history, min_history, rel_floor)
        self.history, self.min_history = history, min_history
        self.delta, self.clip, self.warn_h, self.crit_h = delta, clip, warn_h, crit_h
        self.rel_floor = rel_floor
        self._up: F64 = np.zeros(0, np.float64)
        self._down: F64 = np.zeros(0, np.float64)

    def _ensure(self, n: int) -> None:
        self._h.ensure(n)
        self._up = grow(self._up, n, 0.0)
        self._down = grow(self._down, n, 0.0)

    def _judge(self, w: Windows, rows: I64, out: Finding) -> None:
        sensors = w.sensor[rows]
        x = w.mean[rows]
        med_all, scale_all = self._h.center_scale(sensors)
        ok = np.isfinite(med_all)
        if ok.any():
            s, r = sensors[ok], rows[ok]
            med = med_all[ok]
            scale = np.where(scale_all[ok] > 0, scale_all[ok], 1.0)
            with np.errstate(over="ignore", invalid="ignore"):
                u = np.clip(np.nan_to_num((x[ok] - med) / scale), -self.clip, self.clip)
            up = np.maximum(0.0, self._up[s] + u - self.delta)
            down = np.maximum(0.0, self._down[s] - u - self.delta)
            self._up[s], self._down[s] = up, down
            g = np.maximum(up, down)
            level = np.where(g >= self.crit_h, CRITICAL, np.where(g >= self.warn_h, WARNING, NONE))
            out.level[r] = level
            out.score[r] = g
            out.value[r] = x[ok]
            out.threshold[r] = np.where(
                level == CRITICAL, self.crit_h, np.where(level == WARNING, self.warn_h, np.nan)
            )
        self._h.push(sensors, x)
