"""Value objects that configure the edge SDK; defaults come from ``core.settings``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from plantwatch.core.errors import ConfigError
from plantwatch.core.settings import BatchingSettings, SpoolSettings

WhenFull = Literal["block", "reject", "drop_oldest"]
_SPOOL = SpoolSettings()
_BATCHING = BatchingSettings()


@dataclass(frozen=True, slots=True)
class SpoolLimits:
    """Size, rolling, full-policy and durability of a spool (defaults: ``SpoolSettings``)."""

    max_bytes: int = _SPOOL.max_bytes
    segment_bytes: int = _SPOOL.segment_bytes
    when_full: WhenFull = _SPOOL.when_full
    block_timeout_s: float = _SPOOL.block_timeout_s
    fsync: bool = _SPOOL.fsync

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.segment_bytes <= 0:
            raise ConfigError(
                f"spool max_bytes and segment_bytes must be > 0, got {self.max_bytes} and "
                f"{self.segment_bytes}; set PLANTWATCH_SPOOL__MAX_BYTES / __SEGMENT_BYTES"
            )
        if self.when_full not in ("block", "reject", "drop_oldest"):
            raise ConfigError(
                f"spool when_full must be block, reject or drop_oldest, got {self.when_full!r}; "
                "set PLANTWATCH_SPOOL__WHEN_FULL"
            )
        if self.block_timeout_s < 0:
            raise ConfigError(f"spool block_timeout_s must be >= 0, got {self.block_timeout_s}")

    @classmethod
    def from_settings(cls, settings: SpoolSettings) -> SpoolLimits:
        return cls(
            max_bytes=settings.max_bytes,
            segment_bytes=settings.segment_bytes,
            when_full=settings.when_full,
            block_timeout_s=settings.block_timeout_s,
            fsync=settings.fsync,
        )


@dataclass(frozen=True, slots=True)
class Batching:
    """When typed readings go from the buffer to the spool (``PLANTWATCH_BATCHING__*``)."""

    max_readings: int = _BATCHING.max_readings
    max_delay_s: float = _BATCHING.max_delay_s

    def __post_init__(self) -> None:
        if self.max_readings < 1 or self.max_delay_s < 0:
            raise ConfigError(
                f"batching needs max_readings >= 1 and max_delay_s >= 0, got {self.max_readings} "
                f"and {self.max_delay_s}; set PLANTWATCH_BATCHING__MAX_READINGS / __MAX_DELAY_S"
            )

    @classmethod
    def from_settings(cls, settings: BatchingSettings) -> Batching:
        return cls(max_readings=settings.max_readings, max_delay_s=settings.max_delay_s)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between retries of a failing transport: doubling from ``initial_s`` to ``max_s``."""

    initial_s: float = 0.05
    max_s: float = 5.0

    def after(self, previous: float) -> float:
        return min(self.max_s, max(self.initial_s, previous * 2))
