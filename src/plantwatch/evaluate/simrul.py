"""Remaining useful life on the simulator's bearing wear: how long until the bearing fails.

The simulator's ``bearing_wear`` fault (:mod:`plantwatch.sim.faults`) multiplies every vibration
sensor of a machine by ``1 + 3.5 p²`` over the fault window ``[start, end)``, ``p`` going from 0
to 1, and from half-way raises the temperature sensor by up to 20 °C. Here **failure is the end
of the fault window** (``p = 1``): a run-to-failure history of one machine is its readings from
the run start (healthy) up to that moment, and the true time to failure of a moment ``t`` is
``end − t``, in minutes.

How a history is made (:func:`simulate_histories`): a plant from :func:`~plantwatch.sim.build_plant`
in which every machine with the edge SDK (legacy gateway machines are left out) gets one
explicit bearing-wear :class:`~plantwatch.sim.Fault`, starting 30–90 min into the run and
lasting between ``wear_minutes`` bounds (seeded draws). :class:`~plantwatch.sim.Simulator`
produces the readings as Arrow tables, without Kafka. They are converted to canonical units and
averaged into fixed windows (``window_s``, 60 s by default) with one ``np.bincount`` over
``(sensor, window)`` keys. Two health indicators per machine, the same for every machine type:

* ``vib_ratio`` — the primary vibration sensor's window mean over its mean in the first
  :data:`BASELINE_WINDOWS` windows of the run (always healthy: wear starts after 30 min);
* ``temp_rise`` — the temperature sensor's window mean minus its baseline, in °C.

Windows ending after the failure are dropped. The RUL features are those of C-MAPSS, from the
same :func:`plantwatch.detect.rul.rul_features` (last, mean, least-squares slope and std over
the last ``feature_window`` windows, no age: the run start means nothing for a bearing), and
the same :class:`~plantwatch.detect.rul.RulRegressor`, with the target capped at the longest
wear duration (before the wear starts the RUL cannot be known).

:func:`simulator_rul` trains on the machines of ``train_plants`` simulated plants and tests on
one held-out plant (other seeds, so other loads, durations and noise): RMSE in minutes over
every test window inside the wear window, and per test machine the true and predicted time to
failure at 50 %, 75 % and 90 % of its wear window.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from plantwatch.detect.rul import F64, RulRegressor, rmse, rul_features
from plantwatch.evaluate.report import Report

I64 = npt.NDArray[np.int64]

RUN_START = 1_735_689_600.0  # 2025-01-01T00:00:00Z; each run shifts it by a seeded few hours
BASELINE_WINDOWS = 20
WEAR_START_MIN = (30.0, 90.0)
CHECKPOINTS: tuple[float, ...] = (0.5, 0.75, 0.9)
HEALTH: tuple[str, ...] = ("vib_ratio", "temp_rise")


@dataclass(frozen=True, slots=True)
class Histories:
    """Run-to-failure histories of several machines, one row per window, runs contiguous.

    ``run`` is the machine's run number, ``values`` the health indicators (:data:`HEALTH`),
    ``ttf_min`` the true time to failure at the window's end, ``progress`` the wear progress
    ``p`` there (negative before the wear starts). Per run: ``machine``, ``machine_type``,
    ``wear_min`` (the wear window's length).
    """

    run: I64
    values: F64
    ttf_min: F64
    progress: F64
    machine: list[str]
    machine_type: list[str]
    wear_min: F64

    @staticmethod
    def concat(parts: list[Histories]) -> Histories:
        offset = np.cumsum([0] + [len(p.machine) for p in parts])
        return Histories(
            run=np.concatenate([p.run + o for p, o in zip(parts, offset, strict=False)]),
            values=np.concatenate([p.values for p in parts]),
            ttf_min=np.concatenate([p.ttf_min for p in parts]),
            progress=np.concatenate([p.progress for p in parts]),
            machine=[m for p in parts for m in p.machine],
            machine_type=[t for p in parts for t in p.machine_type],
            wear_min=np.concatenate([p.wear_min for p in parts]),
        )


def simulate_histories(
    seed: int,
    *,
    machines: int = 12,
    wear_minutes: tuple[float, float] = (60.0, 240.0),
    rate_hz: float = 1.0,
    window_s: float = 60.0,
) -> Histories:
    """One simulated plant of ``machines`` whose SDK machines all wear a bearing to failure."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from plantwatch.core.kinds import SensorKind
    from plantwatch.sim import Fault, FaultKind, Simulator, build_plant

    plant = build_plant(machines, seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB0A7]))
    start = RUN_START + 3600.0 * float(rng.integers(0, 24))
    live = [m for m in plant.machines if not m.legacy]
    faults: list[Fault] = []
    keys: list[str] = []
    scale, offset = [], []
    for m in live:
        begin = start + 60.0 * rng.uniform(*WEAR_START_MIN)
        wear = 60.0 * rng.uniform(*wear_minutes)
        vib = m.first_of_kind(SensorKind.VIBRATION)
        temp = m.first_of_kind(SensorKind.TEMPERATURE)
        if vib is None or temp is None:  # every simulated type has both; be explicit anyway
            raise ValueError(f"{m.machine_id} lacks a vibration or temperature sensor")
        faults.append(
            Fault(m.machine_id, vib.sensor_id, FaultKind.BEARING_WEAR, begin, begin + wear)
        )
        for spec in (vib, temp):
            keys.append(f"{m.machine_id}/{spec.sensor_id}")
            scale.append(spec.conversion.scale)
            offset.append(spec.conversion.offset)
    end = max(f.end for f in faults)
    n_win = int(np.ceil((end - start) / window_s))
    sums = np.zeros(len(keys) * n_win)
    counts = np.zeros(len(keys) * n_win)
    sim = Simulator(plant, start=start, rate_hz=rate_hz, faults=faults, seed=seed)
    key_set = pa.array(keys, pa.string())
    t = start
    while t < end:  # hour-long chunks keep memory small
        t = min(end, t + 3600.0)
        table = sim.step(t).table
        key = pc.binary_join_element_wise(table["machine_id"], table["sensor_id"], "/")
        idx = pc.index_in(key, value_set=key_set).fill_null(-1).to_numpy()
        keep = idx >= 0
        k = idx[keep].astype(np.int64)
        ts = table["ts"].cast("int64").to_numpy()[keep] / 1000.0
        w = np.minimum(((ts - start) // window_s).astype(np.int64), n_win - 1)
        v = table["value"].to_numpy()[keep] * np.asarray(scale)[k] + np.asarray(offset)[k]
        flat = k * n_win + w
        sums += np.bincount(flat, weights=v, minlength=len(sums))
        counts += np.bincount(flat, minlength=len(counts))
    means = (sums / np.where(counts > 0, counts, np.nan)).reshape(len(keys), n_win)
    win_end = start + window_s * (np.arange(n_win) + 1.0)
    parts_run, parts_val, parts_ttf, parts_p = [], [], [], []
    for r, f in enumerate(faults):
        n = int(np.searchsorted(win_end, f.end, side="right"))  # windows ending by the failure
        vib_mean, temp_mean = means[2 * r, :n], means[2 * r + 1, :n]
        base_v = np.nanmean(vib_mean[:BASELINE_WINDOWS])
        base_t = np.nanmean(temp_mean[:BASELINE_WINDOWS])
        parts_val.append(np.column_stack([vib_mean / base_v, temp_mean - base_t]))
        parts_run.append(np.full(n, r, np.int64))
        parts_ttf.append((f.end - win_end[:n]) / 60.0)
        parts_p.append((win_end[:n] - f.start) / f.duration)
    return Histories(
        run=np.concatenate(parts_run),
        values=np.concatenate(parts_val),
        ttf_min=np.concatenate(parts_ttf),
        progress=np.concatenate(parts_p),
        machine=[m.machine_id for m in live],
        machine_type=[m.machine_type for m in live],
        wear_min=np.array([f.duration / 60.0 for f in faults]),
    )


def simulator_rul(
    seed: int = 1,
    *,
    train_plants: int = 8,
    machines: int = 12,
    wear_minutes: tuple[float, float] = (60.0, 240.0),
    rate_hz: float = 1.0,
    window_s: float = 60.0,
    feature_window: int = 30,
) -> Report:
    """Train a RUL model on ``train_plants`` simulated plants, test it on one more (see the
    module docstring); one row per test machine."""
    t0 = time.perf_counter()
    opts: dict[str, Any] = {
        "machines": machines,
        "wear_minutes": wear_minutes,
        "rate_hz": rate_hz,
        "window_s": window_s,
    }
    train = Histories.concat(
        [simulate_histories(seed * 1000 + i, **opts) for i in range(train_plants)]
    )
    test = simulate_histories(seed * 1000 + 999, **opts)
    cap = float(wear_minutes[1])
    x_train = rul_features(train.values, train.run, window=feature_window, age=False)
    model = RulRegressor(cap=cap, seed=seed).fit(x_train, train.ttf_min)
    x_test = rul_features(test.values, test.run, window=feature_window, age=False)
    pred = model.predict(x_test)
    wearing = test.progress >= 0
    late = test.progress >= 0.5
    rows: list[Sequence[Any]] = []
    point_true: list[float] = []
    point_pred: list[float] = []
    per_machine: list[dict[str, Any]] = []
    for r, (mid, mtype) in enumerate(zip(test.machine, test.machine_type, strict=True)):
        idx = np.flatnonzero(test.run == r)
        row: list[Any] = [mid, mtype, float(test.wear_min[r])]
        errs = []
        points = {}
        for q in CHECKPOINTS:
            i = idx[min(len(idx) - 1, int(np.searchsorted(test.progress[idx], q)))]
            true, guess = float(test.ttf_min[i]), float(pred[i])
            row += [true, guess]
            errs.append(guess - true)
            point_true.append(true)
            point_pred.append(guess)
            points[f"{q:.0%}"] = {"true_min": true, "predicted_min": guess}
        row.append(float(np.mean(np.abs(errs))))
        rows.append(row)
        sel = idx[wearing[idx]]
        per_machine.append(
            {
                "machine": mid,
                "machine_type": mtype,
                "wear_min": float(test.wear_min[r]),
                "rmse_in_wear_min": rmse(pred[sel], test.ttf_min[sel]),
                "checkpoints": points,
            }
        )
    columns = ["machine", "type", "wear min"]
    for q in CHECKPOINTS:
        columns += [f"true TTF@{q:.0%}", f"pred@{q:.0%}"]
    columns.append("mean |error| min")
    return Report(
        title="Simulator bearing wear: time to failure (minutes), held-out plant",
        columns=columns,
        rows=rows,
        summary={
            "RMSE in wear window (min)": rmse(pred[wearing], test.ttf_min[wearing]),
            "RMSE, second half of wear (min)": rmse(pred[late], test.ttf_min[late]),
            "RMSE at 50/75/90 % (min)": rmse(point_pred, point_true),
            "test machines": len(test.machine),
            "train machines": len(train.machine),
            "seconds": round(time.perf_counter() - t0, 1),
        },
        details={
            "failure": "end of the bearing_wear fault window (progress p = 1)",
            "health_indicators": list(HEALTH),
            "cap_min": cap,
            "feature_window_windows": feature_window,
            "window_s": window_s,
            "rate_hz": rate_hz,
            "seed": seed,
            "train_plants": train_plants,
            "machines": per_machine,
        },
    )
