"""What every stage shares and changes rarely: records, schemas, codecs, errors, clock, settings."""

from plantwatch.core.clock import Clock, SimulatedClock, WallClock
from plantwatch.core.deadletter import DEAD_LETTER_SCHEMA, Reason
from plantwatch.core.errors import (
    CodecError,
    ConfigError,
    ContractError,
    InvalidReadingError,
    PlantwatchError,
    UnitError,
    UnknownKindError,
)
from plantwatch.core.kinds import KINDS, SensorKind, canonical_unit
from plantwatch.core.reading import READING_SCHEMA, SCHEMA_VERSION, Quality, Reading
from plantwatch.core.topics import Topics

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "KINDS",
    "READING_SCHEMA",
    "SCHEMA_VERSION",
    "Clock",
    "CodecError",
    "ConfigError",
    "ContractError",
    "InvalidReadingError",
    "PlantwatchError",
    "Quality",
    "Reading",
    "Reason",
    "SensorKind",
    "SimulatedClock",
    "Topics",
    "UnitError",
    "UnknownKindError",
    "WallClock",
    "canonical_unit",
]
