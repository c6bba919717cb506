"""The running plant: tick semantics, determinism, schema, physical coupling and ranges."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from plantwatch.core.errors import ConfigError
from plantwatch.core.kinds import KINDS
from plantwatch.core.reading import READING_SCHEMA
from plantwatch.core.units import normalize
from plantwatch.sim import (
    Chunk,
    GatewayIssues,
    Plant,
    SimulationError,
    Simulator,
    build_plant,
    parse_fault_spec,
    schedule_faults,
)

S = 1_709_280_000.0  # 2024-03-01T08:00:00Z, when the daily load pattern is at its mean


def series(chunk: Chunk, plant: Plant, machine_id: str, sensor_id: str) -> tuple[Any, Any]:
    """(times in s, values in canonical units) of one sensor of an SDK machine."""
    t = chunk.table
    mask = pc.and_(pc.equal(t["machine_id"], machine_id), pc.equal(t["sensor_id"], sensor_id))
    rows = t.filter(mask)
    times = rows["ts"].cast(pa.int64()).to_numpy() / 1000.0
    conv = plant.machine(machine_id).sensor(sensor_id).conversion
    return times, rows["value"].to_numpy() * conv.scale + conv.offset


def run(
    plant: Plant, *, seed: int, rate: float, seconds: float, start: float = S, **kw: Any
) -> Chunk:
    sim = Simulator(plant, start=start, rate_hz=rate, faults=kw.pop("faults", ()), seed=seed, **kw)
    return sim.step(start + seconds)


# -- ticks and determinism --------------------------------------------------------------------


def test_step_generates_ticks_in_half_open_intervals() -> None:
    plant = build_plant(2, seed=0)
    sim = Simulator(plant, start=S, rate_hz=2.0, faults=(), seed=1)
    a = sim.step(S + 10.0)
    assert a.ticks == 20
    assert sim.t == S + 10.0
    assert a.table.num_rows == 20 * plant.sensor_count
    b = sim.step(S + 10.2)  # next tick is at S + 10.0, included now
    assert b.ticks == 1
    assert sim.step(S + 10.2).ticks == 0  # an empty step is fine
    c = sim.step(S + 10.6)  # tick at S + 10.5
    assert c.ticks == 1
    assert list(c.times) == [S + 10.5]
    with pytest.raises(SimulationError, match="time runs forward"):
        sim.step(S)


def test_table_has_the_reading_schema_and_device_units() -> None:
    plant = build_plant(12, seed=4)
    chunk = run(plant, seed=1, rate=1.0, seconds=5.0)
    table = chunk.table
    assert table.schema.equals(READING_SCHEMA, check_metadata=True)
    assert table["seq"].null_count == table.num_rows
    assert set(table["quality"].to_pylist()) == {"good"}
    assert set(table["schema_version"].to_pylist()) == {1}
    legacy_ids = {m.machine_id for m in plant.machines if m.legacy}
    assert legacy_ids == {"L1-FAN-10"}
    assert legacy_ids.isdisjoint(table["machine_id"].to_pylist())
    units = {
        (r["machine_id"], r["sensor_id"]): r["unit"]
        for r in table.select(["machine_id", "sensor_id", "unit"]).to_pylist()
    }
    for m in plant.machines:
        for s in m.sensors:
            if not m.legacy:
                assert units[(m.machine_id, s.sensor_id)] == s.unit
    first_ts = table["ts"][0].as_py().timestamp()
    assert first_ts == S
    assert {r["machine_id"] for r in chunk.legacy} == legacy_ids
    rec = chunk.legacy[0]
    assert list(rec) == [
        "machine_id",
        "sensor_id",
        "kind",
        "value",
        "unit",
        "ts",
        "quality",
        "schema_version",
    ]
    assert rec["ts"] == "2024-03-01T08:00:00.000Z"


def _concat(chunks: list[Chunk]) -> tuple[pa.Table, str, np.ndarray, dict[str, int]]:
    counts: dict[str, int] = {}
    for c in chunks:
        for k, v in c.issue_counts.items():
            counts[k] = counts.get(k, 0) + v
    legacy = json.dumps([r for c in chunks for r in c.legacy])
    return (
        pa.concat_tables([c.table for c in chunks]),
        legacy,
        np.concatenate([c.load for c in chunks]),
        counts,
    )


def test_same_output_however_time_is_split() -> None:
    plant = build_plant(12, seed=2)
    horizon = 1800.0
    faults = schedule_faults(
        plant, parse_fault_spec("default"), start=S, horizon_s=horizon, seed=5
    )  # fmt: skip
    issues = GatewayIssues(bad_unit=0.05, nan_value=0.05, missing_field=0.05, malformed=0.05)

    def make() -> Simulator:
        return Simulator(plant, start=S, rate_hz=2.0, faults=faults, seed=9, issues=issues)

    whole = make().step(S + horizon)
    sim = make()
    parts = []
    rng = np.random.default_rng(0)
    until = S
    while until < S + horizon:
        until = min(S + horizon, until + float(rng.choice([0.0, 0.3, 1.7, 13.0, 97.25, 301.0])))
        parts.append(sim.step(until))
    assert len(parts) > 20
    assert sum(p.ticks for p in parts) == whole.ticks == 3600
    table, legacy, load, counts = _concat(parts)
    assert table.equals(whole.table)
    assert legacy == json.dumps(whole.legacy)
    assert np.array_equal(load, whole.load)
    assert counts == whole.issue_counts
    assert sum(counts.values()) > 0


def test_different_seeds_differ() -> None:
    plant = build_plant(4, seed=0)
    a = run(plant, seed=1, rate=1.0, seconds=60.0)
    b = run(plant, seed=2, rate=1.0, seconds=60.0)
    assert a.table.num_rows == b.table.num_rows
    assert not np.array_equal(a.table["value"].to_numpy(), b.table["value"].to_numpy())
    again = run(plant, seed=1, rate=1.0, seconds=60.0)
    assert again.table.equals(a.table)


def test_bad_arguments() -> None:
    plant = build_plant(2, seed=0)
    with pytest.raises(ConfigError, match="rate_hz"):
        Simulator(plant, start=S, rate_hz=0.0, faults=(), seed=1)
    other = schedule_faults(
        build_plant(20, seed=0), parse_fault_spec("stuck@L2-PUMP-03:10+10"),
        start=S, horizon_s=100.0, seed=1,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="L2-PUMP-03"):
        Simulator(plant, start=S, rate_hz=1.0, faults=other, seed=1)


# -- physics ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def day() -> tuple[Plant, Chunk]:
    """Twelve hours (02:00 to 14:00 UTC) of eight machines, one reading every 20 s."""
    plant = build_plant(8, seed=6)
    return plant, run(plant, seed=3, rate=0.05, seconds=12 * 3600.0, start=S - 6 * 3600.0)


def test_load_stays_in_range_and_follows_the_day(day: tuple[Plant, Chunk]) -> None:
    _, chunk = day
    load = chunk.load
    assert load.min() >= 0.2
    assert load.max() <= 1.0
    hours = (chunk.times % 86400.0) / 3600.0
    daily = 0.65 + 0.25 * np.sin(2 * np.pi * (hours - 8.0) / 24.0)
    walk = load - daily[:, None]
    assert 0.01 < walk.std() < 0.12  # small
    first, second = np.diff(walk, axis=0), np.diff(walk, 2, axis=0)
    assert np.abs(first).max() < 0.02  # no steps
    assert second.std() < 0.8 * first.std()  # smooth: a plain random walk gives about 1.4
    assert np.corrcoef(daily, load.mean(axis=1))[0, 1] > 0.9


def test_load_drives_current_and_power(day: tuple[Plant, Chunk]) -> None:
    plant, chunk = day
    for mi, machine in enumerate(plant.machines):
        _, current = series(chunk, plant, machine.machine_id, "current")
        _, power = series(chunk, plant, machine.machine_id, "power")
        assert np.corrcoef(current, power)[0, 1] > 0.9
        if machine.machine_type in ("centrifugal_pump", "motor_fan"):
            assert np.corrcoef(current, chunk.load[:, mi])[0, 1] > 0.9


TEMPERATURE = {
    "centrifugal_pump": ("temp_bearing", 300.0),
    "motor_fan": ("temp_winding", 240.0),
    "hydraulic_press": ("temp_oil", 600.0),
    "air_compressor": ("temp_discharge", 180.0),
}


def test_temperature_lags_load(day: tuple[Plant, Chunk]) -> None:
    plant, chunk = day
    step = 20.0
    for mi, machine in enumerate(plant.machines):
        sensor, tau = TEMPERATURE[machine.machine_type]
        _, temp = series(chunk, plant, machine.machine_id, sensor)
        load = chunk.load[:, mi]
        lags = range(0, 91)  # 0 to 30 min
        n = len(load) - 90
        corr = [np.corrcoef(temp[90:], load[90 - d : 90 - d + n])[0, 1] for d in lags]
        best = lags[int(np.argmax(corr))] * step
        assert corr[0] > 0.9
        # a first-order lag delays slow changes by about tau, faster ones by less
        assert 0.25 * tau <= best <= 1.5 * tau, (machine.machine_id, best)
        assert max(corr) > corr[0]


def test_values_stay_in_physical_ranges_without_faults() -> None:
    plant = build_plant(30, seed=8)
    chunk = run(plant, seed=4, rate=0.5, seconds=3600.0, issues=GatewayIssues.none())
    table = chunk.table
    norm = normalize(table["kind"].combine_chunks(), table["unit"].combine_chunks(), table["value"])
    assert norm.ok.all()
    kinds = np.array(table["kind"].to_pylist())
    for kind, spec in KINDS.items():
        vals = norm.values[kinds == kind.value]
        assert (vals >= spec.low).all()
        assert (vals <= spec.high).all()
    for rec in chunk.legacy:
        spec = KINDS[rec["kind"]]
        assert spec.low <= rec["value"] <= spec.high


def _mean_by_sensor(plant: Plant, chunk: Chunk) -> dict[tuple[str, str], float]:
    sums: dict[tuple[str, str], list[float]] = {}
    for m in plant.machines:
        if m.legacy:
            continue
        for s in m.sensors:
            _, v = series(chunk, plant, m.machine_id, s.sensor_id)
            sums.setdefault((m.machine_type, s.sensor_id), []).append(float(v.mean()))
    return {k: float(np.mean(v)) for k, v in sums.items()}


def test_levels_match_the_documented_nominals() -> None:
    plant = build_plant(40, seed=1)
    # 07:00 to 09:00 UTC: the daily pattern averages its mean load 0.65
    chunk = run(plant, seed=2, rate=0.1, seconds=7200.0, start=S - 3600.0)
    means = _mean_by_sensor(plant, chunk)
    nominal = {(m.machine_type, s.sensor_id): s.nominal for m in plant.machines for s in m.sensors}
    assert len(means) == 24
    for key, mean in means.items():
        assert mean == pytest.approx(nominal[key], rel=0.05), key


def test_press_and_compressor_cycles() -> None:
    plant = build_plant(4, seed=0)
    chunk = run(plant, seed=2, rate=4.0, seconds=600.0)
    _, p = series(chunk, plant, "L1-PRESS-03", "pressure_hydraulic")
    _, i = series(chunk, plant, "L1-PRESS-03", "current")
    assert 55 < p.min() < 65
    assert 175 < p.max() < 185
    assert i.max() <= 1.1 * 60.0
    assert np.corrcoef(p, i)[0, 1] > 0.9  # current follows the stroke
    spectrum = np.abs(np.fft.rfft(p - p.mean()))
    freq = np.fft.rfftfreq(len(p), d=0.25)
    assert freq[int(np.argmax(spectrum))] == pytest.approx(1 / 6.0, rel=0.02)
    _, pc_ = series(chunk, plant, "L1-COMP-04", "pressure_discharge")
    _, ic = series(chunk, plant, "L1-COMP-04", "current")
    assert 6.3 < pc_.min() < 6.7
    assert 7.3 < pc_.max() < 7.7
    loaded = ic > 0.6 * 80.0
    assert np.median(ic[loaded]) == pytest.approx(0.9 * 80.0, rel=0.02)
    assert np.median(ic[~loaded]) == pytest.approx(0.3 * 80.0, rel=0.02)
    assert 0.45 < loaded.mean() < 0.85  # duty cycle 0.45 + 0.35 L


def test_values_are_quantised_to_the_device_resolution() -> None:
    plant = build_plant(8, seed=3)
    chunk = run(plant, seed=2, rate=1.0, seconds=30.0)
    for m in plant.machines:
        for s in m.sensors:
            t = chunk.table
            rows = t.filter(
                pc.and_(
                    pc.equal(t["machine_id"], m.machine_id), pc.equal(t["sensor_id"], s.sensor_id)
                )
            )
            steps = rows["value"].to_numpy() / s.resolution
            assert np.allclose(steps, np.round(steps), atol=1e-6), (m.machine_id, s.sensor_id)
            assert len(set(rows["value"].to_pylist())) > 1  # not constant
