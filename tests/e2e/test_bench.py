"""``plantwatch bench --quick``: every figure of the full benchmark is produced, consistent with
the others, and from a run that accounted for every reading. Not how fast: that is the
benchmark's business (``make bench``, docs/performance.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from plantwatch_cli import plantwatch


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = plantwatch("bench", "--quick", "--json", str(out), timeout=600)
    return json.loads(out.read_text()), done.stdout


def number(x: Any) -> float:
    assert isinstance(x, int | float) and not isinstance(x, bool), x
    return float(x)


def test_the_embedded_run_accounts_for_every_reading_and_has_its_costs(bench: Any) -> None:
    r, _ = bench
    assert r["mode"] == "quick" and r["errors"] == {}
    e = r["embedded"]
    assert e["accounting_ok"] is True
    assert e["readings_generated"] == e["readings_stored"] + e["duplicates"] + e["dead_letters"]
    assert e["readings_stored"] > 0.9 * e["readings_generated"]
    assert number(e["readings_per_s"]) > 0
    assert number(e["cpu_s_per_million"]) > 0
    assert number(e["peak_rss_mb"]) > 50
    assert e["backlog_readings"]["end"] == 0


def test_ceiling_and_reference_work_on_the_rows_the_embedded_run_stored(bench: Any) -> None:
    r, _ = bench
    e, c, ref = r["embedded"], r["ceiling"], r["reference"]
    # the recording run is the same plant (same seed): the same rows
    assert c["readings"] == r["recorded_readings"] == e["readings_stored"] == c["stored_check"]
    assert e["trials"] == [e["readings_per_s"]] and c["trials"] == [c["readings_per_s"]]
    assert number(c["readings_per_s"]) > 0
    assert ref["received"] == r["plan"]["reference_limit"]
    assert ref["received"] == ref["stored"] + ref["duplicates"] + ref["rejected"]
    assert ref["stored_check"] == ref["stored"]
    assert ref["inserts"] == -(-ref["stored"] // 500)  # 500-row inserts, as the seed did
    q = r["ratios"]
    assert q["pipeline_over_ceiling"] == round(e["readings_per_s"] / c["readings_per_s"], 3)
    assert q["pipeline_over_reference"] == round(e["readings_per_s"] / ref["readings_per_s"], 3)


def test_latency_at_both_offered_loads_from_reading_to_store_and_to_notification(
    bench: Any,
) -> None:
    r, _ = bench
    loads = {x["offered_readings_per_s"]: x for x in r["latency"]}
    assert sorted(loads) == [10_000, 100_000]
    for x in loads.values():
        assert x["accounting_ok"] is True
        assert number(x["readings_per_s"]) > 0
        lat, notif = x["latency_ms"], x["notification_latency_ms"]
        assert number(lat["p50"]) <= number(lat["p95"]) <= number(lat["p99"])
        assert notif["n"] > 0 and x["notifications_sent"] >= notif["n"]
        assert number(notif["p50"]) <= number(notif["p95"]) <= number(notif["p99"])
        mem = x["memory"]
        assert mem["samples"] >= 5 and number(mem["rss_max_mb"]) >= number(mem["rss_end_mb"])


def test_scaling_covers_ten_to_ten_thousand_sensors_and_the_batch_sizes(bench: Any) -> None:
    r, _ = bench
    points = r["scaling"]["sensors"]
    sensors = [p["sensors"] for p in points]
    assert len(points) == 4 and sensors == sorted(sensors)
    for want, got in zip((10, 100, 1_000, 10_000), sensors, strict=True):
        assert 0.5 * want <= got <= 1.5 * want
    for p in points:
        assert p["accounting_ok"] is True
        # the same total rate whatever the sensor count
        assert p["sensors"] * p["rate_hz"] == pytest.approx(r["plan"]["scaling_rate"])
        assert number(p["readings_per_s"]) > 0 and number(p["peak_rss_mb"]) > 0
    batch = r["scaling"]["batch"]
    assert [p["batch_rows"] for p in batch["points"]] == r["plan"]["batch_sizes"]
    assert batch["saturates_at_batch_rows"] in r["plan"]["batch_sizes"]


def test_the_kafka_shape_goes_through_a_real_broker_and_loses_nothing(bench: Any) -> None:
    r, _ = bench
    k = r["kafka"]
    assert k["accounting_ok"] is True
    assert k["readings_generated"] == r["embedded"]["readings_generated"]  # the same plant
    assert number(k["readings_per_s"]) > 0
    assert k["backlog_readings"]["max"] > 0 and k["backlog_readings"]["end"] == 0
    assert r["ratios"]["kafka_over_embedded"] == round(
        k["readings_per_s"] / r["embedded"]["readings_per_s"], 3
    )


def test_the_stream_stage_runs_three_ways_on_one_input_and_the_flink_job_loses_nothing(
    bench: Any,
) -> None:
    r, table = bench
    f = r["flink"]
    assert f["readings"] == f["generated"] > 0
    stored = f["embedded"]["readings_stored"]
    assert 0 < stored <= f["readings"]
    assert f["kafka_worker"]["readings"] == f["readings"]
    assert [run["parallelism"] for run in f["flink"]] == [1, 2]
    for run in f["flink"]:
        assert run["complete"] is True and run["readings_out"] == stored
        assert number(run["readings_per_s"]) > 0 and run["wall_seconds"] > run["processing_seconds"]
    for shape in (f["embedded"], f["kafka_worker"]):
        number(shape["readings_per_s"])
    assert r["ratios"]["flink_over_embedded"] == round(
        f["flink"][0]["readings_per_s"] / f["embedded"]["readings_per_s"], 3
    )
    assert "Flink MiniCluster, parallelism 2" in table


def test_every_goal_has_a_measured_figure_and_the_table_shows_them(bench: Any) -> None:
    r, table = bench
    assert len(r["goals"]) == 7
    for g in r["goals"]:
        number(g["measured"])
        assert g["met"] in (True, False)
    for heading in ("THROUGHPUT", "LATENCY", "SCALING", "GOALS", "ceiling", "reference", "Kafka"):
        assert heading in table
    assert r["machine"]["cpus"] >= 1 and r["duration_s"] > 0


def test_a_measurement_keeps_to_its_own_store_rules_and_broker_whatever_the_environment() -> None:
    env = dict(
        os.environ,
        PLANTWATCH_STORE_URL="http://127.0.0.1:9/",  # nothing listens there
        PLANTWATCH_RULES_FILE="/nonexistent/rules.yaml",
        PLANTWATCH_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
    )
    done = subprocess.run(
        [sys.executable, "-m", "plantwatch.bench.child", "plant"],
        input=json.dumps({"machines": 5, "sim_seconds": 60}),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    r = json.loads(done.stdout.strip().splitlines()[-1])
    assert r["accounting_ok"] is True and r["readings_stored"] > 0
