"""The plant running: every sensor of every machine, sampled at a fixed rate, faults included.

Each machine has a load ``L(t)`` between 0.2 and 1.0: a daily pattern
``0.65 + 0.25 · sin(2π (hour_of_day_utc − 8) / 24)`` plus a slow, smooth, mean-reverting random
walk (Ornstein–Uhlenbeck, σ 0.05, 15 min, smoothed over 2 min). Load drives current, power,
flow and vibration at once and temperature through a first-order lag of a few minutes
(:mod:`plantwatch.sim._physics`). Readings get white noise, are converted to the device unit and
quantised to the device resolution.

Determinism: random numbers are drawn per tick, a fixed amount per tick from separate streams,
and state (walk, thermal lag, stuck values) is carried from tick to tick, so the same seed gives
the same readings however time is split into :meth:`Simulator.step` calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from plantwatch.core.errors import ConfigError
from plantwatch.core.kinds import KINDS
from plantwatch.core.reading import READING_SCHEMA, SCHEMA_VERSION, TS_TYPE, Quality
from plantwatch.sim._effects import Effects, apply_sensor_faults, machine_effects
from plantwatch.sim._physics import PHYSICS, PRESS_STROKE_S, THERMAL_TAU_S, Drive
from plantwatch.sim.errors import SimulationError
from plantwatch.sim.faults import SENSOR_FAULTS, Fault
from plantwatch.sim.gateway import GatewayIssues, LegacyGateway
from plantwatch.sim.plant import MEAN_LOAD, Plant, SensorSpec

F64 = npt.NDArray[np.float64]

LOAD_RANGE = (0.2, 1.0)
DAILY_SWING = 0.25
WALK_SIGMA = 0.05  # stationary standard deviation of the load walk
WALK_TAU_S = 900.0  # how fast the walk reverts to the daily pattern
WALK_SMOOTH_S = 120.0  # second lag that takes the corners off the walk


def _stream(seed: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, purpose]))


@dataclass(frozen=True, slots=True)
class Chunk:
    """What :meth:`Simulator.step` produced.

    ``table`` holds the readings of SDK machines (``READING_SCHEMA``, device units, ``seq``
    null); ``legacy`` the gateway's records for legacy machines (defects included);
    ``issue_counts`` how many records got each gateway defect. ``times`` (ticks) and ``load``
    (ticks × machines, plant order) are the tick times and the true load, for evaluation.
    """

    table: pa.Table
    legacy: list[dict[str, Any]]
    ticks: int
    issue_counts: dict[str, int]
    times: F64
    load: F64


@dataclass(frozen=True, slots=True)
class _Group:
    """The machines of one type: their plant positions and, per sensor, the sensor columns."""

    machine_type: str
    machines: npt.NDArray[np.intp]
    columns: dict[str, npt.NDArray[np.intp]]


class Simulator:
    """Deterministic readings of ``plant`` from ``start`` at ``rate_hz``, with ``faults``.

    ``t`` is the simulated time reached so far; ``gateway`` the :class:`LegacyGateway` whose
    :meth:`~LegacyGateway.pick_duplicates` the caller uses after forwarding legacy records.
    """

    def __init__(
        self,
        plant: Plant,
        *,
        start: float,
        rate_hz: float,
        faults: Sequence[Fault],
        seed: int,
        issues: GatewayIssues = GatewayIssues(),  # noqa: B008 (frozen value object)
    ) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ConfigError(f"rate_hz must be a number > 0, got {rate_hz}")
        self.plant = plant
        self.start = float(start)
        self.rate_hz = float(rate_hz)
        self.seed = seed
        self.faults = tuple(faults)
        self.t = self.start
        self._k = 0  # index of the next tick
        self.gateway = LegacyGateway(issues, seed=seed)
        self._layout()
        self._bind_faults()
        params = _stream(seed, 1)
        m = len(plant.machines)
        self._phase = params.random(m)  # where in its own cycle each machine starts
        cycle = 60.0 + 60.0 * params.random(m)  # compressor load/unload period, 60-120 s
        self._period = np.where(self._is_type("hydraulic_press"), PRESS_STROKE_S, cycle)
        self._drift_phase = params.random(m)
        self._drift_period = 3600.0 * (3.0 + 5.0 * params.random(m))
        self._walk = WALK_SIGMA * params.standard_normal(m)  # starts in its stationary state
        self._smooth = self._walk.copy()
        self._thermal: F64 | None = None
        self._stuck: dict[int, float] = {}
        self._noise_rng = _stream(seed, 2)
        self._walk_rng = _stream(seed, 3)
        self._event_rng = _stream(seed, 4)

    # -- layout -----------------------------------------------------------------------------

    def _is_type(self, machine_type: str) -> npt.NDArray[np.bool_]:
        return np.array([m.machine_type == machine_type for m in self.plant.machines])

    def _layout(self) -> None:
        specs: list[SensorSpec] = []
        owner: list[int] = []
        self._column: dict[tuple[str, str], int] = {}
        groups: dict[str, tuple[list[int], dict[str, list[int]]]] = {}
        for mi, machine in enumerate(self.plant.machines):
            members, columns = groups.setdefault(machine.machine_type, ([], {}))
            members.append(mi)
            for spec in machine.sensors:
                self._column[(machine.machine_id, spec.sensor_id)] = len(specs)
                columns.setdefault(spec.sensor_id, []).append(len(specs))
                specs.append(spec)
                owner.append(mi)
        self._groups = [
            _Group(t, np.array(ms, np.intp), {k: np.array(v, np.intp) for k, v in cols.items()})
            for t, (ms, cols) in groups.items()
        ]
        convs = [s.conversion for s in specs]
        self._scale = np.array([c.scale for c in convs])
        self._offset = np.array([c.offset for c in convs])
        self._sigma = np.array([s.noise for s in specs])
        self._low = np.array([KINDS[s.kind].low for s in specs])
        self._high = np.array([KINDS[s.kind].high for s in specs])
        inv = [1.0 / s.resolution for s in specs]
        self._inv_res = np.array([round(x) if abs(x - round(x)) < 1e-6 * x else x for x in inv])
        low_dev = np.where(
            -9999.0 * self._scale + self._offset < self._low,
            -9999.0,
            self._to_device(self._low * 10),
        )
        self._glitch = np.stack([low_dev, self._to_device(self._high * 10.0)])
        self._current_col = np.array(
            [self._column[(m.machine_id, "current")] for m in self.plant.machines], np.intp
        )
        legacy = np.array([self.plant.machines[o].legacy for o in owner], np.bool_)
        self._live = np.flatnonzero(~legacy)
        self._legacy = np.flatnonzero(legacy)
        mids = [self.plant.machines[o].machine_id for o in owner]
        self._legacy_sensors = [(mids[c], specs[c]) for c in self._legacy]
        live = [(mids[c], specs[c]) for c in self._live]
        self._live_strings = {
            "machine_id": pa.array([m for m, _ in live], pa.string()),
            "sensor_id": pa.array([s.sensor_id for _, s in live], pa.string()),
            "kind": pa.array([s.kind.value for _, s in live], pa.string()),
            "unit": pa.array([s.unit for _, s in live], pa.string()),
        }
        tau = np.array([THERMAL_TAU_S[m.machine_type] for m in self.plant.machines])
        dt = 1.0 / self.rate_hz
        self._thermal_keep = np.exp(-dt / tau)

    def _bind_faults(self) -> None:
        index = {m.machine_id: i for i, m in enumerate(self.plant.machines)}
        self._machine_faults: list[tuple[Fault, int]] = []
        self._sensor_faults: list[tuple[int, Fault, int]] = []
        for number, fault in enumerate(self.faults):
            col = self._column.get((fault.machine_id, fault.sensor_id))
            if col is None:
                raise ConfigError(
                    f"fault {fault.kind} names {fault.machine_id}/{fault.sensor_id}, which is "
                    "not a sensor of this plant"
                )
            if fault.kind in SENSOR_FAULTS:
                self._sensor_faults.append((number, fault, col))
            else:
                self._machine_faults.append((fault, index[fault.machine_id]))

    def _to_device(self, canonical: F64) -> F64:
        device: F64 = (canonical - self._offset) / self._scale
        return device

    # -- time -------------------------------------------------------------------------------

    def _tick_time(self, k: int) -> float:
        return self.start + k / self.rate_hz

    def _first_tick_at(self, until: float) -> int:
        """The smallest tick index whose time is >= ``until``."""
        k = max(self._k, math.ceil((until - self.start) * self.rate_hz))
        while k > self._k and self._tick_time(k - 1) >= until:
            k -= 1
        while self._tick_time(k) < until:
            k += 1
        return k

    def _advance(self, t: F64, eps: F64) -> tuple[F64, F64]:
        """Load and thermally lagged load (ticks × machines).

        The two recursions run tick by tick over all machines at once; everything else is
        computed for the whole chunk.
        """
        dt = 1.0 / self.rate_hz
        keep = math.exp(-dt / WALK_TAU_S)
        smooth = math.exp(-dt / WALK_SMOOTH_S)
        kicks = eps * (WALK_SIGMA * math.sqrt(1.0 - keep * keep))
        walk, sm = self._walk, self._smooth
        smoothed = np.empty_like(eps)
        for k in range(len(t)):
            walk = keep * walk + kicks[k]
            sm = smooth * sm + (1.0 - smooth) * walk
            smoothed[k] = sm
        self._walk, self._smooth = walk, sm
        daily = [  # scalar math: the same bits whatever the chunk length
            MEAN_LOAD
            + DAILY_SWING * math.sin(2.0 * math.pi * (math.fmod(x, 86400.0) / 3600.0 - 8.0) / 24.0)
            for x in t.tolist()
        ]
        load = np.clip(np.array(daily)[:, None] + smoothed, *LOAD_RANGE)
        thermal = np.empty_like(load)
        tk = self._thermal_keep
        gain = 1.0 - tk
        if len(t) == 0:
            return load, thermal
        th = load[0] if self._thermal is None else self._thermal
        for k in range(len(t)):
            th = tk * th + gain * load[k]
            thermal[k] = th
        self._thermal = th
        return load, thermal

    # -- generation -------------------------------------------------------------------------

    def step(self, until: float) -> Chunk:
        """Readings for each tick ``start + k / rate_hz`` in ``[self.t, until)``; then t = until."""
        if until < self.t:
            raise SimulationError(f"time runs forward: step({until}) after t={self.t}")
        k0, k1 = self._k, self._first_tick_at(until)
        t = self.start + np.arange(k0, k1, dtype=np.float64) / self.rate_hz
        n_ticks, n_sensors, n_machines = len(t), len(self._sigma), len(self.plant.machines)
        noise = self._noise_rng.standard_normal((n_ticks, n_sensors))
        draws = self._event_rng.random((n_ticks, n_sensors, 2))
        load, thermal = self._advance(t, self._walk_rng.standard_normal((n_ticks, n_machines)))
        fx = machine_effects(t, self._machine_faults, draws[:, self._current_col], n_machines)
        canonical = self._physics(t, load, thermal, fx)
        canonical += noise * self._sigma
        np.clip(canonical, self._low, self._high, out=canonical)
        values = np.rint(self._to_device(canonical) * self._inv_res) / self._inv_res
        emit = np.ones(values.shape, np.bool_)
        apply_sensor_faults(
            t, values, emit, self._sensor_faults, draws, self._glitch, self._stuck
        )  # fmt: skip
        ts_ms = np.rint(t * 1000.0).astype(np.int64)
        legacy, counts = self.gateway.records(
            ts_ms, values[:, self._legacy], emit[:, self._legacy], self._legacy_sensors
        )
        self._k, self.t = k1, float(until)
        return Chunk(
            table=self._table(ts_ms, values[:, self._live], emit[:, self._live]),
            legacy=legacy,
            ticks=n_ticks,
            issue_counts=counts,
            times=t,
            load=load,
        )

    def _physics(self, t: F64, load: F64, thermal: F64, fx: Effects) -> F64:
        out = np.empty((len(t), len(self._sigma)))
        tcol = t[:, None]
        for g in self._groups:
            ms = g.machines
            drive = Drive(
                t=tcol,
                load=load[:, ms],
                thermal=thermal[:, ms],
                rated=np.array([self.plant.machines[i].rated_current_a for i in ms]),
                phase=self._phase[ms],
                period=self._period[ms],
                drift_phase=self._drift_phase[ms],
                drift_period=self._drift_period[ms],
                fx=fx.take(ms),
            )
            for sensor_id, level in PHYSICS[g.machine_type](drive).items():
                out[:, g.columns[sensor_id]] = level
        return out

    def _table(self, ts_ms: npt.NDArray[np.int64], values: F64, emit: npt.NDArray[np.bool_]) -> Any:
        n_ticks, n_cols = values.shape
        keep = emit.ravel()
        which = pa.array(np.tile(np.arange(n_cols, dtype=np.int32), n_ticks)[keep])
        rows = len(which)
        columns = {name: arr.take(which) for name, arr in self._live_strings.items()}
        return pa.table(
            {
                "machine_id": columns["machine_id"],
                "sensor_id": columns["sensor_id"],
                "kind": columns["kind"],
                "value": pa.array(values.ravel()[keep], pa.float64()),
                "unit": columns["unit"],
                "ts": pa.array(np.repeat(ts_ms, n_cols)[keep], TS_TYPE),
                "seq": pa.nulls(rows, pa.uint64()),
                "quality": pa.repeat(pa.scalar(Quality.GOOD.value, pa.string()), rows),
                "schema_version": pa.array(np.full(rows, SCHEMA_VERSION, np.uint8)),
            },
            schema=READING_SCHEMA,
        )
