"""`plantwatch export --from chdb://DIR`: a real run's stored history into an archive folder,
incrementally across a second run, as the CLI does it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from plantwatch.batch import layout
from plantwatch.batch.archive import Archive

from plantwatch_cli import plantwatch, query, run_summary

pytestmark = pytest.mark.slow

RUN = ("--machines", "3", "--speed", "max", "--seed", "5", "--faults", "bearing_wear:1,stuck:1")


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("export") / "data"
    run_summary(data, *RUN, "--duration", "900")
    return data


def export(data: Path, to: Path, *args: str) -> dict[str, Any]:
    report = to.parent / f"{to.name}-report.json"
    plantwatch("export", "--from", f"chdb://{data}", "--to", str(to), "--json", str(report), *args)
    return dict(json.loads(report.read_text()))


def archived(root: Path, dataset: str) -> pa.Table:
    archive = Archive.open(str(root))
    tables = [archive.read_partition(p) for p in archive.partitions(dataset)]
    return pa.concat_tables(tables) if tables else layout.schema(dataset).empty_table()


def stored_keys(data: Path) -> set[tuple[str, str, int]]:
    rows = query(data, "SELECT machine_id, sensor_id, seq FROM plantwatch.readings FINAL")
    return {(r["machine_id"], r["sensor_id"], int(r["seq"])) for r in rows}


def keys(table: pa.Table) -> list[tuple[str, str, int]]:
    return list(
        zip(
            table.column("machine_id").to_pylist(),
            table.column("sensor_id").to_pylist(),
            table.column("seq").to_pylist(),
            strict=True,
        )
    )


def test_readings_export_matches_the_store_then_resumes_after_another_run(
    plant: Path, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    first = export(plant, root, "--format", "parquet")
    before = stored_keys(plant)
    got = keys(archived(root, "readings"))
    assert first["rows"] == len(got) == len(before) > 10_000
    assert set(got) == before
    # the values themselves, not only the keys
    (row,) = query(
        plant,
        "SELECT sum(value) AS v, sum(toUnixTimestamp64Milli(ts)) AS t "
        "FROM plantwatch.readings FINAL",
    )
    table = archived(root, "readings")
    assert sum(table.column("value").to_pylist()) == pytest.approx(float(row["v"]), rel=1e-12)
    ts_ms = pa.compute.cast(table.column("ts"), pa.int64()).to_pylist()
    assert sum(ts_ms) == int(row["t"])
    # one partition per machine and day, named after the rows in it
    archive = Archive.open(str(root))
    for p in archive.partitions("readings"):
        part = archive.read_partition(p)
        assert set(part.column("machine_id").to_pylist()) == {p.machine_id}
        assert {t.date() for t in part.column("ts").to_pylist()} == {p.date}

    # the partitions are plain Hive partitions: what a notebook reads to train from the archive
    hive = ds.dataset(root / "readings", format="parquet", partitioning="hive")
    assert hive.count_rows() == len(before)
    pump = hive.to_table(filter=ds.field("machine_id") == p.machine_id)
    assert pump.num_rows == sum(1 for k in before if k[0] == p.machine_id) > 0

    assert export(plant, root)["rows"] == 0  # nothing new
    run_summary(plant, *RUN, "--duration", "300")  # the plant runs on into the same folder
    second = export(plant, root)
    after = stored_keys(plant)
    got = keys(archived(root, "readings"))
    assert second["rows"] == len(after) - len(before) > 0
    assert len(got) == len(set(got)) == len(after)  # no gap, no duplicate
    assert set(got) == after


@pytest.mark.parametrize(
    ("dataset", "key"),
    [
        ("anomalies", "concat(machine_id, sensor_id, detector, toString(ts))"),
        ("alert_events", "concat(fingerprint, toString(ts), state)"),
        ("features", "concat(machine_id, sensor_id, toString(window_start))"),
        ("alarm_events", "concat(alarm_id, toString(ts), event, user)"),
        ("dead_letters", "concat(machine_id, sensor_id, reason, payload)"),
    ],
)
def test_other_datasets_export_as_csv_with_what_the_store_holds(
    plant: Path, tmp_path: Path, dataset: str, key: str
) -> None:
    root = tmp_path / dataset
    report = export(plant, root, "--format", "csv", "--dataset", dataset)
    (row,) = query(plant, f"SELECT count() AS n FROM plantwatch.{dataset} FINAL")
    assert report["rows"] == int(row["n"])
    table = archived(root, dataset)
    assert table.schema == layout.schema(dataset)
    assert table.num_rows == int(row["n"])
    if dataset in ("anomalies", "alert_events", "features"):
        assert table.num_rows > 0  # the faults make some


def test_a_big_stored_batch_is_split_and_a_kill_inside_it_is_recovered(
    plant: Path, tmp_path: Path
) -> None:
    """A --speed max run stores its readings under few ingested_at values: chunks of 4,000 rows
    must split them (by a hash of the row), and a process killed inside such a split resumes
    from the part it reached, with nothing twice and nothing missed."""
    (row,) = query(
        plant,
        "SELECT max(n) AS biggest FROM (SELECT ingested_at, count() AS n "
        "FROM plantwatch.readings FINAL GROUP BY ingested_at)",
    )
    assert int(row["biggest"]) > 3 * 4000  # the case under test is there
    root = tmp_path / "split"
    script = f"""
import os
from plantwatch.batch.archive import Archive
from plantwatch.batch.export import Exporter, default_checkpoint
from plantwatch.batch.sources.store import StoreSource
source = StoreSource({f"chdb://{plant}"!r}, "readings")
n = 0
def on_file(path):
    global n
    n += 1
    if n == 7:
        os._exit(137)
Exporter(source, Archive.open({str(root)!r}), checkpoint=default_checkpoint(source, "parquet"),
         max_rows=4000, on_file=on_file).run()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert done.returncode == 137, done.stderr.decode()
    ckpt = next((root / "_checkpoints").glob("*.json"))
    assert json.loads(ckpt.read_text())["state"]["split"]["done"] >= 0  # it died inside a split
    report = export(plant, root, "--max-rows", "4000")
    assert report["recovered_files"] > 0 and report["chunks"] > 3
    got = keys(archived(root, "readings"))
    assert len(got) == len(set(got)) == len(stored_keys(plant))


def test_a_checkpoint_keeps_to_its_range(plant: Path, tmp_path: Path) -> None:
    """The store cursor follows the time rows were stored: a run over another --since/--until
    on the same checkpoint would skip rows, so it is refused, and a range of its own works."""
    root = tmp_path / "ranged"
    (row,) = query(
        plant, "SELECT toString(min(ts) + INTERVAL 5 MINUTE) AS cut FROM plantwatch.readings"
    )
    cut = row["cut"].replace(" ", "T") + "Z"
    first = export(plant, root, "--until", cut)
    refused = plantwatch(
        "export", "--from", f"chdb://{plant}", "--to", str(root), "--since", cut, check=False
    )
    assert refused.returncode == 2 and "would leave a gap" in refused.stderr
    second = export(plant, root, "--since", cut, "--checkpoint", "after-cut")
    got = keys(archived(root, "readings"))
    assert first["rows"] > 0 and second["rows"] > 0
    assert len(got) == len(set(got)) == len(stored_keys(plant))


def test_bad_sources_and_datasets_are_refused(plant: Path, tmp_path: Path) -> None:
    to = str(tmp_path / "a")
    cases = [
        (("--from", "ftp://x", "--to", to), "use logs://GLOB"),
        (("--from", f"chdb://{plant}", "--to", to, "--dataset", "nope"), "unknown dataset"),
        (("--from", f"chdb://{plant}", "--to", to, "--dataset", "logs"), "logs are exported"),
        (("--from", "logs:///tmp/*.x", "--to", to, "--dataset", "readings"), "holds logs"),
        (("--from", f"chdb://{plant}", "--to", to, "--since", "soon"), "is not a time"),
    ]
    for args, message in cases:
        done = plantwatch("export", *args, check=False)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
    empty = plantwatch(
        "replay", "--from", to, "--data-dir", str(tmp_path / "d"), "--since", "1d", check=False
    )
    assert empty.returncode == 1 and "nothing to replay" in empty.stderr


def test_the_archive_defaults_to_a_folder_in_the_data_folder(plant: Path, tmp_path: Path) -> None:
    """Without --to, --at and --from, export, ls, verify and replay agree on <data_dir>/archive,
    or on PLANTWATCH_ARCHIVE_URL when it is set."""
    data = tmp_path / "data"
    env = {"PLANTWATCH_DATA_DIR": str(data)}
    since = "2000-01-01"
    plantwatch("export", "--from", f"chdb://{plant}", "--since", since, env=env)
    listed = plantwatch("archive", "ls", "--dataset", "readings", env=env).stdout
    assert (data / "archive" / "readings").is_dir()
    assert listed.strip().endswith(f"{len(stored_keys(plant))} rows")
    elsewhere = tmp_path / "elsewhere"
    env["PLANTWATCH_ARCHIVE_URL"] = str(elsewhere)
    plantwatch("export", "--from", f"chdb://{plant}", "--since", since, env=env)
    assert (elsewhere / "readings").is_dir()
    assert plantwatch("archive", "verify", env=env).stdout.startswith("ok: ")
    # replay --data-dir names where to write; the archive stays the configured one
    del env["PLANTWATCH_ARCHIVE_URL"]
    plantwatch("replay", "--data-dir", str(tmp_path / "backfill"), env=env)
    (row,) = query(tmp_path / "backfill", "SELECT count() AS n FROM plantwatch.readings FINAL")
    assert int(row["n"]) == len(stored_keys(plant))
