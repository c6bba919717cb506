"""Validation on whole columns: each row gets the first reason it fails, or passes.

Two phases, because de-duplication needs the key: :func:`key_problems` (machine, sensor, seq,
schema version) runs before it, :func:`value_problems` (kind, unit, value, quality, event time)
after it. Details (the text a person reads) are only built for failing rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.core.codec import ts_ms
from plantwatch.core.deadletter import Reason
from plantwatch.core.kinds import KIND_NAMES
from plantwatch.core.reading import QUALITY_NAMES, SUPPORTED_SCHEMA_VERSIONS
from plantwatch.core.units import Normalized, normalize

REASONS: tuple[Reason, ...] = tuple(Reason)
CODE: dict[Reason, int] = {r: i for i, r in enumerate(REASONS)}
OK = -1
Codes = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class TimeLimits:
    max_future_skew_ms: int
    max_age_ms: int


@dataclass(frozen=True, slots=True)
class Problems:
    codes: Codes  # OK or an index into REASONS
    details: dict[int, str]

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.codes == OK)


def _null_or_empty(col: pa.Array) -> npt.NDArray[np.bool_]:
    empty = pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_length(col), 0)).fill_null(True)
    return np.asarray(empty.to_numpy(zero_copy_only=False), np.bool_)


def _null(col: pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), np.bool_)


class _Builder:
    def __init__(self, n: int) -> None:
        self.codes: Codes = np.full(n, OK, np.int16)
        self.details: dict[int, str] = {}

    def mark(
        self, mask: npt.NDArray[np.bool_], reason: Reason, detail: str | Callable[[int], str]
    ) -> None:
        """Give ``reason`` to the rows in ``mask`` that have none yet; ``detail`` is the text, or
        builds it from a row index (called for those rows only)."""
        if not mask.any():
            return
        rows = np.flatnonzero(mask & (self.codes == OK))
        self.codes[rows] = CODE[reason]
        for r in rows.tolist():
            self.details[r] = detail if isinstance(detail, str) else detail(r)

    def done(self) -> Problems:
        return Problems(self.codes, self.details)


def key_problems(table: pa.Table) -> Problems:
    b = _Builder(table.num_rows)
    for name in ("machine_id", "sensor_id"):
        missing = _null_or_empty(table.column(name))
        b.mark(missing, Reason.MISSING_FIELD, f"{name} is missing or empty")
    b.mark(_null(table.column("seq")), Reason.MISSING_FIELD, "seq is missing")
    ver = np.asarray(table.column("schema_version").fill_null(1).to_numpy(), np.int64)
    supported = ", ".join(map(str, sorted(SUPPORTED_SCHEMA_VERSIONS)))
    b.mark(
        ~np.isin(ver, list(SUPPORTED_SCHEMA_VERSIONS)),
        Reason.UNSUPPORTED_SCHEMA,
        lambda r: f"schema_version {ver[r]} (supported: {supported})",
    )
    return b.done()


def value_problems(
    table: pa.Table, *, now_ms: int, limits: TimeLimits
) -> tuple[Problems, Normalized]:
    """Problems of each row, and the values normalized to canonical units."""
    b = _Builder(table.num_rows)
    for name in ("kind", "unit"):
        missing = _null_or_empty(table.column(name))
        b.mark(missing, Reason.MISSING_FIELD, f"{name} is missing or empty")
    for name in ("value", "ts"):
        b.mark(_null(table.column(name)), Reason.MISSING_FIELD, f"{name} is missing")
    kind = table.column("kind").combine_chunks().fill_null("")
    known = pc.is_in(kind, pa.array(KIND_NAMES)).to_numpy(zero_copy_only=False)
    names = ", ".join(KIND_NAMES)
    b.mark(
        ~np.asarray(known, np.bool_),
        Reason.UNKNOWN_KIND,
        lambda r: f"unknown kind {kind[r].as_py()!r}; known: {names}",
    )
    unit = table.column("unit").combine_chunks().fill_null("")
    values = np.asarray(table.column("value").fill_null(np.nan).to_numpy(), np.float64)
    norm = normalize(kind, unit, values)
    b.mark(
        ~norm.ok,
        Reason.BAD_UNIT,
        lambda r: f"unit {unit[r].as_py()!r}: {norm.problems.get(r, '')}",
    )
    b.mark(
        ~np.isfinite(values),
        Reason.NON_FINITE_VALUE,
        lambda r: f"value {values[r]!r} is not a finite number",
    )
    quality = table.column("quality").combine_chunks()
    good_q = pc.or_kleene(pc.is_null(quality), pc.is_in(quality, pa.array(QUALITY_NAMES)))
    b.mark(
        ~np.asarray(good_q.fill_null(True).to_numpy(zero_copy_only=False), np.bool_),
        Reason.BAD_QUALITY,
        lambda r: f"quality {quality[r].as_py()!r}; use one of {', '.join(QUALITY_NAMES)}",
    )
    ts = ts_ms(table)
    has_ts = ts != np.iinfo(np.int64).min
    b.mark(
        has_ts & (ts > now_ms + limits.max_future_skew_ms),
        Reason.FUTURE_TIMESTAMP,
        lambda r: (
            f"event time is {(ts[r] - now_ms) / 1000:.0f} s ahead of the pipeline clock "
            f"(allowed {limits.max_future_skew_ms / 1000:.0f} s): check the device clock"
        ),
    )
    b.mark(
        has_ts & (ts < now_ms - limits.max_age_ms),
        Reason.TOO_OLD,
        lambda r: (
            f"event time is {(now_ms - ts[r]) / 86_400_000:.1f} days old (maximum age "
            f"{limits.max_age_ms / 86_400_000:.1f} days)"
        ),
    )
    return b.done(), norm
