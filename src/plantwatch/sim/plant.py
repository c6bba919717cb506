"""What the simulated plant is made of: machines, their sensors, and what the sensors normally read.

A plant is a few production lines of ten machines each. Every machine is one of four types
(centrifugal pump, motor-driven fan, hydraulic press, air compressor) and carries the sensors a
maintenance engineer would fit to that type. Nothing here moves: this module is the static
description; :mod:`plantwatch.sim.simulator` makes it run.

Levels are given at the *mean load* ``L = 0.65`` (see :data:`MEAN_LOAD`); the load ``L`` is the
fraction of rated duty a machine is doing, between 0.2 and 1.0. The formulas in each sensor's
comment are what :mod:`plantwatch.sim._physics` computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plantwatch.core.errors import ConfigError
from plantwatch.core.kinds import KINDS, SensorKind
from plantwatch.core.units import Conversion, conversion

#: The four machine types, in the round-robin order :func:`build_plant` uses.
MACHINE_TYPES: tuple[str, ...] = (
    "centrifugal_pump",
    "motor_fan",
    "hydraulic_press",
    "air_compressor",
)
_ABBREV = {
    "centrifugal_pump": "PUMP",
    "motor_fan": "FAN",
    "hydraulic_press": "PRESS",
    "air_compressor": "COMP",
}
_TITLE = {
    "centrifugal_pump": "centrifugal pump",
    "motor_fan": "motor fan",
    "hydraulic_press": "hydraulic press",
    "air_compressor": "air compressor",
}

#: Nameplate current of each type's motor, in A.
RATED_CURRENT_A: dict[str, float] = {
    "centrifugal_pump": 40.0,
    "motor_fan": 25.0,
    "hydraulic_press": 60.0,
    "air_compressor": 80.0,
}
LINE_VOLTAGE_V = 400.0  # three-phase supply, line to line
POWER_FACTOR = 0.85
MEAN_LOAD = 0.65  # the daily mean of the load L, at which nominal levels are quoted
MACHINES_PER_LINE = 10
NON_CANONICAL_SHARE = 0.4  # of sensors whose kind has alternative device units (≈20% of all)

#: Device units a non-canonical sensor may report in, per kind (all convertible by core.units).
ALTERNATIVE_UNITS: dict[SensorKind, tuple[str, ...]] = {
    SensorKind.VIBRATION: ("in/s",),
    SensorKind.TEMPERATURE: ("K", "°F"),
    SensorKind.PRESSURE: ("kPa", "psi"),
}


def electrical_power_kw(voltage_v: Any, current_a: Any) -> Any:
    """Active power of a three-phase motor: √3 · V · I · cos φ / 1000, in kW (arrays too)."""
    return math.sqrt(3.0) * voltage_v * current_a * POWER_FACTOR / 1000.0


def _running_current(rated: float, load: float) -> float:
    return rated * (0.35 + 0.65 * load)


def _compressor_current(rated: float, load: float) -> float:
    duty = 0.45 + 0.35 * load
    return rated * (0.3 + 0.6 * duty)


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One sensor as fitted: what it measures and how the device reports it.

    ``unit`` is the *device* unit, what the device puts on the wire (may be °F, psi, in/s, K or
    kPa); ``nominal`` and ``noise`` (one standard deviation of white measurement noise) are in
    the *canonical* unit of ``kind``. ``resolution`` is the device's quantisation step, in the
    device unit.
    """

    sensor_id: str
    kind: SensorKind
    unit: str
    nominal: float
    noise: float
    resolution: float

    @property
    def conversion(self) -> Conversion:
        """Device unit to canonical unit: ``canonical = device * scale + offset``."""
        return conversion(self.kind, self.unit)

    def to_device(self, canonical: float) -> float:
        """A canonical value as this device reports it (before quantisation)."""
        conv = self.conversion
        return (canonical - conv.offset) / conv.scale

    def to_canonical(self, device: float) -> float:
        conv = self.conversion
        return device * conv.scale + conv.offset


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """One machine: identity, type, line, sensors, and whether it reports through the gateway.

    ``legacy`` machines cannot run the edge SDK; a JSON gateway forwards their readings, with
    the defects such gateways have (see :class:`plantwatch.sim.gateway.GatewayIssues`).
    """

    machine_id: str
    machine_type: str
    line: str
    name: str
    sensors: tuple[SensorSpec, ...]
    legacy: bool
    rated_current_a: float
    site: str = "plant-1"

    def sensor(self, sensor_id: str) -> SensorSpec:
        for s in self.sensors:
            if s.sensor_id == sensor_id:
                return s
        known = ", ".join(s.sensor_id for s in self.sensors)
        raise ConfigError(
            f"machine {self.machine_id!r} has no sensor {sensor_id!r}; its sensors: {known}"
        )

    def first_of_kind(self, kind: SensorKind) -> SensorSpec | None:
        """The primary sensor of ``kind`` (the drive-end one for vibration), if fitted."""
        return next((s for s in self.sensors if s.kind is kind), None)


@dataclass(frozen=True, slots=True)
class Plant:
    """All machines of the simulated plant, in a fixed order (the order of every array)."""

    machines: tuple[MachineSpec, ...]
    _by_id: dict[str, MachineSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {m.machine_id: m for m in self.machines}
        if len(by_id) != len(self.machines):
            raise ConfigError("machine ids in a plant must be unique")
        object.__setattr__(self, "_by_id", by_id)

    def machine(self, machine_id: str) -> MachineSpec:
        found = self._by_id.get(machine_id)
        if found is None:
            sample = ", ".join(list(self._by_id)[:6])
            raise ConfigError(
                f"no machine {machine_id!r} in the plant ({len(self.machines)} machines, "
                f"e.g. {sample})"
            )
        return found

    def __contains__(self, machine_id: object) -> bool:
        return machine_id in self._by_id

    @property
    def machine_ids(self) -> tuple[str, ...]:
        return tuple(m.machine_id for m in self.machines)

    @property
    def sensor_count(self) -> int:
        return sum(len(m.sensors) for m in self.machines)

    def registry_rows(self) -> list[dict[str, str]]:
        """One row per machine for the machine registry table."""
        return [
            {
                "machine_id": m.machine_id,
                "machine_type": m.machine_type,
                "line": m.line,
                "site": m.site,
                "name": m.name,
            }
            for m in self.machines
        ]


# (sensor_id, kind, nominal at MEAN_LOAD in canonical units, noise σ, canonical resolution)
_Template = tuple[str, SensorKind, float, float, float]
_V = SensorKind.VIBRATION
_T = SensorKind.TEMPERATURE
_P = SensorKind.PRESSURE
_I = SensorKind.CURRENT
_W = SensorKind.POWER
_L = MEAN_LOAD


def _templates(machine_type: str) -> tuple[_Template, ...]:
    rated = RATED_CURRENT_A[machine_type]
    if machine_type == "centrifugal_pump":
        amps = _running_current(rated, _L)
        return (
            ("vib_de", _V, 1.5 + 0.6 * _L, 0.08, 0.01),  # drive-end bearing
            ("vib_nde", _V, 0.8 * (1.5 + 0.6 * _L), 0.08, 0.01),  # non-drive end: 0.8 × DE
            ("temp_bearing", _T, 25.0 + 20.0 * _L, 0.2, 0.01),  # lags load, τ 5 min
            ("pressure_discharge", _P, 4.0 + 2.0 * _L, 0.05, 0.01),
            ("flow", SensorKind.FLOW, 60.0 + 60.0 * _L, 1.0, 0.1),
            ("current", _I, amps, 0.3, 0.01),  # rated · (0.35 + 0.65 L)
            ("power", _W, electrical_power_kw(LINE_VOLTAGE_V, amps), 0.15, 0.01),
        )
    if machine_type == "motor_fan":
        amps = _running_current(rated, _L)
        return (
            ("vibration", _V, 2.0 + 0.4 * _L, 0.08, 0.01),
            ("temp_winding", _T, 50.0 + 30.0 * _L, 0.2, 0.01),  # lags load, τ 4 min
            ("current", _I, amps, 0.3, 0.01),  # rated · (0.35 + 0.65 L)
            ("voltage", SensorKind.VOLTAGE, LINE_VOLTAGE_V, 1.5, 0.1),
            ("speed", SensorKind.SPEED, 1490.0 - 20.0 * _L, 1.0, 0.1),  # slip grows with load
            ("power", _W, electrical_power_kw(LINE_VOLTAGE_V, amps), 0.15, 0.01),
        )
    if machine_type == "hydraulic_press":
        # stroke s(t) = (1 − cos 2πt/6 s)/2 ∈ [0, 1], mean 0.5
        amps = rated * (0.25 + 0.05 * _L + 0.78 * 0.5)  # peaks at 1.08 × rated
        return (
            ("pressure_hydraulic", _P, 60.0 + 120.0 * 0.5, 1.0, 0.1),  # 60 → 180 bar
            ("temp_oil", _T, 45.0 + 10.0 * _L, 0.2, 0.01),  # lags load, τ 10 min
            ("vibration", _V, 2.5 + 0.6 * 0.5, 0.08, 0.01),  # 2.5 → 3.1 with the stroke
            ("current", _I, amps, 0.3, 0.01),
            ("power", _W, electrical_power_kw(LINE_VOLTAGE_V, amps), 0.15, 0.01),
        )
    if machine_type == "air_compressor":
        # load/unload: loaded a fraction D = 0.45 + 0.35 L of each 60–120 s cycle
        amps = _compressor_current(rated, _L)  # 0.9 × rated loaded, 0.3 × rated unloaded
        duty = 0.45 + 0.35 * _L
        return (
            ("pressure_discharge", _P, 7.0, 0.05, 0.01),  # saw-tooth 6.5 ↔ 7.5 bar
            ("temp_discharge", _T, 80.0 + 10.0 * _L, 0.2, 0.01),  # lags load, τ 3 min
            ("current", _I, amps, 0.3, 0.01),
            ("power", _W, electrical_power_kw(LINE_VOLTAGE_V, amps), 0.15, 0.01),
            ("vibration", _V, 2.2 + 0.2 * duty, 0.08, 0.01),  # 2.2 unloaded, 2.4 loaded
            ("humidity", SensorKind.HUMIDITY, 45.0, 0.5, 0.1),  # intake RH, ±4 slow drift
        )
    raise ConfigError(f"unknown machine type {machine_type!r}; use one of {MACHINE_TYPES}")


def _device_resolution(canonical_resolution: float, scale: float) -> float:
    """A power of ten close to the canonical resolution, expressed in the device unit."""
    return float(10.0 ** math.floor(math.log10(canonical_resolution / scale) + 1e-9))


def _sensor(template: _Template, unit: str | None) -> SensorSpec:
    sensor_id, kind, nominal, noise, resolution = template
    canon = KINDS[kind].unit
    if unit is None or unit == canon:
        return SensorSpec(sensor_id, kind, canon, round(nominal, 4), noise, resolution)
    res = _device_resolution(resolution, conversion(kind, unit).scale)
    return SensorSpec(sensor_id, kind, unit, round(nominal, 4), noise, res)


def build_plant(n_machines: int, seed: int) -> Plant:
    """A plant of ``n_machines`` on lines of ten; the same seed gives the same plant.

    Types go round-robin over :data:`MACHINE_TYPES`; machine ``i`` (from 0) is on line
    ``L{i // 10 + 1}`` and named like ``L1-PUMP-01`` (its position on the line). Every tenth
    machine (``i % 10 == 9``) is a legacy machine behind the JSON gateway. The seed picks which
    non-legacy sensors report in non-canonical device units.
    """
    if n_machines < 1:
        raise ConfigError(f"a plant needs at least one machine, got n_machines={n_machines}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9A17]))
    machines = []
    for i in range(n_machines):
        machine_type = MACHINE_TYPES[i % len(MACHINE_TYPES)]
        line_no, pos = divmod(i, MACHINES_PER_LINE)
        legacy = pos == MACHINES_PER_LINE - 1
        sensors = []
        for template in _templates(machine_type):
            alternatives = ALTERNATIVE_UNITS.get(template[1], ())
            # draw for every sensor so the plant does not shift when one machine changes
            u_pick, u_unit = rng.random(2)
            unit = None
            if alternatives and not legacy and u_pick < NON_CANONICAL_SHARE:
                unit = alternatives[int(u_unit * len(alternatives))]
            sensors.append(_sensor(template, unit))
        machines.append(
            MachineSpec(
                machine_id=f"L{line_no + 1}-{_ABBREV[machine_type]}-{pos + 1:02d}",
                machine_type=machine_type,
                line=f"L{line_no + 1}",
                name=f"Line {line_no + 1} {_TITLE[machine_type]} {pos + 1}",
                sensors=tuple(sensors),
                legacy=legacy,
                rated_current_a=RATED_CURRENT_A[machine_type],
            )
        )
    return Plant(tuple(machines))
