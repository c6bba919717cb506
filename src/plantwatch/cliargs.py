"""What the command-line modules share: argument types and a clean stop on SIGINT/SIGTERM.

``cli.py`` and the commands it delegates to (``batch/replay_cli.py``, ``batch/archive_cli.py``)
use these, so every command reads ``--speed`` or a count the same way and stops the same way.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("plantwatch")


def speed(value: str) -> float | None:
    """``--speed``: simulated (or event-time) seconds per wall second, or ``max`` (None)."""
    if value == "max":
        return None
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--speed takes a number > 0 or 'max', got {value!r}"
        ) from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"--speed must be > 0 (or 'max'), got {value!r}")
    return x


def positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    """An argument type: a ``kind`` greater than 0."""

    def parse(value: str) -> int | float:
        try:
            v = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a {kind.__name__} > 0, got {value!r}"
            ) from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} > 0, got {value!r}")
        return v

    return parse


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event the first SIGINT or SIGTERM sets (the command then finishes cleanly); a second
    one aborts. The previous handlers come back on exit."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.warning("stopping (again to abort)")
        stop.set()

    old = signal.signal(signal.SIGINT, handler), signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])
