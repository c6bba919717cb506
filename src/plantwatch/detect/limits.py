"""Static limits per machine type and sensor kind (ISO 10816-style zones, rated values).

A limit compares one window statistic (mean, max or min) with warning and critical thresholds,
high or low. Defaults are for the simulator's machine types, sized as stated in ``sim/plant.py``;
a real plant configures its own per type (issue: rules file).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from plantwatch.detect.base import CRITICAL, KIND_INDEX, NONE, WARNING, Finding, Windows

Stat = Literal["mean", "max", "min"]


@dataclass(frozen=True, slots=True)
class Limit:
    stat: Stat = "mean"
    warn_high: float = math.inf
    crit_high: float = math.inf
    warn_low: float = -math.inf
    crit_low: float = -math.inf

    def __post_init__(self) -> None:
        if not (self.crit_low <= self.warn_low < self.warn_high <= self.crit_high):
            raise ValueError(
                f"limits must satisfy crit_low <= warn_low < warn_high <= crit_high: {self}"
            )


_VIB = Limit("mean", warn_high=4.5, crit_high=7.1)  # mm/s, ISO 10816-3 group 2 zones B/C, C/D

DEFAULT_LIMITS: dict[tuple[str, str], Limit] = {
    ("centrifugal_pump", "vibration"): _VIB,
    ("centrifugal_pump", "temperature"): Limit("mean", warn_high=70.0, crit_high=85.0),
    ("centrifugal_pump", "current"): Limit("max", warn_high=56.0, crit_high=64.0),  # 40 A rated
    ("motor_fan", "vibration"): _VIB,
    ("motor_fan", "temperature"): Limit("mean", warn_high=105.0, crit_high=120.0),  # class F
    ("motor_fan", "current"): Limit("max", warn_high=35.0, crit_high=40.0),  # 25 A rated
    ("hydraulic_press", "vibration"): Limit("mean", warn_high=6.0, crit_high=9.0),
    ("hydraulic_press", "temperature"): Limit("mean", warn_high=65.0, crit_high=75.0),  # oil
    ("hydraulic_press", "current"): Limit("max", warn_high=84.0, crit_high=96.0),  # 60 A rated
    # every 10 s window holds a stroke peak (~180 bar): a press that cannot reach working
    # pressure has a leak or a worn pump
    ("hydraulic_press", "pressure"): Limit("max", warn_low=160.0, crit_low=140.0),
    ("air_compressor", "vibration"): _VIB,
    ("air_compressor", "temperature"): Limit("mean", warn_high=110.0, crit_high=120.0),
    ("air_compressor", "current"): Limit("max", warn_high=112.0, crit_high=128.0),  # 80 A rated
    ("air_compressor", "pressure"): Limit("mean", warn_low=6.0, crit_low=5.5),
}


class StaticLimits:
    name = "static_limit"

    def __init__(self, limits: Mapping[tuple[str, str], Limit] | None = None) -> None:
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self._rows_key: tuple[npt.NDArray[np.object_], npt.NDArray[np.int8]] | None = None
        self._rows: list[tuple[Limit, npt.NDArray[np.intp]]] = []

    def _rows_for(self, windows: Windows) -> list[tuple[Limit, npt.NDArray[np.intp]]]:
        """Rows each limit applies to; cached while the sensors (types, kinds) stay the same."""
        # Keyed on the contents, not on ``id()``: a freed array's id can be reused, and an array
        # updated in place keeps its id, either of which would apply stale rows.
        cached = self._rows_key
        if not (
            cached is not None
            and np.array_equal(cached[0], windows.machine_type)
            and np.array_equal(cached[1], windows.kind)
        ):
            self._rows = []
            for (mtype, kind), lim in self.limits.items():
                k = KIND_INDEX.get(kind)
                if k is None:
                    continue
                rows = np.flatnonzero((windows.kind == k) & (windows.machine_type == mtype))
                if len(rows):
                    self._rows.append((lim, rows))
            self._rows_key = (windows.machine_type.copy(), windows.kind.copy())
        return self._rows

    def __getstate__(self) -> dict[str, object]:
        return {"limits": self.limits}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["limits"])  # type: ignore[misc]

    def evaluate(self, windows: Windows) -> Finding:
        n = len(windows)
        out = Finding.none(n)
        if n == 0:
            return out
        stats = {"mean": windows.mean, "max": windows.max, "min": windows.min}
        for lim, rows in self._rows_for(windows):
            x = stats[lim.stat][rows]
            # An infinite threshold is a side without a limit: even an infinite value is not
            # beyond it.
            with np.errstate(invalid="ignore"):
                high_c = (x >= lim.crit_high) & (lim.crit_high < math.inf)
                high_w = (x >= lim.warn_high) & (lim.warn_high < math.inf)
                low_c = (x <= lim.crit_low) & (lim.crit_low > -math.inf)
                low_w = (x <= lim.warn_low) & (lim.warn_low > -math.inf)
            level = np.where(high_c | low_c, CRITICAL, np.where(high_w | low_w, WARNING, NONE))
            thr = np.where(
                high_c,
                lim.crit_high,
                np.where(high_w, lim.warn_high, np.where(low_c, lim.crit_low, lim.warn_low)),
            )
            out.level[rows] = level
            out.value[rows] = x
            out.threshold[rows] = np.where(level > NONE, thr, np.nan)
            with np.errstate(invalid="ignore"):  # unflagged rows may divide ±inf by ±inf
                ratio = np.abs(x / np.where(thr == 0, 1, thr))
            out.score[rows] = np.where(level > NONE, ratio, 0.0)
        return out
