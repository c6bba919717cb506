"""What detectors see and say.

Detectors run on closed event-time windows, one row per (sensor, window), as NumPy columns
(:class:`Windows`). Each returns a :class:`Finding` aligned with the rows: a level (0 none,
1 warning, 2 critical), a score, the value it judged and the threshold it compared with.

State is small and picklable (NumPy arrays indexed by the stream's sensor index), so a detector
can live in Flink keyed state as well as in the local runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import numpy as np
import numpy.typing as npt

from plantwatch.core.kinds import KIND_NAMES

A = TypeVar("A", bound=np.ndarray[Any, Any])
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]

NONE, WARNING, CRITICAL = 0, 1, 2
SEVERITY = {WARNING: "warning", CRITICAL: "critical"}
KIND_INDEX: dict[str, int] = {k: i for i, k in enumerate(KIND_NAMES)}
#: Kind names by index; index -1 (a sensor whose kind is not known yet) reads "unknown".
KIND_LABELS: tuple[str, ...] = (*KIND_NAMES, "unknown")


@dataclass(frozen=True, slots=True)
class Windows:
    """Closed windows, one row per (sensor, window). Stats are NaN where ``count == 0``."""

    sensor: I64  # the stream's sensor index
    kind: I8  # index into core.kinds.KIND_NAMES
    machine_type: npt.NDArray[np.object_]
    start_ms: I64
    end_ms: I64
    count: I64
    mean: F64
    std: F64
    min: F64
    max: F64
    last: F64
    last_seen_ms: I64  # latest event time of the sensor so far (-1: never)
    out_of_range: I64  # readings outside the kind's physical range in this window

    def __len__(self) -> int:
        return len(self.sensor)

    @staticmethod
    def empty() -> Windows:
        f = np.zeros(0, np.float64)
        i = np.zeros(0, np.int64)
        return Windows(i, np.zeros(0, np.int8), np.zeros(0, object), i, i, i, f, f, f, f, f, i, i)


@dataclass(frozen=True, slots=True)
class Finding:
    level: I8
    score: F64
    value: F64
    threshold: F64

    @staticmethod
    def none(n: int) -> Finding:
        nan = np.full(n, np.nan)
        return Finding(np.zeros(n, np.int8), nan, nan.copy(), nan.copy())


class Detector(Protocol):
    """Judges closed windows in the stream (one row per sensor and window)."""

    name: str

    def evaluate(self, windows: Windows) -> Finding:
        """Judge the rows (and update state). Never raises on NaN, inf or empty input."""


class Sequential(Protocol):
    """Scores a time series as it arrives, in batches: the rows of ``x`` (shape ``(n, d)``) are
    consecutive time steps; state carries over from one call to the next, so one call over the
    whole series and many calls over its pieces give the same scores. A score is ``>= 0``,
    larger is more anomalous; a row with NaN or inf scores 0 and does not move the state."""

    name: str

    def update(self, x: F64) -> F64:
        """Scores of the rows of ``x`` (shape ``(n, d)``, ``n`` may be 0)."""


class Model(Protocol):
    """A model fitted offline on normal data, then scoring rows of a feature matrix (shape
    ``(n, d)``): score ``>= 0``, larger is more anomalous. Rows with NaN or inf score NaN.
    ``to_onnx`` gives the same scoring as an ONNX graph (input ``X`` float32 ``(n, d)``, output
    ``score`` float32 ``(n,)``), which is what the stream runs."""

    name: str

    def fit(self, x: F64) -> Model:
        """Fit on normal rows (rows with NaN or inf are left out); returns ``self``."""

    def score(self, x: F64) -> F64:
        """Anomaly scores of the rows of ``x``."""

    def to_onnx(self) -> bytes:
        """The fitted scoring as a serialized ONNX model."""


def grow(arr: A, n: int, fill: float | int) -> A:
    """``arr`` (first axis) grown to at least ``n`` rows, doubling, new rows set to ``fill``."""
    if len(arr) >= n:
        return arr
    size = max(n, 2 * len(arr), 16)
    out = np.full((size, *arr.shape[1:]), fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return cast(A, out)
