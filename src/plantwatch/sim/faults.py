"""Faults the simulator can inject, each labelled with where and when it acts (the ground truth).

Machine faults act through the physics of the machine (:mod:`plantwatch.sim._effects`); ``p``
below is the progress 0 → 1 through the fault window ``[start, end)``:

* ``bearing_wear``  — every vibration sensor × (1 + 3.5 p²); the temperature sensor rises by
  20 °C · max(0, (p − 0.5) / 0.5): vibration first, heat later. Labels the primary vibration sensor.
* ``overheating``   — the temperature sensor approaches +45 °C, first order, time constant 20 %
  of the window. Labels the temperature sensor.
* ``pressure_leak`` — pressure −30 % (ramped in over the first 10 % of the window), current and
  power +25 %. Only machines with a pressure sensor. Labels the pressure sensor.
* ``electrical``    — each current reading, with probability 0.15, × U(2, 3); the voltage sags
  5–10 % on those readings and power follows. Labels the current sensor.

Sensor faults act on one sensor's readings: ``stuck`` repeats the value it had at fault start,
``dropout`` sends nothing, ``glitch`` replaces 5 % of readings with physically impossible values.
At ``end`` the machine is repaired: readings are normal again.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np

from plantwatch.core.codec import format_ts, parse_ts
from plantwatch.core.errors import ConfigError
from plantwatch.core.kinds import SensorKind
from plantwatch.sim.plant import MachineSpec, Plant


class FaultKind(StrEnum):
    BEARING_WEAR = "bearing_wear"
    OVERHEATING = "overheating"
    PRESSURE_LEAK = "pressure_leak"
    ELECTRICAL = "electrical"
    STUCK = "stuck"
    DROPOUT = "dropout"
    GLITCH = "glitch"


MACHINE_FAULTS: tuple[FaultKind, ...] = (
    FaultKind.BEARING_WEAR,
    FaultKind.OVERHEATING,
    FaultKind.PRESSURE_LEAK,
    FaultKind.ELECTRICAL,
)
SENSOR_FAULTS: tuple[FaultKind, ...] = (FaultKind.STUCK, FaultKind.DROPOUT, FaultKind.GLITCH)

#: The sensor kind a machine fault is labelled with (and must be fitted for the fault to apply).
LABEL_KIND: dict[FaultKind, SensorKind] = {
    FaultKind.BEARING_WEAR: SensorKind.VIBRATION,
    FaultKind.OVERHEATING: SensorKind.TEMPERATURE,
    FaultKind.PRESSURE_LEAK: SensorKind.PRESSURE,
    FaultKind.ELECTRICAL: SensorKind.CURRENT,
}


def _iso(t: float) -> str:
    return format_ts(datetime.fromtimestamp(t, UTC))


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault on one machine, active for epoch seconds ``start <= t < end``.

    ``sensor_id`` is the sensor a detector should point at (see the module docstring).
    """

    machine_id: str
    sensor_id: str
    kind: FaultKind
    start: float
    end: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if not (math.isfinite(self.start) and math.isfinite(self.end) and self.end > self.start):
            raise ConfigError(
                f"fault {self.kind} on {self.machine_id}/{self.sensor_id}: need start < end, "
                f"got start={self.start}, end={self.end}"
            )

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, str]:
        """Ground-truth row: machine, sensor, kind, and ISO 8601 UTC start and end."""
        return {
            "machine": self.machine_id,
            "sensor": self.sensor_id,
            "kind": self.kind.value,
            "start": _iso(self.start),
            "end": _iso(self.end),
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Fault:
        """The inverse of :meth:`to_dict` (times to the millisecond)."""
        return cls(
            start=parse_ts(row["start"]).timestamp(),
            end=parse_ts(row["end"]).timestamp(),
            machine_id=row["machine"],
            sensor_id=row["sensor"],
            kind=FaultKind(row["kind"]),
        )


def _order(f: Fault) -> tuple[float, str, str, str]:
    return (f.start, f.machine_id, f.sensor_id, f.kind.value)


def ground_truth(faults: Iterable[Fault]) -> list[dict[str, str]]:
    """Ground-truth rows (:meth:`Fault.to_dict`) in start order."""
    return [f.to_dict() for f in sorted(faults, key=_order)]


def labelled_sensor(machine: MachineSpec, kind: FaultKind) -> str | None:
    """The sensor a machine fault of ``kind`` on ``machine`` is labelled with.

    ``None`` when the machine cannot have that fault (a leak without a pressure sensor) and for
    sensor faults, which can hit any sensor.
    """
    label = LABEL_KIND.get(kind)
    if label is None:
        return None
    spec = machine.first_of_kind(label)
    return None if spec is None else spec.sensor_id


def eligible(machine: MachineSpec, kind: FaultKind) -> bool:
    return kind in SENSOR_FAULTS or labelled_sensor(machine, kind) is not None


# -- the fault spec ---------------------------------------------------------------------------

GRAMMAR = (
    "fault spec grammar: 'default' | 'none' | ITEM[,ITEM...] where ITEM is KIND:COUNT "
    "(e.g. bearing_wear:3) or KIND@MACHINE[/SENSOR]:START_S+DURATION_S "
    "(e.g. stuck@L1-PUMP-01/vib_de:600+300, seconds from the run start); "
    f"KIND is one of {', '.join(k.value for k in FaultKind)}"
)


@dataclass(frozen=True, slots=True)
class Placement:
    """An explicitly placed fault: ``offset_s`` after the run start, lasting ``duration_s``."""

    kind: FaultKind
    machine_id: str
    sensor_id: str | None
    offset_s: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What to inject: how many faults of each kind, plus explicit placements.

    ``use_default`` means the default counts, which depend on the plant size
    (:meth:`counts_for`).
    """

    counts: tuple[tuple[FaultKind, int], ...] = ()
    placements: tuple[Placement, ...] = ()
    use_default: bool = False

    @classmethod
    def default(cls) -> FaultPlan:
        return cls(use_default=True)

    @classmethod
    def none(cls) -> FaultPlan:
        return cls()

    def counts_for(self, n_machines: int) -> dict[FaultKind, int]:
        """Faults to place at random, per kind, for a plant of ``n_machines``.

        Default: each machine fault kind max(1, round(n/12)) times, each sensor fault kind
        max(1, round(n/25)) times.
        """
        if self.use_default:
            out = {k: max(1, round(n_machines / 12)) for k in MACHINE_FAULTS}
            return out | {k: max(1, round(n_machines / 25)) for k in SENSOR_FAULTS}
        out = {}
        for kind, count in self.counts:
            out[kind] = out.get(kind, 0) + count
        return out


def _bad(item: str, problem: str) -> ConfigError:
    return ConfigError(f"bad fault spec item {item!r}: {problem}. {GRAMMAR}")


def _kind(item: str, text: str) -> FaultKind:
    try:
        return FaultKind(text.strip())
    except ValueError:
        raise _bad(item, f"unknown fault kind {text.strip()!r}") from None


def _seconds(item: str, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(item, f"{what} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise _bad(item, f"{what} must be a finite number of seconds >= 0, got {text!r}")
    return value


def _placement(item: str) -> Placement:
    kind_text, _, rest = item.partition("@")
    target, sep, timing = rest.rpartition(":")
    if not sep or not target:
        raise _bad(item, "an explicit placement needs MACHINE[/SENSOR]:START_S+DURATION_S")
    machine_id, _, sensor_id = target.strip().partition("/")
    start_text, plus, dur_text = timing.partition("+")
    if not plus:
        raise _bad(item, "timing must be START_S+DURATION_S, e.g. 600+300")
    duration = _seconds(item, dur_text.strip(), "duration")
    if duration <= 0:
        raise _bad(item, "duration must be > 0 seconds")
    if not machine_id.strip():
        raise _bad(item, "machine id is empty")
    return Placement(
        kind=_kind(item, kind_text),
        machine_id=machine_id.strip(),
        sensor_id=sensor_id.strip() or None,
        offset_s=_seconds(item, start_text.strip(), "start"),
        duration_s=duration,
    )


def parse_fault_spec(spec: str) -> FaultPlan:
    """A :class:`FaultPlan` from a spec string (see :data:`GRAMMAR`); ConfigError if bad.

    ``"bearing_wear:3,stuck:1"`` places three bearing-wear and one stuck fault at random;
    ``"overheating@L1-PUMP-01:600+900"`` starts overheating on L1-PUMP-01 ten minutes into the
    run, for fifteen minutes. Repeated ``KIND:COUNT`` items add up.
    """
    text = spec.strip()
    if text == "default":
        return FaultPlan.default()
    if text == "none":
        return FaultPlan.none()
    if not text:
        raise _bad(spec, "the spec is empty")
    counts: list[tuple[FaultKind, int]] = []
    placements: list[Placement] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise _bad(raw, "empty item (two commas in a row, or a trailing comma?)")
        if "@" in item:
            placements.append(_placement(item))
            continue
        kind_text, sep, count_text = item.partition(":")
        if not sep:
            raise _bad(item, "expected KIND:COUNT or KIND@MACHINE:START_S+DURATION_S")
        kind = _kind(item, kind_text)
        if not count_text.strip().isdigit():
            raise _bad(item, f"count {count_text.strip()!r} is not a whole number >= 0")
        counts.append((kind, int(count_text)))
    return FaultPlan(counts=tuple(counts), placements=tuple(placements))


# -- scheduling -------------------------------------------------------------------------------

MACHINE_FAULT_SHARE = (0.20, 0.35)  # of the horizon
SENSOR_FAULT_SHARE = (0.08, 0.15)
MIN_MACHINE_FAULT_S = 300.0  # when the horizon allows
MIN_SENSOR_FAULT_S = 180.0
LATEST_END_SHARE = 0.95


def warmup_s(horizon_s: float) -> float:
    """Seconds after the run start before which no fault starts (detectors learn a baseline)."""
    return max(0.1 * horizon_s, 300.0 if horizon_s >= 1800.0 else 0.0)


def _explicit(plant: Plant, p: Placement, start: float) -> Fault:
    where = f"fault placement {p.kind}@{p.machine_id}"
    try:
        machine = plant.machine(p.machine_id)
        if p.sensor_id is not None:
            machine.sensor(p.sensor_id)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    sensor = p.sensor_id or machine.sensors[0].sensor_id
    if p.kind in MACHINE_FAULTS:
        label = labelled_sensor(machine, p.kind)
        if label is None:
            raise ConfigError(
                f"{where}: {p.kind} needs a {LABEL_KIND[p.kind]} sensor and "
                f"{machine.machine_type} {p.machine_id} has none"
            )
        if p.sensor_id not in (None, label):
            raise ConfigError(
                f"{where}/{p.sensor_id}: {p.kind} is labelled with sensor {label!r}; "
                "leave the sensor out or name that one"
            )
        sensor = label
    return Fault(
        p.machine_id, sensor, p.kind, start + p.offset_s, start + p.offset_s + p.duration_s
    )


def _pick_start(
    busy: list[tuple[float, float]], lo: float, hi: float, dur: float, u: float
) -> float | None:
    """A start in [lo, hi] whose window [x, x + dur) overlaps no busy window; None if none."""
    if hi < lo:
        return None
    free = [(lo, hi)]
    for s, e in busy:
        a, b = s - dur, e  # starts strictly between a and b would overlap [s, e)
        nxt = []
        for x0, x1 in free:
            if b <= x0 or a >= x1:
                nxt.append((x0, x1))
                continue
            if x0 <= a:
                nxt.append((x0, a))
            if b <= x1:
                nxt.append((b, x1))
        free = nxt
    if not free:
        return None
    total = sum(x1 - x0 for x0, x1 in free)
    target = u * total
    for x0, x1 in free:
        if target <= x1 - x0:
            return x0 + target
        target -= x1 - x0
    return free[-1][1]


def schedule_faults(
    plant: Plant, plan: FaultPlan, *, start: float, horizon_s: float, seed: int
) -> list[Fault]:
    """Place the faults of ``plan`` on ``plant`` for a run of ``horizon_s`` from ``start``.

    Random placements: machine faults last 20–35 % of the horizon (at least 5 min when it fits),
    sensor faults 8–15 % (at least 3 min); none starts before :func:`warmup_s` and all end by
    95 % of the horizon. Distinct machines are preferred; faults sharing a machine never
    overlap. Explicit placements are used as given (after checking machine and sensor exist).
    The same arguments give the same faults, sorted by start.
    """
    if not (math.isfinite(horizon_s) and horizon_s > 0):
        raise ConfigError(f"the fault horizon must be > 0 seconds, got {horizon_s}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5C4E]))
    faults = [_explicit(plant, p, start) for p in plan.placements]
    busy: dict[str, list[tuple[float, float]]] = {}
    for f in faults:
        busy.setdefault(f.machine_id, []).append((f.start, f.end))
    usage = Counter(f.machine_id for f in faults)
    lo = start + warmup_s(horizon_s)
    hi = start + LATEST_END_SHARE * horizon_s
    counts = plan.counts_for(len(plant.machines))
    for kind in FaultKind:
        candidates = [m for m in plant.machines if eligible(m, kind)]
        if counts.get(kind, 0) and not candidates:
            raise ConfigError(
                f"no machine in the plant can have {kind}: it needs a {LABEL_KIND[kind]} sensor"
            )
        is_machine = kind in MACHINE_FAULTS
        share = MACHINE_FAULT_SHARE if is_machine else SENSOR_FAULT_SHARE
        shortest = MIN_MACHINE_FAULT_S if is_machine else MIN_SENSOR_FAULT_S
        for _ in range(counts.get(kind, 0)):
            u_dur, u_start, u_sensor = rng.random(3)
            dur = horizon_s * (share[0] + (share[1] - share[0]) * u_dur)
            dur = min(max(dur, min(shortest, hi - lo)), hi - lo)
            keys = rng.random(len(candidates))
            order = sorted(
                range(len(candidates)),
                key=lambda i: (usage[candidates[i].machine_id], keys[i]),
            )
            for i in order:
                m = candidates[i]
                x = _pick_start(busy.get(m.machine_id, []), lo, hi - dur, dur, u_start)
                if x is not None:
                    break
            else:
                raise ConfigError(
                    f"cannot place another {kind} fault of {dur:.0f} s: every eligible machine "
                    f"is busy in the {horizon_s:.0f} s horizon; ask for fewer faults or a "
                    "longer run"
                )
            sensor = labelled_sensor(m, kind)
            if sensor is None:
                sensor = m.sensors[int(u_sensor * len(m.sensors))].sensor_id
            faults.append(Fault(m.machine_id, sensor, kind, x, x + dur))
            busy.setdefault(m.machine_id, []).append((x, x + dur))
            usage[m.machine_id] += 1
    return sorted(faults, key=_order)
