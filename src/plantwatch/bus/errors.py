"""Bus errors."""

from __future__ import annotations

from plantwatch.core.errors import PlantwatchError


class BusError(PlantwatchError):
    """Root of bus errors."""


class BusFullError(BusError):
    """Publishing waited for room longer than its timeout (backpressure)."""


class BusClosedError(BusError):
    """The bus or the consumer is closed."""


class BusUnavailableError(BusError):
    """The broker cannot be reached (or is not answering) right now; retry later."""


class BusConfigError(BusError):
    """A topic or client setting is wrong; the message says which and what to change."""
