"""The legacy JSON gateway: defect rates as configured, clean records when switched off."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from plantwatch.core.errors import ConfigError
from plantwatch.core.kinds import KINDS, SensorKind
from plantwatch.sim import RECORD_ISSUES, Chunk, GatewayIssues, Simulator, build_plant

S = 1_709_280_000.0
SECONDS = 2000.0
RATE = 10.0
FIELDS = {"machine_id", "sensor_id", "kind", "value", "unit", "ts", "quality", "schema_version"}


def legacy_run(issues: GatewayIssues, seed: int = 3) -> tuple[Simulator, Chunk]:
    plant = build_plant(10, seed=0)  # one legacy machine, L1-FAN-10, six sensors
    sim = Simulator(plant, start=S, rate_hz=RATE, faults=(), seed=seed, issues=issues)
    return sim, sim.step(S + SECONDS)


@pytest.fixture(scope="module")
def default_run() -> tuple[Simulator, Chunk]:
    return legacy_run(GatewayIssues())


def _observed(records: list[dict[str, object]]) -> dict[str, int]:
    """Defects as the stream would see them, from the records alone."""
    end = datetime.fromtimestamp(S + SECONDS, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    seen = dict.fromkeys(RECORD_ISSUES, 0)
    for r in records:
        value = r.get("value")
        if r.get("unit") == "g":
            seen["bad_unit"] += 1
        elif "unit" not in r or "value" not in r:
            seen["missing_field"] += 1
        elif r["kind"] == "torque":
            seen["unknown_kind"] += 1
        elif value == "n/a":
            seen["malformed"] += 1
        elif isinstance(value, float) and math.isnan(value):
            seen["nan_value"] += 1
        elif str(r["ts"]) > end:
            seen["future_ts"] += 1
    return seen


def test_issue_rates_roughly_as_configured(default_run: tuple[Simulator, Chunk]) -> None:
    _, chunk = default_run
    records = chunk.legacy
    n = len(records)
    assert n == SECONDS * RATE * 6
    vibration = sum(1 for r in records if r["sensor_id"] == "vibration")
    issues = GatewayIssues()
    for name in RECORD_ISSUES:
        base = vibration if name == "bad_unit" else n
        expected = getattr(issues, name) * base
        got = chunk.issue_counts[name]
        assert abs(got - expected) <= 5 * math.sqrt(expected) + 1, (name, got, expected)
    assert _observed(records) == chunk.issue_counts  # counters match what was done


def test_records_carry_no_issue_label(default_run: tuple[Simulator, Chunk]) -> None:
    _, chunk = default_run
    for r in chunk.legacy:
        assert set(r) <= FIELDS
        assert len(set(r)) >= len(FIELDS) - 1


def test_future_timestamps_are_a_day_ahead(default_run: tuple[Simulator, Chunk]) -> None:
    _, chunk = default_run
    future = [r["ts"] for r in chunk.legacy if r["ts"] > "2024-03-02"]
    assert future
    for ts in future:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        assert S + 86400.0 <= t < S + SECONDS + 86400.0


def test_duplicates_are_picked_at_the_configured_rate_and_deterministically(
    default_run: tuple[Simulator, Chunk],
) -> None:
    sim, chunk = default_run
    forwarded = [dict(r, seq=i) for i, r in enumerate(chunk.legacy)]
    picked = sim.gateway.pick_duplicates(forwarded)
    expected = 0.01 * len(forwarded)
    assert abs(len(picked) - expected) <= 5 * math.sqrt(expected)
    assert sim.gateway.duplicates == len(picked)
    seqs = [r["seq"] for r in picked]
    assert seqs == sorted(set(seqs))
    assert all(forwarded[r["seq"]] == r and forwarded[r["seq"]] is not r for r in picked)
    again_sim, again = legacy_run(GatewayIssues())
    again_fwd = [dict(r, seq=i) for i, r in enumerate(again.legacy)]
    assert [r["seq"] for r in again_sim.gateway.pick_duplicates(again_fwd)] == seqs


def test_none_gives_clean_records() -> None:
    sim, chunk = legacy_run(GatewayIssues.none())
    assert set(chunk.issue_counts.values()) == {0}
    for r in chunk.legacy:
        assert set(r) == FIELDS
        kind = SensorKind(r["kind"])
        assert r["unit"] == KINDS[kind].unit
        assert isinstance(r["value"], float)
        assert math.isfinite(r["value"])
        assert KINDS[kind].low <= r["value"] <= KINDS[kind].high
        assert "2024-03-01T08:00:00.000Z" <= r["ts"] < "2024-03-01T08:33:20.000Z"
        assert r["quality"] == "good"
        assert r["schema_version"] == 1
    assert sim.gateway.pick_duplicates(chunk.legacy) == []


def test_high_rates_are_honoured_too() -> None:
    issues = GatewayIssues(
        bad_unit=0.3, future_ts=0.1, nan_value=0.1, unknown_kind=0.1, missing_field=0.1,
        malformed=0.1, duplicate=0.5,
    )  # fmt: skip
    _, chunk = legacy_run(issues, seed=8)
    n = len(chunk.legacy)
    vibration = n / 6
    assert chunk.issue_counts["bad_unit"] / vibration == pytest.approx(0.3, abs=0.02)
    for name in ("future_ts", "nan_value", "unknown_kind", "missing_field", "malformed"):
        assert chunk.issue_counts[name] / n == pytest.approx(0.1, abs=0.01)
    missing = [r for r in chunk.legacy if "unit" not in r or "value" not in r]
    assert 0.35 < np.mean(["unit" not in r for r in missing]) < 0.65  # either field


@pytest.mark.parametrize(
    "kwargs", [{"nan_value": -0.1}, {"duplicate": 1.5}, {"bad_unit": 0.6, "malformed": 0.6}]
)
def test_bad_probabilities_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        GatewayIssues(**kwargs)
