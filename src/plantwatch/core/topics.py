"""Topic names. One prefix per deployment (``PLANTWATCH_TOPIC_PREFIX``), fixed suffixes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = "plantwatch"

    @property
    def raw(self) -> str:
        """Readings as devices and gateways send them (Arrow or JSON), keyed by machine_id."""
        return f"{self.prefix}.readings.raw"

    @property
    def clean(self) -> str:
        """Validated, de-duplicated readings in canonical units."""
        return f"{self.prefix}.readings.clean"

    @property
    def features(self) -> str:
        return f"{self.prefix}.features"

    @property
    def anomalies(self) -> str:
        return f"{self.prefix}.anomalies"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}.alerts"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.deadletters"

    @property
    def machines(self) -> str:
        """The machine registry: one JSON record per machine, keyed by machine_id (compacted)."""
        return f"{self.prefix}.machines"

    @property
    def metrics(self) -> str:
        """Consumer-lag samples of the stream workers (JSON), for the sink to store."""
        return f"{self.prefix}.metrics"

    def all(self) -> tuple[str, ...]:
        return (
            self.raw,
            self.clean,
            self.features,
            self.anomalies,
            self.alerts,
            self.dead_letters,
            self.machines,
            self.metrics,
        )
