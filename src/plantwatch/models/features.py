"""Feature vectors per machine and window, built from the stream's window features.

The stream closes event-time windows per sensor and computes their statistics (``features``
rows: machine, sensor, window, count, mean, min, max, std, last, rms). A model of a machine type
sees one row per (machine, window): for each sensor of its :class:`FeatureSpec`, the chosen
statistics, in the spec's order. :func:`machine_matrix` does that pivot; ``plantwatch train``
calls it on the features the stream's :class:`~plantwatch.stream.pipeline.Pipeline` computes
from stored readings, and the stream calls it on the windows it has just closed: one logic.

A statistic missing in a window (a sensor without readings, ``std`` of a single reading) is NaN
here; :meth:`FeatureSpec.impute` fills it with the training mean, and a row missing more than half
of its features is not scored at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from plantwatch.core.codec import ts_ms

F64 = npt.NDArray[np.float64]
STATS = ("mean", "std", "min", "max", "last", "rms")
DEFAULT_STATS = ("mean", "std", "max")


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """What a model of one machine type reads: ``sensors × stats`` columns, sensor-major."""

    machine_type: str
    sensors: tuple[str, ...]
    kinds: tuple[str, ...]  # the kind of each sensor, for the anomaly rows
    stats: tuple[str, ...] = DEFAULT_STATS
    window_s: float = 10.0
    #: per column: the training mean (fills missing values) and standard deviation
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.stats) - set(STATS))
        if unknown:
            raise ValueError(f"unknown statistics {unknown}: choose from {', '.join(STATS)}")
        if len(self.kinds) != len(self.sensors):
            raise ValueError("one kind per sensor")

    @property
    def columns(self) -> list[str]:
        return [f"{s}.{st}" for s in self.sensors for st in self.stats]

    def with_moments(self, x: F64) -> FeatureSpec:
        """This spec with the column means and standard deviations of the training rows."""
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        return FeatureSpec(
            self.machine_type,
            self.sensors,
            self.kinds,
            self.stats,
            self.window_s,
            tuple(float(v) for v in np.nan_to_num(mean)),
            tuple(float(v) for v in np.nan_to_num(std)),
        )

    def impute(self, x: F64) -> tuple[F64, npt.NDArray[np.bool_]]:
        """Missing values filled with the training means; also the rows fit to score (at
        least half of their features present)."""
        bad = ~np.isfinite(x)
        usable = bad.sum(axis=1) * 2 <= x.shape[1] if x.shape[1] else np.zeros(len(x), bool)
        filled = np.where(bad, np.asarray(self.mean, np.float64)[None, :], x)
        return filled, usable

    def as_json(self) -> dict[str, Any]:
        return {
            "machine_type": self.machine_type,
            "sensors": list(self.sensors),
            "kinds": list(self.kinds),
            "stats": list(self.stats),
            "window_s": self.window_s,
            "columns": self.columns,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> FeatureSpec:
        return FeatureSpec(
            machine_type=str(d["machine_type"]),
            sensors=tuple(d["sensors"]),
            kinds=tuple(d["kinds"]),
            stats=tuple(d["stats"]),
            window_s=float(d["window_s"]),
            mean=tuple(float(v) for v in d.get("mean", ())),
            std=tuple(float(v) for v in d.get("std", ())),
        )


@dataclass(frozen=True, slots=True)
class MachineRows:
    """One row per (machine, window) of one machine type."""

    machine_id: npt.NDArray[np.object_]
    window_end_ms: npt.NDArray[np.int64]
    x: F64

    def __len__(self) -> int:
        return len(self.machine_id)


def _col(t: pa.Table, name: str) -> npt.NDArray[Any]:
    return np.asarray(t.column(name).to_numpy(zero_copy_only=False))


def machine_matrix(
    features: pa.Table, machine_type: npt.NDArray[Any], spec: FeatureSpec
) -> MachineRows:
    """The rows of ``features`` (the stream's FEATURES_SCHEMA) of machines of
    ``spec.machine_type`` (``machine_type`` gives each row's type) pivoted into one row per
    (machine, window end), columns as ``spec.columns``. Where a window was computed again (a
    late reading: a higher ``version``), the latest version counts. Sensors outside the spec
    are ignored; a spec sensor without a row is NaN."""
    empty = MachineRows(
        np.zeros(0, object), np.zeros(0, np.int64), np.zeros((0, len(spec.columns)))
    )
    if features.num_rows == 0:
        return empty
    keep = np.asarray(machine_type == spec.machine_type, np.bool_)
    sensor = _col(features, "sensor_id").astype(object)
    order = np.array(spec.sensors, dtype=object)
    sorter = np.argsort(order)
    pos = np.searchsorted(order[sorter], sensor) if len(order) else np.zeros(len(sensor), int)
    pos = np.minimum(pos, max(len(order) - 1, 0))
    known = keep & (order[sorter][pos] == sensor) if len(order) else np.zeros(len(sensor), bool)
    if not known.any():
        return empty
    rows = np.flatnonzero(known)
    col_of_sensor = sorter[pos[rows]]
    machine = _col(features, "machine_id").astype(object)[rows]
    end = ts_ms(features, "window_end")[rows]
    version = _col(features, "version").astype(np.int64)[rows]
    # one (machine, window) key per output row; the latest version of each cell wins
    key_m, m_inv = np.unique(machine.astype(str), return_inverse=True)
    key_e, e_inv = np.unique(end, return_inverse=True)
    flat = m_inv.astype(np.int64) * len(key_e) + e_inv
    out_keys, row_of = np.unique(flat, return_inverse=True)
    n_stats = len(spec.stats)
    x = np.full((len(out_keys), len(order) * n_stats), np.nan)
    by_version = np.argsort(version, kind="stable")  # later assignment (higher version) wins
    r, c = row_of[by_version], col_of_sensor[by_version]
    for j, stat in enumerate(spec.stats):
        values = _col(features, stat).astype(np.float64)[rows][by_version]
        x[r, c * n_stats + j] = values
    return MachineRows(
        key_m[out_keys // len(key_e)].astype(object),
        key_e[out_keys % len(key_e)].astype(np.int64),
        x,
    )


def spec_from_features(
    features: pa.Table,
    machine_type: npt.NDArray[Any],
    wanted: str,
    *,
    stats: Sequence[str] = DEFAULT_STATS,
    window_s: float,
    min_presence: float = 0.5,
) -> FeatureSpec:
    """The spec of machine type ``wanted``: its sensors seen in at least ``min_presence`` of the
    type's windows, sorted by name (moments not set yet: see :meth:`FeatureSpec.with_moments`)."""
    mask = np.asarray(machine_type == wanted, np.bool_)
    window = np.char.add(
        np.char.add(_col(features, "machine_id").astype(str)[mask], "\x1f"),
        ts_ms(features, "window_end")[mask].astype(str),
    )
    # a window computed again (a late reading: version 2, 3) counts once
    _, one = np.unique(
        np.char.add(np.char.add(window, "\x1f"), _col(features, "sensor_id").astype(str)[mask]),
        return_index=True,
    )
    windows = len(np.unique(window))
    sensors = _col(features, "sensor_id").astype(str)[mask][one]
    kinds = _col(features, "kind").astype(str)[mask][one]
    names, first, counts = np.unique(sensors, return_index=True, return_counts=True)
    chosen = [
        (str(n), str(kinds[i]))
        for n, i, c in zip(names, first, counts, strict=True)
        if windows and c >= min_presence * windows
    ]
    return FeatureSpec(
        wanted,
        tuple(n for n, _ in chosen),
        tuple(k for _, k in chosen),
        tuple(stats),
        window_s,
    )
