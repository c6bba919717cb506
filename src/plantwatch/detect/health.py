"""Sensor health: stuck value, no data, out of physical range.

These judge the *sensor*, not the machine: a stuck or silent sensor hides a machine from every
other detector, so they are alerts of their own.
"""

from __future__ import annotations

import numpy as np

from plantwatch.detect.base import NONE, WARNING, Finding, Windows


class Stuck:
    """A window with at least ``min_count`` readings that are all exactly the same value.

    Real sensors carry noise above their resolution; a frozen transmitter repeats its last
    value bit for bit. The alert rule's ``for`` duration absorbs chance repeats.
    """

    name = "stuck"

    def __init__(self, *, min_count: int = 3) -> None:
        if min_count < 2:
            raise ValueError(f"min_count must be >= 2, got {min_count}")
        self.min_count = min_count

    def evaluate(self, windows: Windows) -> Finding:
        out = Finding.none(len(windows))
        with np.errstate(invalid="ignore"):
            stuck = (windows.count >= self.min_count) & (windows.max == windows.min)
        out.level[:] = np.where(stuck, WARNING, NONE)
        out.value[:] = windows.last
        out.score[:] = np.where(stuck, windows.count.astype(np.float64), 0.0)
        out.threshold[:] = np.where(stuck, 0.0, np.nan)
        return out


class NoData:
    """No reading from a sensor for more than ``after_s`` seconds of event time."""

    name = "no_data"

    def __init__(self, *, after_s: float = 60.0) -> None:
        if after_s <= 0:
            raise ValueError(f"after_s must be > 0, got {after_s}")
        self.after_ms = round(after_s * 1000)  # int() would truncate 2.01 s to 2009 ms

    def evaluate(self, windows: Windows) -> Finding:
        out = Finding.none(len(windows))
        seen = windows.last_seen_ms >= 0
        silent_ms = np.where(seen, windows.end_ms - windows.last_seen_ms, 0)
        silent = seen & (silent_ms > self.after_ms)
        out.level[:] = np.where(silent, WARNING, NONE)
        out.value[:] = silent_ms / 1000.0
        out.score[:] = silent_ms / self.after_ms
        out.threshold[:] = np.where(silent, self.after_ms / 1000.0, np.nan)
        return out


class OutOfRange:
    """Readings outside the physical range of their kind (``core.kinds``) in the window."""

    name = "out_of_range"

    def evaluate(self, windows: Windows) -> Finding:
        out = Finding.none(len(windows))
        bad = windows.out_of_range > 0
        out.level[:] = np.where(bad, WARNING, NONE)
        out.value[:] = windows.out_of_range.astype(np.float64)
        out.score[:] = windows.out_of_range.astype(np.float64)
        out.threshold[:] = np.where(bad, 0.0, np.nan)
        return out
