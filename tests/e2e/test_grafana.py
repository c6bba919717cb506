"""Grafana as code against a real simulated run: every dashboard query runs on chDB with the
plugin's macros expanded, and the exported Grafana alert rules, replayed over the stored windows,
fire on the same (rule, machine, sensor) instances as the stream's alert engine did.

The plant runs as ``plantwatch run`` in a subprocess (its own chDB folder); its tables are
copied through Arrow files into a database of the session's chDB engine (chDB opens one folder
per process).
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.feather as feather
import pytest

from plantwatch.alert.rulefile import default_rules_path
from plantwatch.grafana.check import compare_rules, run_queries
from plantwatch.grafana.export import Connection, build, rules_for_grafana
from plantwatch.grafana.macros import QueryContext, expand
from plantwatch.store import ClickHouseStore, migrate

from plantwatch_cli import plantwatch

# tables a run writes (alarms is a view over alarm_events; the rollups follow from readings)
TABLES = (
    "machines",
    "readings",
    "raw_readings",
    "features",
    "anomalies",
    "alert_events",
    "alarm_events",
    "dead_letters",
    "notifications",
    "pipeline_metrics",
)
DUMP = """
import sys, pyarrow.feather as feather
from plantwatch.store import open_store
store = open_store(f"chdb://{sys.argv[1]}/clickhouse")
for t in sys.argv[3:]:
    table = store.query_arrow(f"SELECT * FROM plantwatch.{t}")
    feather.write_feather(table, f"{sys.argv[2]}/{t}.arrow")
store.close()
"""


@pytest.fixture(scope="module")
def plant_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twenty simulated minutes of 10 machines (faults of every kind): the data folder."""
    data = tmp_path_factory.mktemp("grafana") / "data"
    plantwatch(
        "run", "--no-live", "--machines", "10", "--duration", "1200", "--speed", "max",
        "--seed", "7", "--data-dir", str(data),
    )  # fmt: skip
    return data


@pytest.fixture(scope="module")
def plant_db(plant_run: Path, chdb_engine: ClickHouseStore) -> Iterator[ClickHouseStore]:
    """The run's tables in a database of ours."""
    data, dump = plant_run, plant_run.parent / "dump"
    dump.mkdir()
    subprocess.run(
        [sys.executable, "-c", DUMP, str(data), str(dump), *TABLES], check=True, timeout=300
    )
    db = chdb_engine.using(f"g_{uuid.uuid4().hex[:12]}")
    migrate(db)
    for t in TABLES:
        table = feather.read_table(dump / f"{t}.arrow")
        db.insert(t, table)
    yield db
    db.command(f"DROP DATABASE IF EXISTS {db.database}")


def _export(db: ClickHouseStore, rules_text: str | None = None) -> Any:
    return build(rules_for_grafana(rules_text), Connection(database=db.database))


def _count(db: ClickHouseStore, sql: str) -> int:
    """The first value of a one-row query (``{db}``: the test's database)."""
    return int(db.query_rows(sql.replace("{db}", db.database))[0][0])


def test_the_run_is_copied_whole(plant_db: ClickHouseStore) -> None:
    assert _count(plant_db, "SELECT count() FROM {db}.readings") > 50_000
    # the rollups were built from the copied readings by the materialized views
    assert _count(plant_db, "SELECT sum(count) FROM {db}.readings_1m") == _count(
        plant_db, "SELECT count() FROM {db}.readings WHERE quality != 'bad'"
    )


def test_every_dashboard_query_runs_and_returns_its_columns(plant_db: ClickHouseStore) -> None:
    export = _export(plant_db)
    lo, hi = plant_db.query_rows(
        f"SELECT toUnixTimestamp64Milli(min(ts)), toUnixTimestamp64Milli(max(ts))"
        f" FROM {plant_db.database}.readings"
    )[0]
    # what the base tables say each panel must show over the whole run (else it may be empty)
    empty_ok = {
        "Active alarms by severity": "SELECT count() FROM {db}.alarms WHERE status = 'ACTIVE'",
        "Sensor alarms": "SELECT count() FROM {db}.alarms WHERE status = 'ACTIVE'",
        "Late readings": "SELECT count() FROM {db}.readings WHERE late = 1",
        "Notification deliveries": "SELECT count() FROM {db}.notifications",
        "Silent sensors": "SELECT 0",  # a minute after the last reading nothing is silent yet
        # the replayed run has no promoted model (tests/e2e/test_models_e2e.py scores one)
        "Model anomalies": "SELECT count() FROM {db}.anomalies WHERE detector LIKE 'model:%'",
    }
    seen: set[tuple[str, str]] = set()
    failures = []
    # The run's 20 minutes read raw rows; 10 and 30 days read the 1-minute and 1-hour rollups.
    # The range ends a minute after the last reading: at --speed max the run stores its
    # batches (ingested_at, received_at: the plant's clock) when its clock has reached the end.
    end = hi + 60_000
    for span_ms in (end - lo, 10 * 86_400_000, 30 * 86_400_000):
        for r in run_queries(plant_db, export.queries, end - span_ms, end):
            seen.add((r.query.dashboard, r.query.panel))
            if not r.ok:
                failures.append(f"{r.query.dashboard}/{r.query.panel}: {r.error or r.columns}")
            elif r.rows == 0:
                check = empty_ok.get(r.query.panel)
                if check is None or _count(plant_db, check) > 0:
                    failures.append(f"{r.query.dashboard}/{r.query.panel}: no rows ({span_ms} ms)")
    assert not failures, "\n".join(failures)
    assert seen == {(q.dashboard, q.panel) for q in export.queries}
    # a repeated panel runs for every kind of the machine
    kinds = [r for r in run_queries(plant_db, export.queries, lo, hi) if r.query.repeat == "kind"]
    assert len({tuple(r.variables["kind"]) for r in kinds}) == len(kinds) >= 5  # one per kind


def test_silent_sensors_show_when_the_range_runs_past_the_data(plant_db: ClickHouseStore) -> None:
    export = _export(plant_db)
    hi = _count(plant_db, "SELECT toUnixTimestamp64Milli(max(ts)) FROM {db}.readings")
    silent = [
        r
        for r in run_queries(plant_db, export.queries, hi - 3_600_000, hi + 300_000)
        if r.query.panel.startswith("Silent sensors")
    ]
    sensors = _count(plant_db, "SELECT uniqExact(machine_id, sensor_id) FROM {db}.readings")
    assert [r.rows for r in silent] == [sensors]


def test_grafana_rules_fire_on_the_same_instances_as_the_stream(
    plant_db: ClickHouseStore,
) -> None:
    cmp = compare_rules(plant_db, _export(plant_db))
    only_g, only_s = sorted(cmp.grafana - cmp.stream), sorted(cmp.stream - cmp.grafana)
    assert not only_g and not only_s, f"only Grafana: {only_g}\nonly the stream: {only_s}"
    rules = {r for r, _, _ in cmp.stream}
    # a threshold, a rate, a detector's score and all three sensor-health checks
    assert {
        "vibration_zone",
        "temperature_rising_fast",
        "baseline_deviation",
        "sensor_stuck",
        "sensor_no_data",
        "sensor_out_of_range",
    } <= rules, rules
    assert len(cmp.stream) >= 8


def test_every_alert_rule_query_returns_labels_and_one_value(plant_db: ClickHouseStore) -> None:
    export = _export(plant_db)
    hi = _count(plant_db, "SELECT toUnixTimestamp64Milli(max(window_end)) FROM {db}.features")
    labels = ("machine_id", "sensor_id", "kind", "machine_type", "line", "site", "unit")
    answered = set()
    for cr in export.compiled:
        # evaluated when the last stored window is due: its end + the rule's delay
        t = hi + cr.range_s[1] * 1000
        sql = expand(cr.sql, QueryContext(t - cr.range_s[0] * 1000, t - cr.range_s[1] * 1000))
        table = plant_db.query_arrow(sql, read_only=True)
        assert tuple(table.column_names) == (*labels, "value"), cr.title
        assert pa.types.is_floating(table.schema.field("value").type), cr.title
        if table.num_rows:
            answered.add(cr.rule)
    # every rule but the anomaly score (only flagged windows) sees the last window's sensors
    assert answered >= {cr.rule for cr in export.compiled} - {"baseline_deviation"}


def test_the_comparison_sees_a_rule_that_differs(plant_db: ClickHouseStore) -> None:
    # Grafana compiled from a rules file whose vibration limit is far above the stream's
    text = default_rules_path().read_text("utf-8")
    changed = text.replace("mean: { above: { major: 4.5, critical: 7.1 } }", "mean: { above: 50 }")
    assert changed != text
    cmp = compare_rules(plant_db, _export(plant_db, changed))
    missing = cmp.stream - cmp.grafana
    assert missing and {r for r, _, _ in missing} == {"vibration_zone"}


def test_cli_check_runs_every_query_and_replays_the_rules(plant_run: Path) -> None:
    proc = plantwatch("grafana", "check", "--data-dir", str(plant_run))
    lines = proc.stdout.splitlines()
    assert any(line.startswith("plantwatch-pipeline / Consumer lag: ") for line in lines)
    assert not [line for line in lines if " rows, " in line and not line.endswith(", ok")]
    summary = next(line for line in lines if line.startswith("alert rules:"))
    fired = re.search(r"Grafana fired (\d+) instances, the stream (\d+)", summary)
    assert fired and fired.group(1) == fired.group(2) and int(fired.group(1)) >= 8
    assert "only" not in proc.stdout


def test_cli_export_then_check_is_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "provisioning"
    plantwatch("grafana", "export", "--out", str(out))
    assert (out / "alerting" / "rules.yaml").is_file()
    assert len(list((out / "dashboards" / "json").glob("*.json"))) == 4
    plantwatch("grafana", "export", "--out", str(out), "--check")
    (out / "alerting" / "rules.yaml").write_text("tampered\n")
    proc = plantwatch("grafana", "export", "--out", str(out), "--check", check=False)
    assert proc.returncode == 1 and "rules.yaml: differs" in proc.stderr
