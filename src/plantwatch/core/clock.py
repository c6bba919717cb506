"""Clocks: wall time, and simulated time that runs faster than the wall (or as fast as it can).

Times are float epoch seconds (UTC) on hot paths and aware datetimes at the edges. Every stage
takes a clock instead of calling ``time.time()``, so a simulated hour can run in a minute and
tests can control time.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Now, as epoch seconds (UTC)."""

    def now(self) -> datetime:
        """Now, as an aware UTC datetime."""

    def wall_at(self, t: float) -> float:
        """The wall-clock epoch seconds at which this clock showed ``t`` (for latency)."""

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        """Block until the clock shows ``t``. False when ``stop`` was set first."""


class WallClock:
    """The system clock."""

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wall_at(self, t: float) -> float:
        return t

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        delay = t - time.time()
        if delay <= 0:
            return not (stop is not None and stop.is_set())
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)


class SimulatedClock:
    """Simulated time: ``speed`` simulated seconds per wall second, or manual (``speed=None``).

    With a speed the clock runs by itself from ``start``. Without one (``--speed max``) it shows
    whatever the producer last passed to :meth:`advance_to`, and remembers when, so that
    :meth:`wall_at` can map event times back to wall time for latency figures.
    """

    def __init__(self, start: float, speed: float | None = None, *, history: int = 100_000):
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be > 0 or None (as fast as possible), got {speed}")
        self.start = float(start)
        self.speed = speed
        self._wall0 = time.time()
        self._t = float(start)
        self._lock = threading.Lock()
        self._marks_t: deque[float] = deque(maxlen=history)
        self._marks_wall: deque[float] = deque(maxlen=history)

    def time(self) -> float:
        if self.speed is None:
            return self._t
        return self.start + (time.time() - self._wall0) * self.speed

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def advance_to(self, t: float) -> None:
        """Manual clocks only: move to ``t`` (never backwards)."""
        if self.speed is not None:
            raise RuntimeError("advance_to is for manual clocks (speed=None)")
        with self._lock:
            if t > self._t:
                self._t = t
                self._marks_t.append(t)
                self._marks_wall.append(time.time())

    def wall_at(self, t: float) -> float:
        if self.speed is not None:
            return self._wall0 + (t - self.start) / self.speed
        with self._lock:
            if not self._marks_t:
                return time.time()
            i = bisect.bisect_left(self._marks_t, t)
            if i >= len(self._marks_t):
                return self._marks_wall[-1]
            return self._marks_wall[i]

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        if self.speed is None:
            self.advance_to(t)
            return not (stop is not None and stop.is_set())
        delay = (t - self.time()) / self.speed
        if delay <= 0:
            return not (stop is not None and stop.is_set())
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)


def iso_ms(value: datetime) -> str:
    """``2026-12-05T06:30:00.123Z``: an instant as text, in UTC to the millisecond (a naive
    datetime is taken as UTC). Logs and the archive write instants this way."""
    t = value if value.tzinfo else value.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
