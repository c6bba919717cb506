"""Clocks: the wall clock, and simulated time with a speed or driven by hand."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from plantwatch.core.clock import Clock, SimulatedClock, WallClock

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def test_both_clocks_satisfy_the_protocol() -> None:
    clocks: list[Clock] = [WallClock(), SimulatedClock(START), SimulatedClock(START, 10.0)]
    for clock in clocks:
        assert clock.now().tzinfo is not None
        assert clock.now().utcoffset() is not None


# -- wall clock --------------------------------------------------------------------------------


def test_wall_clock_shows_the_system_time() -> None:
    clock = WallClock()
    before = time.time()
    t = clock.time()
    now = clock.now()
    after = time.time()
    assert before <= t <= after
    assert before <= now.timestamp() <= after
    assert now.tzinfo is UTC
    assert clock.wall_at(START) == START


def test_wall_clock_sleep_until() -> None:
    clock = WallClock()
    assert clock.sleep_until(time.time() - 1.0) is True
    target = time.time() + 0.005
    assert clock.sleep_until(target, threading.Event()) is True
    assert time.time() >= target
    stop = threading.Event()
    stop.set()
    assert clock.sleep_until(time.time() + 60.0, stop) is False  # returns at once
    assert clock.sleep_until(time.time() - 1.0, stop) is False


def test_wall_clock_sleep_is_cut_short_by_stop() -> None:
    stop = threading.Event()
    timer = threading.Timer(0.01, stop.set)
    timer.start()
    try:
        assert WallClock().sleep_until(time.time() + 60.0, stop) is False
    finally:
        timer.cancel()


# -- simulated clock with a speed ----------------------------------------------------------------


def test_a_speed_must_be_positive() -> None:
    for speed in (0.0, -1.0):
        with pytest.raises(ValueError, match="speed"):
            SimulatedClock(START, speed)


def test_a_fast_clock_runs_from_its_start() -> None:
    before = time.time()
    clock = SimulatedClock(START, speed=60.0)
    t = clock.time()
    now = clock.now()
    after = time.time()
    assert START <= t <= now.timestamp() <= START + (after - before) * 60.0 + 1e-6
    assert now.tzinfo is UTC


def test_wall_at_maps_simulated_time_to_wall_time_linearly() -> None:
    before = time.time()
    clock = SimulatedClock(START, speed=60.0)
    after = time.time()
    w0 = clock.wall_at(START)
    assert before <= w0 <= after  # the wall time at which it showed START
    assert clock.wall_at(START + 60.0) == pytest.approx(w0 + 1.0, abs=1e-6)
    assert clock.wall_at(START + 3600.0) == pytest.approx(w0 + 60.0, abs=1e-6)
    assert clock.wall_at(START - 120.0) == pytest.approx(w0 - 2.0, abs=1e-6)


def test_a_fast_clock_is_not_driven_by_hand() -> None:
    with pytest.raises(RuntimeError):
        SimulatedClock(START, speed=2.0).advance_to(START + 10)


def test_a_fast_clock_sleeps_simulated_time() -> None:
    clock = SimulatedClock(START, speed=10_000.0)
    target = clock.time() + 50.0  # 5 ms of wall time
    assert clock.sleep_until(target) is True
    assert clock.time() >= target
    assert clock.sleep_until(clock.time() - 1.0) is True


def test_a_fast_clock_sleep_honours_stop() -> None:
    clock = SimulatedClock(START, speed=1.0)
    stop = threading.Event()
    stop.set()
    assert clock.sleep_until(clock.time() + 3600.0, stop) is False
    assert clock.sleep_until(clock.time() - 1.0, stop) is False
    stop = threading.Event()
    timer = threading.Timer(0.01, stop.set)
    timer.start()
    try:
        assert clock.sleep_until(clock.time() + 3600.0, stop) is False
    finally:
        timer.cancel()


# -- manual simulated clock --------------------------------------------------------------------


def test_a_manual_clock_shows_what_it_was_advanced_to() -> None:
    clock = SimulatedClock(START)
    assert clock.time() == START
    clock.advance_to(START + 10.0)
    assert clock.time() == START + 10.0
    assert clock.now() == datetime.fromtimestamp(START + 10.0, UTC)


def test_a_manual_clock_never_goes_backwards() -> None:
    clock = SimulatedClock(START)
    clock.advance_to(START + 10.0)
    clock.advance_to(START + 5.0)
    clock.advance_to(START - 100.0)
    assert clock.time() == START + 10.0


def test_a_manual_clock_remembers_the_wall_time_of_each_advance() -> None:
    clock = SimulatedClock(START)
    b0 = time.time()
    assert b0 <= clock.wall_at(START) <= time.time()  # nothing yet: now

    b1 = time.time()
    clock.advance_to(START + 10.0)
    a1 = time.time()
    time.sleep(0.002)  # so that the two advances get distinct wall times
    b2 = time.time()
    clock.advance_to(START + 20.0)
    a2 = time.time()
    clock.advance_to(START + 15.0)  # ignored: backwards, so no new mark either

    assert b1 <= clock.wall_at(START + 10.0) <= a1
    assert b2 <= clock.wall_at(START + 20.0) <= a2
    # Between two advances: when the clock first showed at least that time.
    assert b2 <= clock.wall_at(START + 15.0) <= a2
    assert b1 <= clock.wall_at(START + 1.0) <= a1


def test_a_manual_clock_sleep_advances_it() -> None:
    clock = SimulatedClock(START)
    assert clock.sleep_until(START + 30.0) is True
    assert clock.time() == START + 30.0
    stop = threading.Event()
    stop.set()
    assert clock.sleep_until(START + 40.0, stop) is False
    assert clock.sleep_until(START + 50.0, threading.Event()) is True
    assert clock.time() == START + 50.0
