"""Feature vectors per (machine, window) for pre-trained models: the pivot of the stream's
window features (``machine_matrix``), the spec read from training features, moments, imputation
and the JSON form stored in the registry. Expected matrices are written out by hand."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from plantwatch.models.features import FeatureSpec, machine_matrix, spec_from_features
from plantwatch.stream.outputs import FEATURES_SCHEMA

T0 = 1_800_000_000_000
E1, E2 = T0 + 10_000, T0 + 20_000
NAN = float("nan")
KIND = {"vib": "vibration", "tmp": "temperature", "hum": "humidity"}
TYPES = {"m1": "pump", "m2": "pump", "m3": "fan"}


def row(machine: str, sensor: str, end: int, mean: float, mx: float, version: int = 1) -> dict:
    return {
        "machine_id": machine,
        "sensor_id": sensor,
        "kind": KIND[sensor],
        "window_start": end - 10_000,
        "window_end": end,
        "count": 10,
        "mean": mean,
        "min": mean - 1.0,
        "max": mx,
        "std": 0.5,
        "last": mean,
        "rms": None,
        "version": version,
        "computed_at": end + 1000,
    }


# m1, m2 are pumps, m3 a fan; two windows. m1's vib window E2 was computed again (version 2,
# listed before version 1); m2 has no tmp reading in E1; "hum" is not in the spec.
ROWS = [
    row("m1", "vib", E1, 1.0, 2.0),
    row("m1", "tmp", E1, 50.0, 55.0),
    row("m1", "hum", E1, 999.0, 999.0),
    row("m2", "vib", E1, 3.0, 4.0),
    row("m2", "tmp", E2, 60.0, 66.0),
    row("m2", "vib", E2, 5.0, 6.0),
    row("m1", "vib", E2, 7.0, 8.0, version=2),
    row("m1", "vib", E2, 70.0, 80.0, version=1),
    row("m1", "tmp", E2, 52.0, 57.0),
    row("m3", "vib", E1, 100.0, 100.0),
]

# spec sensors deliberately not in alphabetical order: columns follow the spec
SPEC = FeatureSpec("pump", ("vib", "tmp"), ("vibration", "temperature"), ("mean", "max"))

EXPECTED_MACHINES = ["m1", "m1", "m2", "m2"]
EXPECTED_ENDS = [E1, E2, E1, E2]
EXPECTED_X = np.array(
    [
        # vib.mean vib.max tmp.mean tmp.max
        [1.0, 2.0, 50.0, 55.0],
        [7.0, 8.0, 52.0, 57.0],  # version 2 of vib wins over version 1 (70, 80)
        [3.0, 4.0, NAN, NAN],  # no tmp reading in that window
        [5.0, 6.0, 60.0, 66.0],
    ]
)


def table(rows: list[dict[str, Any]]) -> tuple[pa.Table, np.ndarray]:
    t = pa.Table.from_pylist(
        [
            {
                **r,
                "window_start": pa.scalar(r["window_start"], pa.int64()).cast(
                    FEATURES_SCHEMA.field("window_start").type
                ),
                "window_end": pa.scalar(r["window_end"], pa.int64()).cast(
                    FEATURES_SCHEMA.field("window_end").type
                ),
                "computed_at": pa.scalar(r["computed_at"], pa.int64()).cast(
                    FEATURES_SCHEMA.field("computed_at").type
                ),
            }
            for r in rows
        ],
        schema=FEATURES_SCHEMA,
    )
    types = np.array([TYPES[r["machine_id"]] for r in rows], dtype=object)
    return t, types


def test_columns_are_sensor_major_in_spec_order() -> None:
    assert SPEC.columns == ["vib.mean", "vib.max", "tmp.mean", "tmp.max"]


@pytest.mark.parametrize(
    "order",
    [
        list(range(len(ROWS))),
        list(reversed(range(len(ROWS)))),
        [7, 0, 9, 3, 6, 1, 8, 2, 5, 4],
        [6, 7, 0, 1, 2, 3, 4, 5, 8, 9],
        [7, 6, 0, 1, 2, 3, 4, 5, 8, 9],
    ],
    ids=["as-listed", "reversed", "shuffled", "v2-first", "v1-first"],
)
def test_machine_matrix_pivots_one_row_per_machine_and_window(order: list[int]) -> None:
    t, types = table([ROWS[i] for i in order])
    got = machine_matrix(t, types, SPEC)
    assert len(got) == 4
    assert got.machine_id.tolist() == EXPECTED_MACHINES
    assert got.window_end_ms.tolist() == EXPECTED_ENDS
    assert got.window_end_ms.dtype == np.int64
    np.testing.assert_array_equal(got.x, EXPECTED_X)


def test_machine_matrix_keeps_only_the_spec_machine_type() -> None:
    t, types = table(ROWS)
    fan = FeatureSpec("fan", ("vib",), ("vibration",), ("mean", "max"))
    got = machine_matrix(t, types, fan)
    assert got.machine_id.tolist() == ["m3"]
    assert got.window_end_ms.tolist() == [E1]
    np.testing.assert_array_equal(got.x, [[100.0, 100.0]])


def test_machine_matrix_takes_every_requested_statistic() -> None:
    t, types = table(ROWS[:2])  # m1 in E1
    spec = FeatureSpec("pump", ("tmp",), ("temperature",), ("min", "std", "last", "rms"))
    got = machine_matrix(t, types, spec)
    # rms is null for a temperature sensor: NaN
    np.testing.assert_array_equal(got.x, [[49.0, 0.5, 50.0, NAN]])


def test_machine_matrix_of_nothing_has_the_spec_width() -> None:
    t, types = table([])
    got = machine_matrix(t, types, SPEC)
    assert len(got) == 0 and got.x.shape == (0, 4)
    # rows exist, but none of a spec sensor for that type
    t, types = table([ROWS[2], ROWS[9]])  # m1's hum, m3's vib (a fan)
    got = machine_matrix(t, types, SPEC)
    assert len(got) == 0 and got.x.shape == (0, 4)


def test_spec_from_features_keeps_sensors_present_in_enough_windows_sorted() -> None:
    t, types = table(ROWS)
    # pump windows: (m1,E1) (m1,E2) (m2,E1) (m2,E2); vib in 4, tmp in 3, hum in 1
    spec = spec_from_features(t, types, "pump", window_s=10.0)
    assert spec.machine_type == "pump"
    assert spec.sensors == ("tmp", "vib")  # sorted, hum (1 of 4) dropped
    assert spec.kinds == ("temperature", "vibration")
    assert spec.stats == ("mean", "std", "max")
    assert spec.window_s == 10.0
    assert spec.mean == () and spec.std == ()
    strict = spec_from_features(t, types, "pump", window_s=10.0, min_presence=0.8)
    assert strict.sensors == ("vib",)  # tmp in 3 of 4 windows < 80 %
    everything = spec_from_features(
        t, types, "pump", stats=("last",), window_s=5.0, min_presence=0.25
    )
    assert everything.sensors == ("hum", "tmp", "vib")
    assert everything.kinds == ("humidity", "temperature", "vibration")
    assert everything.stats == ("last",) and everything.window_s == 5.0
    fan = spec_from_features(t, types, "fan", window_s=10.0)
    assert fan.sensors == ("vib",)
    assert spec_from_features(t, types, "compressor", window_s=10.0).sensors == ()


def test_spec_from_features_counts_a_recomputed_window_once() -> None:
    """Presence is "seen in at least min_presence of the type's windows": a window computed
    again (late readings: versions 2 and 3) is still one window."""
    rows = [row("m1", "vib", end, 1.0, 2.0) for end in (E1, E2, E2 + 10_000, E2 + 20_000)]
    rows += [row("m1", "tmp", E1, 50.0, 55.0, version=v) for v in (1, 2, 3)]
    t, types = table(rows)
    spec = spec_from_features(t, types, "pump", window_s=10.0, min_presence=0.5)
    assert spec.sensors == ("vib",), (
        "BUG spec_from_features: tmp has rows in 1 of 4 windows (3 versions of one window) but "
        "passes the 50 % presence threshold because every version row is counted"
    )


def test_with_moments_sets_column_means_and_stds_ignoring_nan() -> None:
    spec = FeatureSpec("pump", ("a", "b"), ("vibration", "current"), ("mean",), window_s=5.0)
    x = np.array([[1.0, NAN], [3.0, 4.0], [5.0, 8.0]])
    m = spec.with_moments(x)
    assert m.mean == pytest.approx((3.0, 6.0))
    assert m.std == pytest.approx((np.sqrt(8.0 / 3.0), 2.0))
    assert (m.machine_type, m.sensors, m.kinds, m.stats, m.window_s) == (
        "pump",
        ("a", "b"),
        ("vibration", "current"),
        ("mean",),
        5.0,
    )
    assert spec.mean == ()  # frozen: a new spec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy: mean of an empty slice
        empty_col = spec.with_moments(np.array([[1.0, NAN], [3.0, NAN]]))
    assert empty_col.mean == (2.0, 0.0) and empty_col.std == (1.0, 0.0)


def test_impute_fills_training_means_and_rejects_rows_mostly_missing() -> None:
    spec = FeatureSpec(
        "pump", ("a", "b"), ("vibration", "current"), ("mean", "max"), mean=(1, 2, 3, 4)
    )
    x = np.array(
        [
            [10.0, 20.0, 30.0, 40.0],  # complete
            [NAN, NAN, 30.0, 40.0],  # half missing: still usable
            [NAN, NAN, NAN, 40.0],  # three quarters missing: not usable
            [np.inf, 20.0, -np.inf, 40.0],  # inf counts as missing
        ]
    )
    filled, usable = spec.impute(x)
    np.testing.assert_array_equal(
        filled,
        [
            [10.0, 20.0, 30.0, 40.0],
            [1.0, 2.0, 30.0, 40.0],
            [1.0, 2.0, 3.0, 40.0],
            [1.0, 20.0, 3.0, 40.0],
        ],
    )
    assert usable.tolist() == [True, True, False, True]
    assert np.isnan(x[1, 0])  # the input is not changed


def test_spec_json_round_trip() -> None:
    spec = FeatureSpec(
        "pump",
        ("tmp", "vib"),
        ("temperature", "vibration"),
        ("mean", "rms"),
        window_s=2.5,
        mean=(50.0, NAN, 2.0, 2.1),
        std=(1.0, 0.0, 0.1, 0.2),
    )
    d = spec.as_json()
    assert d["columns"] == ["tmp.mean", "tmp.rms", "vib.mean", "vib.rms"]
    again = FeatureSpec.from_json(json.loads(json.dumps(d)))
    assert again.mean[1] != again.mean[1]  # NaN survives
    assert again.as_json()["columns"] == d["columns"]
    plain = FeatureSpec("pump", ("tmp",), ("temperature",), window_s=10.0, mean=(1.0, 2.0, 3.0))
    assert FeatureSpec.from_json(json.loads(json.dumps(plain.as_json()))) == plain
    # moments are optional in the JSON (a spec before with_moments)
    bare = {k: v for k, v in plain.as_json().items() if k not in ("mean", "std")}
    assert FeatureSpec.from_json(bare).mean == ()


def test_unknown_statistic_and_missing_kinds_are_rejected() -> None:
    with pytest.raises(ValueError, match="median"):
        FeatureSpec("pump", ("a",), ("vibration",), ("mean", "median"))
    with pytest.raises(ValueError, match="kind"):
        FeatureSpec("pump", ("a", "b"), ("vibration",))
    d = SPEC.as_json()
    d["stats"] = ["mean", "p99"]
    with pytest.raises(ValueError, match="p99"):
        FeatureSpec.from_json(d)
