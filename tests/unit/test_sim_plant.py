"""The simulated plant: composition, identities, device units."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from plantwatch.core.errors import ConfigError
from plantwatch.core.kinds import KINDS, SensorKind
from plantwatch.core.units import conversion
from plantwatch.sim import MACHINE_TYPES, RATED_CURRENT_A, build_plant, electrical_power_kw

EXPECTED_SENSORS = {
    "centrifugal_pump": [
        "vib_de",
        "vib_nde",
        "temp_bearing",
        "pressure_discharge",
        "flow",
        "current",
        "power",
    ],
    "motor_fan": ["vibration", "temp_winding", "current", "voltage", "speed", "power"],
    "hydraulic_press": ["pressure_hydraulic", "temp_oil", "vibration", "current", "power"],
    "air_compressor": [
        "pressure_discharge",
        "temp_discharge",
        "current",
        "power",
        "vibration",
        "humidity",
    ],
}


def test_machine_types_are_the_four_names_other_code_uses() -> None:
    assert MACHINE_TYPES == (
        "centrifugal_pump",
        "motor_fan",
        "hydraulic_press",
        "air_compressor",
    )


def test_composition_round_robin_lines_and_legacy() -> None:
    plant = build_plant(40, seed=3)
    assert len(plant.machines) == 40
    for i, m in enumerate(plant.machines):
        assert m.machine_type == MACHINE_TYPES[i % 4]
        assert m.line == f"L{i // 10 + 1}"
        assert m.legacy == (i % 10 == 9)
        assert m.rated_current_a == RATED_CURRENT_A[m.machine_type]
        assert [s.sensor_id for s in m.sensors] == EXPECTED_SENSORS[m.machine_type]
    assert Counter(m.machine_type for m in plant.machines) == dict.fromkeys(MACHINE_TYPES, 10)
    assert sum(m.legacy for m in plant.machines) == 4


def test_machine_ids_are_unique_and_named_by_line_type_and_position() -> None:
    plant = build_plant(25, seed=1)
    ids = plant.machine_ids
    assert len(set(ids)) == len(ids)
    assert ids[:4] == ("L1-PUMP-01", "L1-FAN-02", "L1-PRESS-03", "L1-COMP-04")
    assert ids[9] == "L1-FAN-10"
    assert ids[10] == "L2-PRESS-01"
    assert all(re.fullmatch(r"L\d+-(PUMP|FAN|PRESS|COMP)-\d\d", i) for i in ids)
    assert build_plant(25, seed=99).machine_ids == ids  # ids do not depend on the seed


def test_every_device_unit_converts_and_legacy_sensors_are_canonical() -> None:
    plant = build_plant(200, seed=5)
    for m in plant.machines:
        for s in m.sensors:
            conv = conversion(s.kind, s.unit)  # raises if not convertible
            assert conv.scale > 0
            assert s.resolution > 0
            assert s.noise > 0
            assert KINDS[s.kind].low < s.nominal < KINDS[s.kind].high
            if m.legacy:
                assert s.unit == KINDS[s.kind].unit


def test_about_a_fifth_of_sdk_sensors_use_non_canonical_units() -> None:
    plant = build_plant(200, seed=11)
    sensors = [s for m in plant.machines if not m.legacy for s in m.sensors]
    odd = [s for s in sensors if s.unit != KINDS[s.kind].unit]
    assert 0.12 < len(odd) / len(sensors) < 0.28
    assert {s.unit for s in odd} == {"in/s", "K", "°F", "kPa", "psi"}
    assert {s.kind for s in odd} <= {
        SensorKind.VIBRATION,
        SensorKind.TEMPERATURE,
        SensorKind.PRESSURE,
    }


def test_same_seed_same_plant_other_seed_other_units() -> None:
    assert build_plant(30, seed=4) == build_plant(30, seed=4)
    a, b = build_plant(30, seed=4), build_plant(30, seed=5)
    units_a = [s.unit for m in a.machines for s in m.sensors]
    units_b = [s.unit for m in b.machines for s in m.sensors]
    assert units_a != units_b


def test_device_conversion_round_trips_and_resolution_fits_noise() -> None:
    plant = build_plant(100, seed=2)
    for m in plant.machines:
        for s in m.sensors:
            assert s.to_canonical(s.to_device(s.nominal)) == pytest.approx(s.nominal)
            # quantisation must not swamp the noise: one step is at most the noise σ
            assert s.resolution * s.conversion.scale <= s.noise


def test_nominal_power_follows_current() -> None:
    plant = build_plant(4, seed=0)
    for m in plant.machines:
        current = m.sensor("current").nominal
        assert m.sensor("power").nominal == pytest.approx(
            electrical_power_kw(400.0, current), abs=1e-3
        )


def test_lookup_helpers() -> None:
    plant = build_plant(12, seed=0)
    assert plant.machine("L2-PRESS-01").machine_type == "hydraulic_press"
    assert plant.sensor_count == sum(len(m.sensors) for m in plant.machines)
    assert "L1-PUMP-01" in plant
    assert plant.registry_rows()[1] == {
        "machine_id": "L1-FAN-02",
        "machine_type": "motor_fan",
        "line": "L1",
        "site": "plant-1",
        "name": "Line 1 motor fan 2",
    }
    with pytest.raises(ConfigError, match="L9-PUMP-01"):
        plant.machine("L9-PUMP-01")
    with pytest.raises(ConfigError, match="torque"):
        plant.machine("L1-PUMP-01").sensor("torque")
    assert plant.machine("L1-PUMP-01").first_of_kind(SensorKind.VIBRATION).sensor_id == "vib_de"
    assert plant.machine("L1-FAN-02").first_of_kind(SensorKind.PRESSURE) is None


def test_plant_needs_a_machine() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        build_plant(0, seed=0)
