"""The error hierarchy shared by every stage.

Each stage adds its own ``errors.py`` with subclasses of :class:`PlantwatchError`. Third-party
errors are translated at one boundary (``raise ... from exc``). A bad *record* is data, not an
exception: the stream turns it into a dead letter. Exceptions are for bad *calls*.
"""

from __future__ import annotations

from typing import Any


class PlantwatchError(Exception):
    """Root of every error plantwatch raises on purpose."""


class ConfigError(PlantwatchError):
    """A setting or a command-line option has a value we cannot use."""


class ContractError(PlantwatchError, ValueError):
    """A value breaks the Reading contract (kind, unit, value, time)."""


class InvalidReadingError(ContractError):
    """One field of a reading is invalid. Names the field, the value and what to do."""

    def __init__(self, field: str, value: Any, problem: str, *, row: int | None = None) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        self.row = row
        where = f" (row {row})" if row is not None else ""
        super().__init__(f"invalid {field}{where}: {value!r}: {problem}")


class UnitError(InvalidReadingError):
    """A unit that cannot be converted to the canonical unit of its kind."""

    def __init__(self, kind: str, unit: Any, problem: str, *, row: int | None = None) -> None:
        super().__init__("unit", unit, f"for kind {kind!r}: {problem}", row=row)
        self.kind = kind


class UnknownKindError(InvalidReadingError):
    """A sensor kind plantwatch does not know."""


class CodecError(ContractError):
    """Bytes that do not decode into readings."""
