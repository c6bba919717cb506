"""Detectors: small objects with picklable state, working on batches (see ``base``).

Three families, one check suite (``tests/unit/test_detect_checks.py``):

* window detectors (``evaluate(Windows) -> Finding``) run by the stream on every closed window:
  static limits, the robust baseline, Page-Hinkley change detection, the sensor-health checks;
* sequential scorers (``update(x) -> scores``) for a series as it arrives: EWMA and median/MAD
  z-scores, CUSUM, the anomaly likelihood (the NAB evaluation);
* fitted models (``fit``/``score``/``to_onnx``): PCA with T² and SPE, Isolation Forest —
  trained by ``plantwatch train``, scored in the stream through ONNX.
"""

from plantwatch.detect.base import (
    CRITICAL,
    NONE,
    SEVERITY,
    WARNING,
    Detector,
    Finding,
    Model,
    Sequential,
    Windows,
)
from plantwatch.detect.baseline import RobustBaseline
from plantwatch.detect.change import PageHinkley
from plantwatch.detect.health import NoData, OutOfRange, Stuck
from plantwatch.detect.limits import DEFAULT_LIMITS, Limit, StaticLimits
from plantwatch.detect.multivariate import CVAModel, IsolationForestModel, PCAModel
from plantwatch.detect.sequential import Cusum, EwmaZ, Likelihood, MedianZ

__all__ = [
    "CRITICAL",
    "DEFAULT_LIMITS",
    "NONE",
    "SEVERITY",
    "WARNING",
    "CVAModel",
    "Cusum",
    "Detector",
    "EwmaZ",
    "Finding",
    "IsolationForestModel",
    "Likelihood",
    "Limit",
    "MedianZ",
    "Model",
    "NoData",
    "OutOfRange",
    "PCAModel",
    "PageHinkley",
    "RobustBaseline",
    "Sequential",
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
