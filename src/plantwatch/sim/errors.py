"""Errors of the simulator. Bad settings (fault specs, rates) raise ``core.errors.ConfigError``."""

from __future__ import annotations

from plantwatch.core.errors import PlantwatchError


class SimulationError(PlantwatchError, ValueError):
    """A call the simulator cannot honour, such as stepping back in time."""
