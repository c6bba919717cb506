"""Sensor kinds, each with one canonical unit and a physically possible range.

The canonical unit is what every stored reading carries after normalization. The physical range
is the widest range a working sensor of that kind can report in an industrial plant; a value
outside it is a sensor fault (out-of-range glitch), not a process anomaly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SensorKind(StrEnum):
    VIBRATION = "vibration"  # velocity RMS, as ISO 10816 / 20816 rate machines
    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"  # relative humidity
    PRESSURE = "pressure"  # gauge pressure
    CURRENT = "current"
    VOLTAGE = "voltage"
    POWER = "power"  # active power
    SPEED = "speed"  # rotational speed
    FLOW = "flow"  # volumetric flow


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: SensorKind
    unit: str
    low: float
    high: float
    description: str


KINDS: dict[SensorKind, KindSpec] = {
    spec.kind: spec
    for spec in (
        KindSpec(SensorKind.VIBRATION, "mm/s", 0.0, 100.0, "vibration velocity RMS"),
        KindSpec(SensorKind.TEMPERATURE, "°C", -60.0, 600.0, "temperature"),
        KindSpec(SensorKind.HUMIDITY, "%", 0.0, 100.0, "relative humidity"),
        KindSpec(SensorKind.PRESSURE, "bar", -1.01325, 1500.0, "gauge pressure"),
        KindSpec(SensorKind.CURRENT, "A", 0.0, 20_000.0, "electrical current (RMS)"),
        KindSpec(SensorKind.VOLTAGE, "V", 0.0, 50_000.0, "electrical voltage (RMS)"),
        KindSpec(SensorKind.POWER, "kW", -50_000.0, 100_000.0, "active power"),
        KindSpec(SensorKind.SPEED, "rpm", 0.0, 100_000.0, "rotational speed"),
        KindSpec(SensorKind.FLOW, "m³/h", 0.0, 1_000_000.0, "volumetric flow"),
    )
}

KIND_NAMES: tuple[str, ...] = tuple(k.value for k in SensorKind)


def canonical_unit(kind: SensorKind | str) -> str:
    """The unit every stored reading of ``kind`` carries."""
    return KINDS[SensorKind(kind)].unit


def parse_kind(value: str) -> SensorKind:
    """``SensorKind`` for a name, or :class:`~plantwatch.core.errors.UnknownKindError`."""
    from plantwatch.core.errors import UnknownKindError

    try:
        return SensorKind(value)
    except ValueError:
        known = ", ".join(KIND_NAMES)
        raise UnknownKindError("kind", value, f"unknown sensor kind; use one of {known}") from None
