"""``plantwatch run`` as a user runs it: accounting, detection, the summary, query, restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantwatch_cli import plantwatch, query, run_summary

SUMMARY_KEYS = {
    "readings_generated",
    "readings_stored",
    "raw_stored",
    "dead_letters",
    "late",
    "duplicates_dropped",
    "anomalies",
    "alerts_fired",
    "alerts_resolved",
    "faults_injected",
    "faults_detected",
    "false_alerts",
    "throughput_readings_per_s",
    "latency_ms",
}


@pytest.fixture(scope="module")
def half_hour(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    data = tmp_path_factory.mktemp("plant") / "data"
    summary = run_summary(
        data, "--machines", "12", "--duration", "1800", "--speed", "max", "--seed", "3"
    )
    return data, summary


def test_summary_has_every_field_and_the_books_balance(half_hour: tuple[Path, dict]) -> None:
    _, s = half_hour
    assert set(s) >= SUMMARY_KEYS
    assert set(s["latency_ms"]) == {"p50", "p95", "p99"}
    dead = sum(s["dead_letters"].values())
    assert s["readings_generated"] == s["readings_stored"] + s["duplicates_dropped"] + dead
    assert s["accounting_ok"] is True
    assert s["duplicates_dropped"] > 0 and dead > 0  # the legacy gateway's defects arrived
    # every defect the gateway injected is a dead letter with the matching reason
    issues = s["run"]["gateway_issues_injected"]
    assert s["dead_letters"].get("non_finite_value", 0) == issues.get("nan_value", 0)
    assert s["dead_letters"].get("future_timestamp", 0) == issues.get("future_ts", 0)
    assert s["dead_letters"].get("unknown_kind", 0) == issues.get("unknown_kind", 0)
    assert s["dead_letters"].get("bad_unit", 0) == issues.get("bad_unit", 0)
    assert s["duplicates_dropped"] == s["run"]["duplicates_sent_by_gateway"]


def test_store_holds_exactly_what_the_summary_says(half_hour: tuple[Path, dict]) -> None:
    data, s = half_hour
    (row,) = query(
        data,
        "SELECT (SELECT count() FROM plantwatch.readings) AS readings, "
        "(SELECT count() FROM plantwatch.raw_readings FINAL) AS raw, "
        "(SELECT count() FROM plantwatch.dead_letters FINAL) AS dead, "
        "(SELECT uniqExact(machine_id, sensor_id, seq) FROM plantwatch.readings) AS distinct_keys, "
        "(SELECT sum(count) FROM plantwatch.readings_1m) AS rolled_up, "
        "(SELECT countIf(quality != 'bad') FROM plantwatch.readings) AS good",
    )
    assert row["readings"] == row["distinct_keys"] == s["readings_stored"] == s["raw_stored"]
    assert row["dead"] == sum(s["dead_letters"].values())
    assert row["rolled_up"] == row["good"]


def test_faults_are_detected(half_hour: tuple[Path, dict]) -> None:
    _, s = half_hour
    d = s["detection"]
    assert d["machine_faults"] >= 4
    assert d["machine_faults_detected"] / d["machine_faults"] >= 0.8
    assert (
        d["sensor_fault_kinds_detected"]
        == d["sensor_fault_kinds"]
        == ["dropout", "glitch", "stuck"]
    )
    for f in s["faults_detected"]:
        assert f["detection_delay_s"] >= 0


def test_query_formats(half_hour: tuple[Path, dict]) -> None:
    data, _ = half_hour
    csv = plantwatch(
        "query",
        "SELECT count() AS n FROM plantwatch.machines FINAL",
        "--format",
        "csv",
        "--data-dir",
        str(data),
    )
    assert csv.stdout.splitlines() == ["n", "12"]
    table = plantwatch(
        "query",
        "SELECT machine_type, count() AS n FROM plantwatch.machines FINAL GROUP BY 1 ORDER BY 1",
        "--data-dir",
        str(data),
    )
    assert "centrifugal_pump" in table.stdout and "air_compressor" in table.stdout
    refused = plantwatch(
        "query", "DROP TABLE plantwatch.readings", "--data-dir", str(data), check=False
    )
    assert refused.returncode == 2 and "only one reading statement" in refused.stderr


def test_a_second_run_continues_without_storing_anything_twice(
    half_hour: tuple[Path, dict], tmp_path: Path
) -> None:
    data, first = half_hour
    second = run_summary(
        data,
        "--machines",
        "12",
        "--duration",
        "300",
        "--speed",
        "max",
        "--seed",
        "3",
        "--faults",
        "none",
    )
    assert second["readings_replayed"] == 0  # the first run drained its spool
    (row,) = query(
        data,
        "SELECT count() AS n, uniqExact(machine_id, sensor_id, seq) AS k FROM plantwatch.readings",
    )
    assert row["n"] == row["k"] == first["readings_stored"] + second["readings_stored"]
    assert second["run"]["sim_start"] > first["run"]["sim_start"]


def test_bad_options_are_refused_with_a_reason(tmp_path: Path) -> None:
    proc = plantwatch("run", "--speed", "fast", "--data-dir", str(tmp_path), check=False)
    assert proc.returncode == 2 and "--speed takes a number > 0 or 'max'" in proc.stderr
    proc = plantwatch(
        "run",
        "--faults",
        "meltdown:2",
        "--duration",
        "1",
        "--data-dir",
        str(tmp_path / "d"),
        check=False,
    )
    assert proc.returncode == 2 and "meltdown" in proc.stderr
    proc = plantwatch(
        "query", "SELECT 1", "--data-dir", str(tmp_path / "nothing-here"), check=False
    )
    assert proc.returncode == 2 and "run `plantwatch run" in proc.stderr


def test_live_view_renders_and_stops_cleanly(tmp_path: Path) -> None:
    proc = plantwatch(
        "run",
        "--machines",
        "3",
        "--duration",
        "2",
        "--speed",
        "30",
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert "machines" in proc.stdout and "L1-PUMP-01" in proc.stdout
    assert "[ok]" in proc.stdout
