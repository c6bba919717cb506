"""Alert rules: which detector, how long the condition must hold (``for``), how long it must be
clear before the alert resolves (``resolve_after``).

The ``for`` duration keeps one noisy window from paging anyone; ``resolve_after`` keeps an alert
from flapping while a value hovers at its threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    detector: str  # a detector's ``name``
    for_s: float = 0.0
    resolve_after_s: float = 60.0
    min_level: int = 1  # 1: warning findings count, 2: only critical ones
    summary: str = "{detector} on {machine_id}/{sensor_id}"

    def __post_init__(self) -> None:
        # ``not 0 <= x < inf`` also rejects NaN, which compares false with everything.
        if not (0 <= self.for_s < math.inf and 0 <= self.resolve_after_s < math.inf):
            raise ValueError(
                f"rule {self.name}: durations must be finite and >= 0, got "
                f"for_s={self.for_s}, resolve_after_s={self.resolve_after_s}"
            )
        if self.min_level not in (1, 2):
            raise ValueError(f"rule {self.name}: min_level must be 1 or 2, got {self.min_level}")


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        "machine_limit",
        "static_limit",
        for_s=20.0,
        resolve_after_s=60.0,
        summary="{kind} {value:.2f} beyond limit {threshold:.2f} on {machine_id}/{sensor_id}",
    ),
    Rule(
        "baseline_deviation",
        "baseline",
        for_s=30.0,
        resolve_after_s=60.0,
        min_level=2,
        summary="{kind} {value:.2f} deviates from its baseline (z={score:.1f}) "
        "on {machine_id}/{sensor_id}",
    ),
    Rule(
        "sensor_stuck",
        "stuck",
        for_s=60.0,
        resolve_after_s=30.0,
        summary="{machine_id}/{sensor_id} repeats {value:.3f} exactly: transmitter stuck?",
    ),
    Rule(
        "sensor_no_data",
        "no_data",
        for_s=0.0,
        resolve_after_s=0.0,
        summary="no data from {machine_id}/{sensor_id} for {value:.0f} s",
    ),
    Rule(
        "sensor_out_of_range",
        "out_of_range",
        for_s=0.0,
        resolve_after_s=60.0,
        summary="{machine_id}/{sensor_id} reported {value:.0f} value(s) outside the physical "
        "range of {kind}",
    ),
)
