"""Sensor kinds and unit conversion: canonical units, every accepted unit, refused units."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from plantwatch.core.errors import InvalidReadingError, UnitError, UnknownKindError
from plantwatch.core.kinds import KINDS, SensorKind, canonical_unit, parse_kind
from plantwatch.core.units import accepted_units, conversion, normalize, unit_problem

CANONICAL = {
    "vibration": "mm/s",
    "temperature": "°C",
    "humidity": "%",
    "pressure": "bar",
    "current": "A",
    "voltage": "V",
    "power": "kW",
    "speed": "rpm",
    "flow": "m³/h",
}

PSI_IN_BAR = 0.0689475729
HP_IN_KW = 0.745699872  # mechanical horsepower: 745.699872 W
US_GALLON_IN_L = 3.785411784

# (kind, unit, value in that unit, the same quantity in the canonical unit), worked out by hand.
CASES: list[tuple[str, str, float, float]] = [
    ("vibration", "mm/s", 3.0, 3.0),
    ("vibration", "in/s", 1.0, 25.4),
    ("vibration", "ips", 2.0, 50.8),
    ("vibration", "m/s", 0.01, 10.0),
    ("vibration", "µm/s", 1000.0, 1.0),
    ("vibration", "um/s", 2500.0, 2.5),
    ("temperature", "°C", 21.5, 21.5),
    ("temperature", "C", -5.0, -5.0),
    ("temperature", "degC", 37.0, 37.0),
    ("temperature", "celsius", 100.0, 100.0),
    ("temperature", "°F", 212.0, 100.0),
    ("temperature", "F", 32.0, 0.0),
    ("temperature", "degF", -40.0, -40.0),
    ("temperature", "fahrenheit", 98.6, 37.0),
    ("temperature", "K", 273.15, 0.0),
    ("temperature", "kelvin", 373.15, 100.0),
    ("humidity", "%", 45.0, 45.0),
    ("humidity", "%RH", 55.5, 55.5),
    ("humidity", "pct", 12.0, 12.0),
    ("pressure", "bar", 2.5, 2.5),
    ("pressure", "mbar", 1013.25, 1.01325),
    ("pressure", "psi", 100.0, 100 * PSI_IN_BAR),
    ("pressure", "psig", 1.0, PSI_IN_BAR),
    ("pressure", "Pa", 101_325.0, 1.01325),
    ("pressure", "kPa", 250.0, 2.5),
    ("pressure", "MPa", 1.5, 15.0),
    ("current", "A", 5.0, 5.0),
    ("current", "mA", 250.0, 0.25),
    ("current", "kA", 1.2, 1200.0),
    ("voltage", "V", 230.0, 230.0),
    ("voltage", "mV", 1500.0, 1.5),
    ("voltage", "kV", 11.0, 11_000.0),
    ("power", "kW", 7.5, 7.5),
    ("power", "W", 1500.0, 1.5),
    ("power", "MW", 2.0, 2000.0),
    ("power", "hp", 100.0, 100 * HP_IN_KW),
    ("speed", "rpm", 1500.0, 1500.0),
    ("speed", "rps", 25.0, 1500.0),
    ("speed", "rad/s", 50 * math.pi, 1500.0),  # 25 rev/s * 2π rad/rev
    ("flow", "m³/h", 12.0, 12.0),
    ("flow", "m3/h", 12.0, 12.0),
    ("flow", "m³/s", 0.5, 1800.0),
    ("flow", "m3/s", 1.0, 3600.0),
    ("flow", "L/min", 1000.0, 60.0),
    ("flow", "l/min", 500.0, 30.0),
    ("flow", "L/s", 10.0, 36.0),
    ("flow", "gpm", 100.0, 100 * US_GALLON_IN_L * 60 / 1000),
]


def test_every_kind_has_its_canonical_unit() -> None:
    assert {k.value for k in SensorKind} == set(CANONICAL)
    assert set(KINDS) == set(SensorKind)
    for kind, unit in CANONICAL.items():
        assert canonical_unit(kind) == unit
        assert canonical_unit(SensorKind(kind)) == unit
        assert KINDS[SensorKind(kind)].unit == unit


def test_physical_ranges_are_ordered() -> None:
    for spec in KINDS.values():
        assert spec.low < spec.high, spec


def test_parse_kind_refuses_unknown_names() -> None:
    assert parse_kind("pressure") is SensorKind.PRESSURE
    with pytest.raises(UnknownKindError) as info:
        parse_kind("torque")
    assert info.value.field == "kind"
    assert info.value.value == "torque"
    assert "vibration" in str(info.value)  # says what to use instead


def test_the_cases_cover_every_accepted_unit() -> None:
    for kind in CANONICAL:
        covered = {unit for k, unit, _, _ in CASES if k == kind}
        assert covered == set(accepted_units(kind)), kind


@pytest.mark.parametrize(("kind", "unit", "value", "expected"), CASES)
def test_conversion_of_one_value(kind: str, unit: str, value: float, expected: float) -> None:
    conv = conversion(kind, unit)
    assert value * conv.scale + conv.offset == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert unit_problem(kind, unit) is None


def test_normalize_converts_a_mixed_batch_in_one_call() -> None:
    kinds = pa.array([k for k, _, _, _ in CASES])
    units = pa.array([u for _, u, _, _ in CASES])
    values = np.array([v for _, _, v, _ in CASES])

    out = normalize(kinds, units, values)

    expected = np.array([e for _, _, _, e in CASES])
    np.testing.assert_allclose(out.values, expected, rtol=1e-9, atol=1e-9)
    assert out.units.to_pylist() == [CANONICAL[k] for k, _, _, _ in CASES]
    assert out.ok.all()
    assert out.problems == {}


def test_normalize_marks_nulls_unknown_kinds_and_refused_units() -> None:
    kinds = pa.array(["temperature", None, "pressure", "torque", "vibration", "vibration", "flow"])
    units = pa.array(["°F", "bar", None, "Nm", "g", "furlong/s", "L/s"])
    values = pa.array([212.0, 1.0, 2.0, 3.0, 4.0, 5.0, None])

    out = normalize(kinds, units, values)

    assert out.ok.tolist() == [True, False, False, False, False, False, True]
    # Good rows are converted; failed rows keep their value and unit as they came.
    assert out.values[0] == pytest.approx(100.0)
    assert out.values[1:6].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert math.isnan(out.values[6])  # a null value stays missing, it is not invented
    assert out.units.to_pylist() == ["°C", "bar", None, "Nm", "g", "furlong/s", "m³/h"]
    assert set(out.problems) == {1, 2, 3, 4, 5}
    assert out.problems[1] == out.problems[2] == "kind or unit is missing"
    assert "torque" in out.problems[3]
    assert "acceleration is not velocity" in out.problems[4]
    assert "accepted: mm/s" in out.problems[5]


def test_normalize_accepts_chunked_columns() -> None:
    kinds = pa.chunked_array([["vibration", "temperature"], ["temperature", "pressure"]])
    units = pa.chunked_array([["in/s", "°F"], ["K", "psi"]])

    out = normalize(kinds, units, [1.0, 212.0, 273.15, 1.0])

    np.testing.assert_allclose(out.values, [25.4, 100.0, 0.0, PSI_IN_BAR], atol=1e-9)
    assert out.units.to_pylist() == ["mm/s", "°C", "°C", "bar"]
    assert out.ok.all()


def test_normalize_of_an_empty_batch() -> None:
    out = normalize(pa.array([], pa.string()), pa.array([], pa.string()), [])
    assert len(out.values) == 0
    assert len(out.units) == 0
    assert len(out.ok) == 0
    assert out.problems == {}


@pytest.mark.parametrize(
    ("unit", "reason"),
    [
        ("g", "acceleration is not velocity"),
        ("m/s²", "acceleration is not velocity"),
        ("m/s2", "acceleration is not velocity"),
        ("mm", "displacement is not velocity"),
        ("mils", "displacement is not velocity"),
    ],
)
def test_vibration_refuses_units_of_another_quantity(unit: str, reason: str) -> None:
    with pytest.raises(UnitError) as info:
        conversion("vibration", unit)
    err = info.value
    assert isinstance(err, InvalidReadingError)
    assert err.kind == "vibration"
    assert err.field == "unit"
    assert err.value == unit
    assert reason in err.problem
    assert "vibration" in str(err)
    assert repr(unit) in str(err)
    assert reason in str(err)
    problem = unit_problem("vibration", unit)
    assert problem is not None
    assert reason in problem


def test_humidity_refuses_dew_point() -> None:
    problem = unit_problem("humidity", "dewpoint")
    assert problem is not None
    assert "dew point is not relative humidity" in problem


def test_an_unknown_unit_lists_the_accepted_ones() -> None:
    with pytest.raises(UnitError) as info:
        conversion("pressure", "atm")
    assert info.value.value == "atm"
    assert "no conversion to bar" in info.value.problem
    for unit in accepted_units("pressure"):
        assert unit in info.value.problem


def test_accepted_units_start_with_the_canonical_unit() -> None:
    for kind, canon in CANONICAL.items():
        units = accepted_units(kind)
        assert units[0] == canon
        assert len(set(units)) == len(units)
    assert set(accepted_units(SensorKind.VIBRATION)) == {
        "mm/s",
        "in/s",
        "ips",
        "m/s",
        "µm/s",
        "um/s",
    }
    assert "g" not in accepted_units("vibration")


def test_unit_problem() -> None:
    assert unit_problem("temperature", "K") is None
    assert unit_problem("no-such-kind", "K") is None  # the kind is someone else's problem
    problem = unit_problem("temperature", "Rankine")
    assert problem is not None
    assert "no conversion to °C" in problem
    assert "temperature" in problem
