"""Fault specs and fault scheduling: the ground truth of what goes wrong, and when."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

import pytest

from plantwatch.core.errors import ConfigError
from plantwatch.core.kinds import SensorKind
from plantwatch.sim import (
    MACHINE_FAULTS,
    SENSOR_FAULTS,
    Fault,
    FaultKind,
    FaultPlan,
    Placement,
    build_plant,
    ground_truth,
    parse_fault_spec,
    schedule_faults,
)

S = 1_709_280_000.0  # 2024-03-01T08:00:00Z

# -- parsing ----------------------------------------------------------------------------------


def test_default_and_none() -> None:
    default = parse_fault_spec("default")
    counts = default.counts_for(50)
    assert {k: counts[k] for k in MACHINE_FAULTS} == dict.fromkeys(MACHINE_FAULTS, 4)
    assert {k: counts[k] for k in SENSOR_FAULTS} == dict.fromkeys(SENSOR_FAULTS, 2)
    small = default.counts_for(10)
    assert set(small.values()) == {1}
    assert len(small) == 7
    none = parse_fault_spec(" none ")
    assert none.counts_for(50) == {}
    assert none.placements == ()


def test_counts() -> None:
    plan = parse_fault_spec("bearing_wear:3, stuck:1,bearing_wear:2")
    assert plan.counts_for(50) == {FaultKind.BEARING_WEAR: 5, FaultKind.STUCK: 1}
    assert plan.placements == ()


def test_explicit_placements() -> None:
    plan = parse_fault_spec("overheating@L1-PUMP-01:600+900,stuck@L1-PUMP-01/flow:60.5+30,glitch:1")
    assert plan.placements == (
        Placement(FaultKind.OVERHEATING, "L1-PUMP-01", None, 600.0, 900.0),
        Placement(FaultKind.STUCK, "L1-PUMP-01", "flow", 60.5, 30.0),
    )
    assert plan.counts_for(50) == {FaultKind.GLITCH: 1}


@pytest.mark.parametrize(
    ("spec", "quoted"),
    [
        ("bogus:1", "'bogus:1'"),
        ("stuck:x", "'stuck:x'"),
        ("stuck:-1", "'stuck:-1'"),
        ("bearing_wear", "'bearing_wear'"),
        ("stuck:1,,glitch:1", "''"),
        ("stuck@L1-PUMP-01:abc+5", "'stuck@L1-PUMP-01:abc+5'"),
        ("stuck@L1-PUMP-01:5", "'stuck@L1-PUMP-01:5'"),
        ("stuck@:5+5", "'stuck@:5+5'"),
        ("stuck@L1-PUMP-01:5+0", "'stuck@L1-PUMP-01:5+0'"),
        ("stuck@L1-PUMP-01:-5+10", "'stuck@L1-PUMP-01:-5+10'"),
        ("stuck:1,nonsense@L1-PUMP-01:5+10", "'nonsense@L1-PUMP-01:5+10'"),
        ("", "''"),
    ],
)
def test_bad_specs_quote_the_item_and_show_the_grammar(spec: str, quoted: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_fault_spec(spec)
    message = str(info.value)
    assert quoted in message
    assert "grammar" in message
    assert "KIND@MACHINE" in message


# -- faults -----------------------------------------------------------------------------------


def test_fault_dict_round_trip_and_ground_truth_order() -> None:
    late = Fault("L1-PUMP-01", "vib_de", FaultKind.BEARING_WEAR, S + 600.25, S + 1200.5)
    early = Fault("L1-FAN-02", "speed", FaultKind.STUCK, S + 60.0, S + 120.0)
    assert late.to_dict() == {
        "machine": "L1-PUMP-01",
        "sensor": "vib_de",
        "kind": "bearing_wear",
        "start": "2024-03-01T08:10:00.250Z",
        "end": "2024-03-01T08:20:00.500Z",
    }
    assert Fault.from_dict(late.to_dict()) == late
    assert [r["machine"] for r in ground_truth([late, early])] == ["L1-FAN-02", "L1-PUMP-01"]
    with pytest.raises(ConfigError, match="start < end"):
        Fault("L1-PUMP-01", "vib_de", FaultKind.STUCK, S, S)


# -- scheduling -------------------------------------------------------------------------------


def _schedule(n: int, spec: str, horizon: float, seed: int = 1) -> list[Fault]:
    return schedule_faults(
        build_plant(n, seed=0), parse_fault_spec(spec), start=S, horizon_s=horizon, seed=seed
    )


LABEL = {
    FaultKind.BEARING_WEAR: SensorKind.VIBRATION,
    FaultKind.OVERHEATING: SensorKind.TEMPERATURE,
    FaultKind.PRESSURE_LEAK: SensorKind.PRESSURE,
    FaultKind.ELECTRICAL: SensorKind.CURRENT,
}


def test_default_schedule_rules() -> None:
    plant = build_plant(30, seed=0)
    horizon = 3600.0
    faults = schedule_faults(
        plant, FaultPlan.default(), start=S, horizon_s=horizon, seed=8
    )  # fmt: skip
    assert Counter(f.kind for f in faults) == FaultPlan.default().counts_for(30)
    assert len({f.machine_id for f in faults}) == len(faults)  # distinct machines preferred
    for f in faults:
        assert f.start >= S + 360.0  # warm-up: 10 % of the horizon, at least 5 min
        assert f.end <= S + 0.95 * horizon
        machine = plant.machine(f.machine_id)
        sensor = machine.sensor(f.sensor_id)
        if f.kind in MACHINE_FAULTS:
            assert 0.20 * horizon <= f.duration <= 0.35 * horizon
            assert sensor == machine.first_of_kind(LABEL[f.kind])
        else:
            assert 0.08 * horizon <= f.duration <= 0.15 * horizon
        if f.kind is FaultKind.PRESSURE_LEAK:
            assert machine.machine_type != "motor_fan"


def test_schedule_is_deterministic_and_seeded() -> None:
    a = _schedule(30, "default", 7200.0, seed=3)
    assert a == _schedule(30, "default", 7200.0, seed=3)
    assert a != _schedule(30, "default", 7200.0, seed=4)


def test_short_horizons_keep_minimum_durations_that_fit() -> None:
    faults = _schedule(8, "bearing_wear:1,stuck:1", 600.0)
    by_kind = {f.kind: f for f in faults}
    assert by_kind[FaultKind.BEARING_WEAR].duration == pytest.approx(300.0)
    assert by_kind[FaultKind.STUCK].duration == pytest.approx(180.0)
    for f in faults:
        assert f.start >= S + 60.0  # 10 % of a horizon under 30 min
        assert f.end <= S + 570.0 + 1e-6


def test_more_faults_than_machines_never_overlap_on_one_machine() -> None:
    faults = _schedule(4, "bearing_wear:2,overheating:2,stuck:4,glitch:3", 20_000.0)
    assert len(faults) == 11
    per_machine = defaultdict(list)
    for f in faults:
        per_machine[f.machine_id].append(f)
    assert len(per_machine) == 4
    for same in per_machine.values():
        same.sort(key=lambda f: f.start)
        for a, b in itertools.pairwise(same):
            assert a.end <= b.start


def test_too_many_faults_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fewer faults or a longer run"):
        _schedule(2, "bearing_wear:40", 3600.0)


def test_leaks_only_where_there_is_pressure() -> None:
    plant = build_plant(2, seed=0)  # a pump and a fan
    faults = schedule_faults(
        plant, parse_fault_spec("pressure_leak:2"), start=S, horizon_s=36_000.0, seed=1
    )
    assert {f.machine_id for f in faults} == {"L1-PUMP-01"}
    assert {f.sensor_id for f in faults} == {"pressure_discharge"}


def test_explicit_placements_are_used_as_given() -> None:
    plant = build_plant(12, seed=0)
    plan = parse_fault_spec(
        "overheating@L1-PUMP-01:600+900,stuck@L1-FAN-02/speed:30+60,glitch@L1-PUMP-01:10+5"
    )
    faults = schedule_faults(plant, plan, start=S, horizon_s=3600.0, seed=1)
    assert faults == [
        Fault("L1-PUMP-01", "vib_de", FaultKind.GLITCH, S + 10.0, S + 15.0),
        Fault("L1-FAN-02", "speed", FaultKind.STUCK, S + 30.0, S + 90.0),
        Fault("L1-PUMP-01", "temp_bearing", FaultKind.OVERHEATING, S + 600.0, S + 1500.0),
    ]


def test_random_faults_avoid_explicit_ones_on_the_same_machine() -> None:
    plant = build_plant(1, seed=0)
    plan = parse_fault_spec("bearing_wear@L1-PUMP-01:400+1000,stuck:3")
    faults = sorted(
        schedule_faults(plant, plan, start=S, horizon_s=7200.0, seed=2), key=lambda f: f.start
    )
    for a, b in itertools.pairwise(faults):
        assert a.end <= b.start


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("stuck@L9-PUMP-01:10+5", "no machine 'L9-PUMP-01'"),
        ("stuck@L1-PUMP-01/torque:10+5", "no sensor 'torque'"),
        ("pressure_leak@L1-FAN-02:10+5", "needs a pressure sensor"),
        ("bearing_wear@L1-PUMP-01/vib_nde:10+5", "labelled with sensor 'vib_de'"),
    ],
)
def test_explicit_placements_are_validated(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        schedule_faults(
            build_plant(4, seed=0), parse_fault_spec(spec), start=S, horizon_s=3600.0, seed=1
        )
