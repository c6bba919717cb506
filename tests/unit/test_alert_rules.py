"""Alert rules: validation and the default rule set."""

from __future__ import annotations

import dataclasses
import math

import pytest

from plantwatch.alert import DEFAULT_RULES, AlertStates, Rule
from plantwatch.detect import default_detectors


def test_defaults() -> None:
    r = Rule("r", "static_limit")
    assert (r.for_s, r.resolve_after_s, r.min_level) == (0.0, 60.0, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"for_s": -1.0},
        {"resolve_after_s": -0.001},
        {"for_s": math.nan},
        {"resolve_after_s": math.nan},
        {"for_s": math.inf},
        {"resolve_after_s": math.inf},
    ],
)
def test_durations_must_be_finite_and_not_negative(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="rule r: durations must be finite and >= 0"):
        Rule("r", "static_limit", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("min_level", [0, 3, -1])
def test_min_level_is_warning_or_critical(min_level: int) -> None:
    with pytest.raises(ValueError, match=f"min_level must be 1 or 2, got {min_level}"):
        Rule("r", "static_limit", min_level=min_level)


def test_zero_durations_and_both_levels_are_valid() -> None:
    assert Rule("a", "stuck", for_s=0.0, resolve_after_s=0.0, min_level=2).min_level == 2
    assert Rule("b", "stuck", for_s=0.5, resolve_after_s=1.5).for_s == 0.5


def test_rules_are_frozen() -> None:
    r = Rule("r", "stuck")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.for_s = 5.0  # type: ignore[misc]


def test_default_rules_reference_default_detectors() -> None:
    names = {d.name for d in default_detectors()}
    unknown = [(r.name, r.detector) for r in DEFAULT_RULES if r.detector not in names]
    assert not unknown, f"rules naming no default detector: {unknown}"


def test_default_rules_have_unique_names() -> None:
    names = [r.name for r in DEFAULT_RULES]
    assert len(set(names)) == len(names)
    AlertStates(DEFAULT_RULES)  # accepted as a set


def test_default_rule_summaries_format_with_the_alert_fields() -> None:
    # the fields the pipeline passes; a summary naming anything else falls back silently there
    fields = {
        "detector": "static_limit",
        "machine_id": "L1-PUMP-01",
        "sensor_id": "vib-de",
        "kind": "vibration",
        "value": 8.0,
        "threshold": 7.1,
        "score": 1.13,
    }
    for r in DEFAULT_RULES:
        text = r.summary.format(**fields)
        assert "L1-PUMP-01" in text, r.name
