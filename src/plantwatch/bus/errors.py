"""Bus errors."""

from __future__ import annotations

from plantwatch.core.errors import PlantwatchError


class BusError(PlantwatchError):
    """Root of bus errors."""


class BusFullError(BusError):
    """Publishing waited for room longer than its timeout (backpressure)."""


class BusClosedError(BusError):
    """The bus or the consumer is closed."""
