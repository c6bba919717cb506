"""Each fault kind changes readings inside its window, as documented, and nothing outside it.

A faulted run is compared with a clean run of the same seed: the random draws do not depend on
the faults, so outside the fault windows both runs must be identical to the last bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from plantwatch.core.kinds import KINDS
from plantwatch.sim import Chunk, Fault, FaultKind, GatewayIssues, Plant, Simulator, build_plant

S = 1_709_280_000.0  # 2024-03-01T08:00:00Z
HOUR = 3600.0
M0, M1 = S + 900.0, S + 2700.0  # machine fault window
S0, S1 = S + 1200.0, S + 1800.0  # sensor fault window

FAULTS = (
    Fault("L1-PUMP-01", "vib_de", FaultKind.BEARING_WEAR, M0, M1),
    Fault("L1-FAN-02", "temp_winding", FaultKind.OVERHEATING, M0, M1),
    Fault("L1-PRESS-03", "pressure_hydraulic", FaultKind.PRESSURE_LEAK, M0, M1),
    Fault("L1-COMP-04", "pressure_discharge", FaultKind.PRESSURE_LEAK, M0, M1),
    Fault("L1-PUMP-05", "current", FaultKind.ELECTRICAL, M0, M1),
    Fault("L1-FAN-06", "current", FaultKind.ELECTRICAL, M0, M1),
    Fault("L1-PRESS-07", "pressure_hydraulic", FaultKind.STUCK, S0, S1),
    Fault("L1-COMP-08", "vibration", FaultKind.DROPOUT, S0, S1),
    Fault("L1-PUMP-09", "temp_bearing", FaultKind.GLITCH, S0, S1),
    Fault("L1-FAN-10", "temp_winding", FaultKind.GLITCH, S0, S1),  # legacy, via the gateway
    Fault("L2-PRESS-01", "vibration", FaultKind.STUCK, S0, S1),
)


@pytest.fixture(scope="module")
def runs() -> tuple[Plant, Chunk, Chunk]:
    plant = build_plant(12, seed=21)

    def one(faults: tuple[Fault, ...]) -> Chunk:
        sim = Simulator(
            plant, start=S, rate_hz=1.0, faults=faults, seed=5, issues=GatewayIssues.none()
        )
        return sim.step(S + HOUR)

    return plant, one(FAULTS), one(())


def series(chunk: Chunk, plant: Plant, machine_id: str, sensor_id: str) -> tuple[Any, Any]:
    """(times in s, values in canonical units) of one sensor, SDK or legacy."""
    spec = plant.machine(machine_id).sensor(sensor_id)
    conv = spec.conversion
    if plant.machine(machine_id).legacy:
        recs = [
            r for r in chunk.legacy if r["machine_id"] == machine_id and r["sensor_id"] == sensor_id
        ]
        stamps = np.array([r["ts"].rstrip("Z") for r in recs], dtype="datetime64[ms]")
        times = stamps.astype(np.int64)
        values = np.array([r["value"] for r in recs])
        return times / 1000.0, values * conv.scale + conv.offset
    t = chunk.table
    rows = t.filter(
        pc.and_(pc.equal(t["machine_id"], machine_id), pc.equal(t["sensor_id"], sensor_id))
    )
    times = rows["ts"].cast(pa.int64()).to_numpy() / 1000.0
    return times, rows["value"].to_numpy() * conv.scale + conv.offset


def both(runs: tuple[Plant, Chunk, Chunk], machine_id: str, sensor_id: str) -> tuple[Any, Any, Any]:
    plant, faulty, clean = runs
    t, bad = series(faulty, plant, machine_id, sensor_id)
    t_clean, good = series(clean, plant, machine_id, sensor_id)
    assert np.array_equal(t, t_clean)
    return t, bad, good


def test_nothing_changes_outside_the_fault_windows(runs: tuple[Plant, Chunk, Chunk]) -> None:
    plant, faulty, clean = runs
    for m in plant.machines:
        windows = [(f.start, f.end) for f in FAULTS if f.machine_id == m.machine_id]
        for s in m.sensors:
            t_bad, bad = series(faulty, plant, m.machine_id, s.sensor_id)
            t_good, good = series(clean, plant, m.machine_id, s.sensor_id)
            outside_good = np.ones(len(t_good), bool)
            outside_bad = np.ones(len(t_bad), bool)
            for a, b in windows:
                outside_good &= ~((t_good >= a) & (t_good < b))
                outside_bad &= ~((t_bad >= a) & (t_bad < b))
            assert np.array_equal(t_bad[outside_bad], t_good[outside_good])
            assert np.array_equal(bad[outside_bad], good[outside_good]), (m.machine_id, s.sensor_id)


def _in(t: Any, a: float, b: float) -> Any:
    return (t >= a) & (t < b)


def test_bearing_wear_vibration_first_then_heat(runs: tuple[Plant, Chunk, Chunk]) -> None:
    for sensor in ("vib_de", "vib_nde"):
        t, bad, good = both(runs, "L1-PUMP-01", sensor)
        late = _in(t, M0 + 0.9 * (M1 - M0), M1)
        early = _in(t, M0, M0 + 0.1 * (M1 - M0))
        # 1 + 3.5 p² averaged over p from 0.9 to 1
        assert (bad[late] / good[late]).mean() == pytest.approx(4.16, rel=0.05)
        assert (bad[early] / good[early]).mean() < 1.1
    t, bad, good = both(runs, "L1-PUMP-01", "temp_bearing")
    first_half = _in(t, M0, M0 + 0.5 * (M1 - M0))
    assert np.array_equal(bad[first_half], good[first_half])
    rise = bad - good
    last = _in(t, M0 + 0.95 * (M1 - M0), M1)
    three_quarters = _in(t, M0 + 0.7 * (M1 - M0), M0 + 0.8 * (M1 - M0))
    assert 18.0 < rise[last].mean() < 21.0
    assert 7.0 < rise[three_quarters].mean() < 13.0


def test_overheating_approaches_plus_45(runs: tuple[Plant, Chunk, Chunk]) -> None:
    t, bad, good = both(runs, "L1-FAN-02", "temp_winding")
    rise = bad - good
    span = M1 - M0
    assert rise[_in(t, M0, M0 + 0.01 * span)].mean() < 5.0
    assert 25.0 < rise[_in(t, M0 + 0.19 * span, M0 + 0.21 * span)].mean() < 32.0  # 1 - 1/e
    assert 43.0 < rise[_in(t, M0 + 0.9 * span, M1)].mean() < 46.0


@pytest.mark.parametrize(
    ("machine_id", "sensor_id"),
    [("L1-PRESS-03", "pressure_hydraulic"), ("L1-COMP-04", "pressure_discharge")],
)
def test_pressure_leak(runs: tuple[Plant, Chunk, Chunk], machine_id: str, sensor_id: str) -> None:
    t, bad, good = both(runs, machine_id, sensor_id)
    leaking = _in(t, M0 + 0.1 * (M1 - M0), M1)
    assert bad[leaking].mean() <= 0.75 * good[leaking].mean()
    _, cur_bad, cur_good = both(runs, machine_id, "current")
    assert cur_bad[leaking].mean() / cur_good[leaking].mean() == pytest.approx(1.25, abs=0.03)
    _, pow_bad, pow_good = both(runs, machine_id, "power")
    assert pow_bad[leaking].mean() / pow_good[leaking].mean() == pytest.approx(1.25, abs=0.03)


def test_electrical_current_spikes(runs: tuple[Plant, Chunk, Chunk]) -> None:
    t, bad, good = both(runs, "L1-PUMP-05", "current")
    window = _in(t, M0, M1)
    assert bad[window].max() >= 2.0 * 40.0
    hit = window & (bad > 1.5 * good)
    assert 0.10 < hit.sum() / window.sum() < 0.20
    ratio = bad[hit] / good[hit]
    assert ratio.min() > 1.8
    assert ratio.max() < 3.2
    _, pbad, pgood = both(runs, "L1-PUMP-05", "power")
    assert (pbad[hit] / pgood[hit]).mean() > 1.8  # power follows


def test_electrical_voltage_sags_on_the_hit_readings(runs: tuple[Plant, Chunk, Chunk]) -> None:
    t, cur_bad, cur_good = both(runs, "L1-FAN-06", "current")
    _, v_bad, v_good = both(runs, "L1-FAN-06", "voltage")
    hit = _in(t, M0, M1) & (cur_bad > 1.5 * cur_good)
    sag = 1.0 - v_bad[hit] / v_good[hit]
    assert hit.sum() > 100
    assert sag.min() > 0.04
    assert sag.max() < 0.11
    quiet = _in(t, M0, M1) & ~hit
    assert np.array_equal(v_bad[quiet], v_good[quiet])


@pytest.mark.parametrize(
    ("machine_id", "sensor_id"),
    [("L1-PRESS-07", "pressure_hydraulic"), ("L2-PRESS-01", "vibration")],
)
def test_stuck_repeats_the_value_at_fault_start(
    runs: tuple[Plant, Chunk, Chunk], machine_id: str, sensor_id: str
) -> None:
    faulty = runs[1]
    t, bad, good = both(runs, machine_id, sensor_id)
    window = _in(t, S0, S1)
    assert window.sum() == 600
    assert bad[window][0] == good[window][0]
    assert len(set(bad[window].tolist())) == 1  # the very same float every reading
    raw = faulty.table.filter(
        pc.and_(
            pc.equal(faulty.table["machine_id"], machine_id),
            pc.equal(faulty.table["sensor_id"], sensor_id),
        )
    )["value"].to_numpy()
    assert len(set(raw[window].tolist())) == 1
    assert len(set(good[window].tolist())) > 10
    assert bad[~window & (t >= S1)].std() > 0  # repaired at the end


def test_dropout_sends_nothing_in_the_window(runs: tuple[Plant, Chunk, Chunk]) -> None:
    plant, faulty, clean = runs
    t, _ = series(faulty, plant, "L1-COMP-08", "vibration")
    t_clean, _ = series(clean, plant, "L1-COMP-08", "vibration")
    assert _in(t, S0, S1).sum() == 0
    assert len(t) == len(t_clean) - 600
    assert t.min() == S
    assert (t >= S1).sum() == (t_clean >= S1).sum()
    other, _ = series(faulty, plant, "L1-COMP-08", "current")  # other sensors keep reporting
    assert _in(other, S0, S1).sum() == 600


@pytest.mark.parametrize(
    ("machine_id", "sensor_id"), [("L1-PUMP-09", "temp_bearing"), ("L1-FAN-10", "temp_winding")]
)
def test_glitch_out_of_range_only_in_the_window(
    runs: tuple[Plant, Chunk, Chunk], machine_id: str, sensor_id: str
) -> None:
    plant = runs[0]
    t, bad, good = both(runs, machine_id, sensor_id)
    spec = KINDS[plant.machine(machine_id).sensor(sensor_id).kind]
    out = (bad < spec.low) | (bad > spec.high)
    window = _in(t, S0, S1)
    assert out[~window].sum() == 0
    assert 10 <= out[window].sum() <= 60  # 5 % of 600
    assert (out[window] | (bad[window] == good[window])).all()  # the others are normal
    assert (bad[out] < spec.low).any()
    assert (bad[out] > spec.high).any()
