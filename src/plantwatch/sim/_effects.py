"""How faults change what sensors read, over a chunk of ticks (rows) and machines or sensors.

Machine faults become multipliers and offsets on the physics (:class:`Effects`); sensor faults
rewrite the readings a device emits (:func:`apply_sensor_faults`). Everything is a function of
the tick time and of the per-tick random draws, so a chunk boundary changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from plantwatch.sim.faults import Fault, FaultKind

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

ELECTRICAL_P = 0.15  # share of current readings hit by an electrical fault
GLITCH_P = 0.05  # share of readings replaced by a glitch
BEARING_VIB_GAIN = 3.5  # vibration × (1 + gain · p²)
BEARING_TEMP_C = 20.0  # reached at the end of the window, from half-way
OVERHEAT_C = 45.0
OVERHEAT_TAU_SHARE = 0.2  # time constant, as a share of the window
LEAK_PRESSURE_DROP = 0.30
LEAK_CURRENT_RISE = 0.25
LEAK_RAMP_SHARE = 0.10  # the leak opens over the first 10 % of the window


@dataclass(frozen=True, slots=True)
class Effects:
    """Per tick (rows) and machine (columns): what machine faults do to the physics.

    ``vib``, ``pressure``, ``current`` multiply the healthy levels; ``temp_add`` is added to the
    temperature in °C; ``elec`` multiplies individual current readings and ``sag`` the voltage on
    those readings (electrical fault).
    """

    vib: F64
    temp_add: F64
    pressure: F64
    current: F64
    elec: F64
    sag: F64

    def take(self, machines: npt.NDArray[np.intp]) -> Effects:
        """The columns of ``machines`` only."""
        return Effects(
            self.vib[:, machines],
            self.temp_add[:, machines],
            self.pressure[:, machines],
            self.current[:, machines],
            self.elec[:, machines],
            self.sag[:, machines],
        )


def _window(t: F64, fault: Fault) -> tuple[int, int]:
    i0, i1 = np.searchsorted(t, [fault.start, fault.end], side="left")
    return int(i0), int(i1)


def machine_effects(
    t: F64, faults: Sequence[tuple[Fault, int]], current_draws: F64, n_machines: int
) -> Effects:
    """Effects of machine faults (each with its machine's column) over ticks ``t``.

    ``current_draws`` (ticks × machines × 2) are the uniform draws of each machine's current
    sensor: the first decides whether a reading is hit, the second how hard.
    """
    shape = (len(t), n_machines)
    fx = Effects(
        np.ones(shape), np.zeros(shape), np.ones(shape), np.ones(shape), np.ones(shape),
        np.ones(shape),
    )  # fmt: skip
    for fault, m in faults:
        i0, i1 = _window(t, fault)
        if i0 == i1:
            continue
        since = t[i0:i1] - fault.start
        p = since / fault.duration
        if fault.kind is FaultKind.BEARING_WEAR:
            fx.vib[i0:i1, m] *= 1.0 + BEARING_VIB_GAIN * p * p
            fx.temp_add[i0:i1, m] += BEARING_TEMP_C * np.maximum(0.0, (p - 0.5) / 0.5)
        elif fault.kind is FaultKind.OVERHEATING:
            tau = OVERHEAT_TAU_SHARE * fault.duration
            fx.temp_add[i0:i1, m] += OVERHEAT_C * (1.0 - np.exp(-since / tau))
        elif fault.kind is FaultKind.PRESSURE_LEAK:
            ramp = np.minimum(1.0, p / LEAK_RAMP_SHARE)
            fx.pressure[i0:i1, m] *= 1.0 - LEAK_PRESSURE_DROP * ramp
            fx.current[i0:i1, m] *= 1.0 + LEAK_CURRENT_RISE * ramp
        elif fault.kind is FaultKind.ELECTRICAL:
            hit_u = current_draws[i0:i1, m, 0]
            hit = hit_u < ELECTRICAL_P
            # conditional on a hit, hit_u / P is uniform on [0, 1): reuse it for the sag depth
            fx.elec[i0:i1, m] *= np.where(hit, 2.0 + current_draws[i0:i1, m, 1], 1.0)
            fx.sag[i0:i1, m] *= np.where(hit, 0.95 - 0.05 * hit_u / ELECTRICAL_P, 1.0)
    return fx


def apply_sensor_faults(
    t: F64,
    values: F64,
    emit: Mask,
    faults: Sequence[tuple[int, Fault, int]],
    draws: F64,
    glitch_values: F64,
    stuck: dict[int, float],
) -> None:
    """Rewrite device readings (ticks × sensors) in place for stuck, glitch and dropout faults.

    ``faults`` holds (fault number, fault, sensor column). ``draws`` (ticks × sensors × 2) are
    the per-reading uniform draws; ``glitch_values`` (2 × sensors) the impossible low and high
    values per sensor, in device units. ``stuck`` remembers, per fault number, the value a stuck
    sensor froze at; it carries over from one chunk to the next.
    """
    for number, fault, col in faults:
        i0, i1 = _window(t, fault)
        if i0 == i1:
            continue
        if fault.kind is FaultKind.STUCK:
            frozen = stuck.setdefault(number, float(values[i0, col]))
            values[i0:i1, col] = frozen
        elif fault.kind is FaultKind.DROPOUT:
            emit[i0:i1, col] = False
        elif fault.kind is FaultKind.GLITCH:
            u = draws[i0:i1, col]
            hit = u[:, 0] >= 1.0 - GLITCH_P  # disjoint from the electrical hits (u < 0.15)
            bad = np.where(u[:, 1] < 0.5, glitch_values[0, col], glitch_values[1, col])
            values[i0:i1, col] = np.where(hit, bad, values[i0:i1, col])
