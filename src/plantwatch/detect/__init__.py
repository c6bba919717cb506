"""Detectors: small, pure, picklable state, judged on closed windows (see ``base``)."""

from plantwatch.detect.base import CRITICAL, NONE, SEVERITY, WARNING, Detector, Finding, Windows
from plantwatch.detect.baseline import RobustBaseline
from plantwatch.detect.health import NoData, OutOfRange, Stuck
from plantwatch.detect.limits import DEFAULT_LIMITS, Limit, StaticLimits

__all__ = [
    "CRITICAL",
    "DEFAULT_LIMITS",
    "NONE",
    "SEVERITY",
    "WARNING",
    "Detector",
    "Finding",
    "Limit",
    "NoData",
    "OutOfRange",
    "RobustBaseline",
    "StaticLimits",
    "Stuck",
    "Windows",
]


def default_detectors(*, no_data_after_s: float = 60.0) -> list[Detector]:
    """The detector set the stream runs by default."""
    return [
        StaticLimits(),
        RobustBaseline(),
        Stuck(),
        NoData(after_s=no_data_after_s),
        OutOfRange(),
    ]
