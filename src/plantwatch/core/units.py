"""Unit conversion to the canonical unit of each kind, on whole columns.

Every conversion is affine: ``canonical = value * scale + offset``. A unit that measures a
different quantity (acceleration in g for vibration *velocity*, displacement in µm) is refused
with a reason a person can act on, never guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.core.errors import UnitError
from plantwatch.core.kinds import KINDS, SensorKind


@dataclass(frozen=True, slots=True)
class Conversion:
    scale: float
    offset: float = 0.0


_F = 5.0 / 9.0
_CONVERSIONS: dict[SensorKind, dict[str, Conversion]] = {
    SensorKind.VIBRATION: {
        "mm/s": Conversion(1.0),
        "in/s": Conversion(25.4),
        "ips": Conversion(25.4),
        "m/s": Conversion(1000.0),
        "µm/s": Conversion(0.001),
        "um/s": Conversion(0.001),
    },
    SensorKind.TEMPERATURE: {
        "°C": Conversion(1.0),
        "C": Conversion(1.0),
        "degC": Conversion(1.0),
        "celsius": Conversion(1.0),
        "°F": Conversion(_F, -32.0 * _F),
        "F": Conversion(_F, -32.0 * _F),
        "degF": Conversion(_F, -32.0 * _F),
        "fahrenheit": Conversion(_F, -32.0 * _F),
        "K": Conversion(1.0, -273.15),
        "kelvin": Conversion(1.0, -273.15),
    },
    SensorKind.HUMIDITY: {"%": Conversion(1.0), "%RH": Conversion(1.0), "pct": Conversion(1.0)},
    SensorKind.PRESSURE: {
        "bar": Conversion(1.0),
        "mbar": Conversion(0.001),
        "psi": Conversion(0.0689475729),
        "psig": Conversion(0.0689475729),
        "Pa": Conversion(1e-5),
        "kPa": Conversion(0.01),
        "MPa": Conversion(10.0),
    },
    SensorKind.CURRENT: {"A": Conversion(1.0), "mA": Conversion(0.001), "kA": Conversion(1000.0)},
    SensorKind.VOLTAGE: {"V": Conversion(1.0), "mV": Conversion(0.001), "kV": Conversion(1000.0)},
    SensorKind.POWER: {
        "kW": Conversion(1.0),
        "W": Conversion(0.001),
        "MW": Conversion(1000.0),
        "hp": Conversion(0.745699872),
    },
    SensorKind.SPEED: {
        "rpm": Conversion(1.0),
        "rps": Conversion(60.0),
        "rad/s": Conversion(60.0 / (2.0 * math.pi)),
    },
    SensorKind.FLOW: {
        "m³/h": Conversion(1.0),
        "m3/h": Conversion(1.0),
        "m³/s": Conversion(3600.0),
        "m3/s": Conversion(3600.0),
        "L/min": Conversion(0.06),
        "l/min": Conversion(0.06),
        "L/s": Conversion(3.6),
        "gpm": Conversion(0.227124707),
    },
}

# Units people send that measure something else: refuse with the reason.
_WRONG_QUANTITY: dict[SensorKind, dict[str, str]] = {
    SensorKind.VIBRATION: dict.fromkeys(
        ("g", "g's", "gs", "m/s2", "m/s²", "mm/s2", "mm/s²", "in/s2", "in/s²"),
        "acceleration is not velocity; integrate to velocity RMS (mm/s) at the device",
    )
    | dict.fromkeys(
        ("mm", "µm", "um", "mil", "mils"),
        "displacement is not velocity; send velocity RMS in mm/s or in/s",
    ),
    SensorKind.HUMIDITY: dict.fromkeys(
        ("g/m3", "g/m³", "°C dew point", "dewpoint"),
        "absolute humidity or dew point is not relative humidity; send %RH",
    ),
}


def accepted_units(kind: SensorKind | str) -> tuple[str, ...]:
    """Units plantwatch converts for ``kind``, canonical first."""
    k = SensorKind(kind)
    canon = KINDS[k].unit
    return (canon, *sorted(u for u in _CONVERSIONS[k] if u != canon))


def conversion(kind: SensorKind | str, unit: str) -> Conversion:
    """The conversion of ``unit`` to the canonical unit of ``kind``, or :class:`UnitError`."""
    k = SensorKind(kind)
    found = _CONVERSIONS[k].get(unit)
    if found is not None:
        return found
    wrong = _WRONG_QUANTITY.get(k, {}).get(unit)
    if wrong is not None:
        raise UnitError(k.value, unit, wrong)
    raise UnitError(
        k.value, unit, f"no conversion to {KINDS[k].unit}; accepted: {', '.join(accepted_units(k))}"
    )


def unit_problem(kind: str, unit: str) -> str | None:
    """Why ``unit`` cannot be used for ``kind`` (``None`` when it can, or the kind is unknown)."""
    try:
        k = SensorKind(kind)
    except ValueError:
        return None
    try:
        conversion(k, unit)
    except UnitError as exc:
        return exc.problem
    return None


@dataclass(frozen=True, slots=True)
class Normalized:
    """Result of :func:`normalize`: canonical values and units, and which rows failed."""

    values: npt.NDArray[np.float64]
    units: pa.Array
    ok: npt.NDArray[np.bool_]
    problems: dict[int, str]  # row -> reason text, only for rows with ok == False


def normalize(kinds: pa.Array, units: pa.Array, values: npt.ArrayLike) -> Normalized:
    """Convert a column of values to canonical units, one affine transform per (kind, unit) pair.

    Rows whose kind is unknown or whose unit cannot be converted keep their value and unit and
    are marked ``ok == False``. The cost is one dictionary lookup per distinct pair, not per row.
    """
    vals = np.asarray(values, dtype=np.float64)
    n = len(vals)
    if n == 0:
        return Normalized(vals.copy(), pa.array([], pa.string()), np.ones(0, np.bool_), {})
    pair = pc.binary_join_element_wise(
        pc.cast(kinds, pa.string()), pc.cast(units, pa.string()), "\x1f"
    )
    encoded = (
        pc.dictionary_encode(pair).combine_chunks()
        if isinstance(pair, pa.ChunkedArray)
        else (pc.dictionary_encode(pair))
    )
    pairs = encoded.dictionary.to_pylist()
    m = len(pairs)
    scale = np.ones(m, np.float64)
    offset = np.zeros(m, np.float64)
    good = np.ones(m, np.bool_)
    canon: list[str | None] = [None] * m
    reasons: list[str] = [""] * m
    for i, p in enumerate(pairs):
        if p is None:
            good[i] = False
            reasons[i] = "kind or unit is missing"
            continue
        kind, unit = p.split("\x1f", 1)
        try:
            k = SensorKind(kind)
            conv = conversion(k, unit)
        except ValueError as exc:
            good[i] = False
            reasons[i] = exc.problem if isinstance(exc, UnitError) else f"unknown kind {kind!r}"
            continue
        scale[i], offset[i], canon[i] = conv.scale, conv.offset, KINDS[k].unit
    idx = encoded.indices.to_numpy(zero_copy_only=False)
    nulls = encoded.indices.is_null().to_numpy(zero_copy_only=False)
    idx = np.where(nulls, 0, idx).astype(np.int64)
    row_ok = good[idx] & ~nulls
    out = np.where(row_ok, vals * scale[idx] + offset[idx], vals)
    unit_col = pc.if_else(
        pa.array(row_ok), pc.take(pa.array(canon, pa.string()), pa.array(idx)), units
    )
    problems = {
        int(r): (reasons[idx[r]] if not nulls[r] else "kind or unit is missing")
        for r in np.flatnonzero(~row_ok)
    }
    return Normalized(out, unit_col, row_ok, problems)
