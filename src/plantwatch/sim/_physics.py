"""What each machine type's sensors would read without noise, in canonical units.

One function per machine type, vectorised over a chunk of ticks (rows) and the machines of that
type (columns). Inputs are the load ``L`` (share of rated duty, 0.2–1.0), the load seen through
the type's thermal lag, and the fault :class:`~plantwatch.sim._effects.Effects`. The nominal
levels in :mod:`plantwatch.sim.plant` are these formulas at ``L = 0.65``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from plantwatch.sim._effects import Effects
from plantwatch.sim.plant import LINE_VOLTAGE_V, electrical_power_kw

F64 = npt.NDArray[np.float64]

#: First-order thermal time constant of each type's temperature sensor, in seconds.
THERMAL_TAU_S: dict[str, float] = {
    "centrifugal_pump": 300.0,  # bearing housing
    "motor_fan": 240.0,  # stator winding
    "hydraulic_press": 600.0,  # oil tank
    "air_compressor": 180.0,  # discharge air
}
PRESS_STROKE_S = 6.0
COMPRESSOR_BAND_BAR = (6.5, 7.5)  # unload at the top, load at the bottom


@dataclass(frozen=True, slots=True)
class Drive:
    """What drives one machine type's sensors over a chunk: ticks × machines of that type.

    ``t`` is a column of epoch seconds; ``phase`` (0–1) and ``period`` (s) set each machine's
    own cycle (press stroke, compressor load/unload); ``drift_phase`` and ``drift_period`` the
    slow intake-humidity drift.
    """

    t: F64
    load: F64
    thermal: F64
    rated: F64
    phase: F64
    period: F64
    drift_phase: F64
    drift_period: F64
    fx: Effects


def _cycle(d: Drive) -> F64:
    """Position in each machine's own cycle, 0 ≤ x < 1."""
    return np.mod(np.mod(d.t, d.period) / d.period + d.phase, 1.0)


def _motor(d: Drive, amps: F64) -> tuple[F64, F64, F64]:
    """Current readings, voltage and power of the drive motor, with electrical faults."""
    current = amps * d.fx.current * d.fx.elec
    voltage = LINE_VOLTAGE_V * d.fx.sag
    return current, voltage, electrical_power_kw(voltage, current)


def pump(d: Drive) -> dict[str, F64]:
    load = d.load
    current, _, power = _motor(d, d.rated * (0.35 + 0.65 * load))
    vib_de = (1.5 + 0.6 * load) * d.fx.vib
    return {
        "vib_de": vib_de,
        "vib_nde": 0.8 * vib_de,
        "temp_bearing": 25.0 + 20.0 * d.thermal + d.fx.temp_add,
        "pressure_discharge": (4.0 + 2.0 * load) * d.fx.pressure,
        "flow": 60.0 + 60.0 * load,
        "current": current,
        "power": power,
    }


def fan(d: Drive) -> dict[str, F64]:
    load = d.load
    current, voltage, power = _motor(d, d.rated * (0.35 + 0.65 * load))
    return {
        "vibration": (2.0 + 0.4 * load) * d.fx.vib,
        "temp_winding": 50.0 + 30.0 * d.thermal + d.fx.temp_add,
        "current": current,
        "voltage": voltage,
        "speed": 1490.0 - 20.0 * load,
        "power": power,
    }


def press(d: Drive) -> dict[str, F64]:
    stroke = 0.5 - 0.5 * np.cos(2.0 * np.pi * _cycle(d))  # 0 at rest, 1 at full force
    current, _, power = _motor(d, d.rated * (0.25 + 0.05 * d.load + 0.78 * stroke))
    return {
        "pressure_hydraulic": (60.0 + 120.0 * stroke) * d.fx.pressure,
        "temp_oil": 45.0 + 10.0 * d.thermal + d.fx.temp_add,
        "vibration": (2.5 + 0.6 * stroke) * d.fx.vib,
        "current": current,
        "power": power,
    }


def compressor(d: Drive) -> dict[str, F64]:
    low, high = COMPRESSOR_BAND_BAR
    duty = 0.45 + 0.35 * d.load  # more air demand, longer loaded
    x = _cycle(d)
    loaded = x < duty
    rising = low + (high - low) * x / duty
    falling = high - (high - low) * (x - duty) / (1.0 - duty)
    current, _, power = _motor(d, d.rated * np.where(loaded, 0.9, 0.3))
    humidity = 45.0 + 4.0 * np.sin(
        2.0 * np.pi * (np.mod(d.t, d.drift_period) / d.drift_period + d.drift_phase)
    )
    return {
        "pressure_discharge": np.where(loaded, rising, falling) * d.fx.pressure,
        "temp_discharge": 80.0 + 10.0 * d.thermal + d.fx.temp_add,
        "current": current,
        "power": power,
        "vibration": (2.2 + 0.2 * loaded) * d.fx.vib,
        "humidity": humidity,
    }


PHYSICS: dict[str, Callable[[Drive], dict[str, F64]]] = {
    "centrifugal_pump": pump,
    "motor_fan": fan,
    "hydraulic_press": press,
    "air_compressor": compressor,
}
