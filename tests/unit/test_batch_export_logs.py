"""The export from log files into a folder archive: partitions, increments, rotation, crashes."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from plantwatch.batch import layout
from plantwatch.batch.archive import Archive
from plantwatch.batch.export import Exporter, ExportError, split_partitions
from plantwatch.batch.sources.logs import LogFilesSource

T0 = dt.datetime(2026, 12, 4, 23, 59, 0, tzinfo=dt.UTC)


def ecs(i: int, *, machine: str | None = "m-001", t: dt.datetime | None = None) -> str:
    """One ECS log line, numbered by ``i`` in its message."""
    when = t or T0 + dt.timedelta(seconds=i)
    doc: dict[str, Any] = {
        "@timestamp": layout.iso_ms(when),
        "log.level": "info",
        "message": f"line {i}",
        "service.name": "plantwatch-test",
        "host.name": "box",
        "log.logger": "plantwatch.test",
    }
    if machine is not None:
        doc |= {"machine.id": machine, "sensor.id": "vib-1", "event.code": "sdk.reading.rejected"}
    return json.dumps(doc) + "\n"


def write(path: Path, lines: list[str], mode: str = "a") -> None:
    with path.open(mode, encoding="utf-8") as f:
        f.writelines(lines)


def archived(root: Path) -> pa.Table:
    archive = Archive.open(str(root))
    tables = [archive.read_partition(p) for p in archive.partitions("logs")]
    return pa.concat_tables(tables) if tables else layout.schema("logs").empty_table()


def messages(root: Path) -> list[str]:
    return sorted(archived(root).column("message").to_pylist())


def exporter(logs: Path, root: Path, **kw: Any) -> Exporter:
    source = LogFilesSource(str(logs / "*.ndjson"))
    return Exporter(source, Archive.open(str(root)), checkpoint="logs", **kw)


def test_rows_land_in_day_and_machine_partitions_with_manifests(tmp_path: Path) -> None:
    logs, root = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    # 120 lines from 23:59 on Dec 4 to 00:00:59 on Dec 5, two machines and machine-less lines
    lines = [ecs(i, machine=("m-001", "m/02 b", None)[i % 3]) for i in range(120)]
    write(logs / "svc.ndjson", lines)
    report = exporter(logs, root).run()
    assert report.rows == 120 and report.rejects == 0
    archive = Archive.open(str(root))
    parts = archive.partitions("logs")
    assert {(p.date.isoformat(), p.machine_id) for p in parts} == {
        (d, m) for d in ("2026-12-04", "2026-12-05") for m in ("m-001", "m/02 b", layout.NO_MACHINE)
    }
    for p in parts:
        rows = archive.read_partition(p)
        manifest = archive.manifest(p)
        assert manifest is not None and manifest["rows"] == rows.num_rows > 0
        days = {t.date().isoformat() for t in rows.column("timestamp").to_pylist()}
        assert days == {p.date.isoformat()}
        expected = None if p.machine_id == layout.NO_MACHINE else p.machine_id
        assert set(rows.column("machine_id").to_pylist()) == {expected}
    # a machine id with '/' and a space stays one path segment
    assert (root / "logs" / "date=2026-12-05" / "machine_id=m%2F02%20b").is_dir()
    assert messages(root) == sorted(f"line {i}" for i in range(120))


def test_columns_and_fields_follow_the_ecs_names(tmp_path: Path) -> None:
    logs, root = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    nested = {
        "@timestamp": "2026-12-05T06:00:00.250+01:00",
        "log": {"level": "warning", "logger": "plantwatch.edge"},
        "message": "spool full",
        "service": {"name": "plantwatch-sdk"},
        "host": {"name": "edge-7"},
        "machine": {"id": "press-2"},
        "event": {"code": "sdk.spool.full", "action": "drop"},
        "spool": {"bytes": 1024},
    }
    write(logs / "a.ndjson", [json.dumps(nested) + "\n"])
    exporter(logs, root).run()
    row = archived(root).to_pylist()[0]
    assert row["timestamp"] == dt.datetime(2026, 12, 5, 5, 0, 0, 250000, tzinfo=dt.UTC)
    assert (row["level"], row["logger"], row["service"], row["host"]) == (
        "warning",
        "plantwatch.edge",
        "plantwatch-sdk",
        "edge-7",
    )
    assert (row["machine_id"], row["sensor_id"], row["event_code"]) == (
        "press-2",
        None,
        "sdk.spool.full",
    )
    assert json.loads(row["fields"]) == {"event.action": "drop", "spool.bytes": 1024}
    assert row["origin"] == f"{logs / 'a.ndjson'}:0"


def test_runs_are_incremental_and_wait_for_a_line_being_written(tmp_path: Path) -> None:
    logs, root = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    live = logs / "svc.ndjson"
    write(live, [ecs(i) for i in range(10)])
    half = ecs(10)
    write(live, [half[:25]])  # a line the writer has not finished
    assert exporter(logs, root).run().rows == 10
    assert exporter(logs, root).run().rows == 0
    write(live, [half[25:], *(ecs(i) for i in range(11, 15))])
    assert exporter(logs, root).run().rows == 5
    assert messages(root) == sorted(f"line {i}" for i in range(15))


def test_a_file_rotated_between_runs_is_read_on_not_missed_nor_repeated(tmp_path: Path) -> None:
    logs, root = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    live = logs / "svc.ndjson"
    write(live, [ecs(i) for i in range(50)])
    assert exporter(logs, root).run().rows == 50
    write(live, [ecs(i) for i in range(50, 70)])  # written after the run, before the rotation
    rotated = logs / "svc-20261205T000000Z-1.ndjson"
    inode = live.stat().st_ino
    live.rename(rotated)
    assert rotated.stat().st_ino == inode
    write(live, [ecs(i) for i in range(70, 90)], mode="w")
    report = exporter(logs, root).run()
    assert report.rows == 40
    assert messages(root) == sorted(f"line {i}" for i in range(90))


def test_a_file_truncated_in_place_is_read_again(tmp_path: Path) -> None:
    logs, root = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    live = logs / "svc.ndjson"
    write(live, [ecs(i) for i in range(30)])
    exporter(logs, root).run()
    write(live, [ecs(i) for i in range(100, 103)], mode="w")  # copytruncate: same inode
    assert exporter(logs, root).run().rows == 3
    assert len(messages(root)) == 33


def test_malformed_lines_are_rejects_with_a_reason_and_the_rest_goes_on(tmp_path: Path) -> None:
    logs, root = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    bad = [
        "not json at all\n",
        "[1, 2]\n",
        json.dumps({"message": "no time"}) + "\n",
        json.dumps({"@timestamp": "yesterday", "message": "bad time"}) + "\n",
    ]
    write(logs / "svc.ndjson", [ecs(0), *bad, ecs(1), "\n"])
    report = exporter(logs, root).run()
    assert (report.rows, report.rejects) == (2, 4)
    files = list((root / "_rejects" / "logs").glob("rejects-*.jsonl"))
    assert len(files) == 1
    rejects = [json.loads(x) for x in files[0].read_text().splitlines()]
    assert [r["raw"] for r in rejects] == [b.rstrip("\n") for b in bad]
    reasons = [r["reason"] for r in rejects]
    assert "Expecting value" in reasons[0]
    assert "not an object" in reasons[1]
    assert reasons[2] == "missing @timestamp"
    assert "not ISO-8601" in reasons[3]
    assert rejects[0]["origin"].endswith("svc.ndjson:" + str(len(ecs(0))))
    # rejects are not read twice either
    assert exporter(logs, root).run().rejects == 0


def test_since_and_until_and_until_leaves_the_rest_for_the_next_run(tmp_path: Path) -> None:
    logs, root = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    write(logs / "svc.ndjson", [ecs(i) for i in range(100)])
    cut = T0 + dt.timedelta(seconds=60)
    first = exporter(logs, root).run(since=T0 + dt.timedelta(seconds=10), until=cut)
    assert first.rows == 50
    assert exporter(logs, root).run().rows == 40  # 60..99: the lines from --until on
    assert messages(root) == sorted(f"line {i}" for i in range(10, 100))
    with pytest.raises(ExportError, match="not after"):
        exporter(logs, root).run(since=cut, until=cut)


def test_a_crash_mid_chunk_is_undone_and_redone_no_gap_no_duplicate(tmp_path: Path) -> None:
    logs, root = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    day = dt.datetime(2026, 12, 5, 1, 0, tzinfo=dt.UTC)  # one day: one partition per machine
    lines = [ecs(i, machine=f"m-{i % 4}", t=day + dt.timedelta(seconds=i)) for i in range(400)]
    write(logs / "svc.ndjson", lines)

    class CrashError(Exception):
        pass

    written: list[str] = []

    def die_in_second_chunk(path: str) -> None:
        written.append(path)
        if len(written) == 6:  # chunk 0 wrote 4 partitions; die after 2 of chunk 1's
            raise CrashError

    with pytest.raises(CrashError):
        exporter(logs, root, max_rows=100, on_file=die_in_second_chunk).run()
    assert len(archived(root)) == 150  # chunk 0 committed, plus half of chunk 1
    ckpt = json.loads((root / "_checkpoints" / "logs.json").read_text())
    assert ckpt["pending"]["chunk"] == 1
    report = exporter(logs, root, max_rows=100).run()
    assert report.recovered_files == 2
    assert report.rows == 300
    assert messages(root) == sorted(f"line {i}" for i in range(400))
    assert Archive.open(str(root)).verify().ok


def test_a_killed_export_process_is_recovered_by_the_next_run(tmp_path: Path) -> None:
    """A real process death (os._exit, no cleanup) in the middle of a chunk."""
    logs, root = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    write(logs / "svc.ndjson", [ecs(i, machine=f"m-{i % 3}") for i in range(3000)])
    script = f"""
import os
from plantwatch.batch.archive import Archive
from plantwatch.batch.export import Exporter
from plantwatch.batch.sources.logs import LogFilesSource
n = 0
def on_file(path):
    global n
    n += 1
    if n == 8:
        os._exit(137)
Exporter(LogFilesSource({str(logs / "*.ndjson")!r}), Archive.open({str(root)!r}),
         checkpoint="logs", max_rows=1000, on_file=on_file).run()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 137, done.stderr.decode()
    assert 0 < len(archived(root)) < 3000
    report = exporter(logs, root, max_rows=1000).run()
    assert report.recovered_files == 2  # chunk 0 wrote 6 files (2 days x 3 machines), then 2
    assert messages(root) == sorted(f"line {i}" for i in range(3000))


def test_a_checkpoint_belongs_to_one_source(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    root = tmp_path / "archive"
    write(tmp_path / "a" / "x.ndjson", [ecs(1)])
    exporter(tmp_path / "a", root).run()
    with pytest.raises(ExportError, match="belongs to"):
        exporter(tmp_path / "b", root).run()


def test_csv_round_trip_gives_the_same_rows_as_parquet(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "svc.ndjson", [ecs(i, machine=("m-1", None)[i % 2]) for i in range(50)])
    tables = {}
    for fmt in ("csv", "parquet"):
        root = tmp_path / fmt
        exporter(logs, root, fmt=fmt).run()
        assert {p.suffix for p in root.rglob("part-*")} == {f".{fmt}"}
        tables[fmt] = archived(root).sort_by([("origin", "ascending")])
    assert tables["csv"].equals(tables["parquet"])


def test_split_partitions_keeps_every_row_once() -> None:
    n = 1000
    base = int(T0.timestamp() * 1000)
    table = pa.table(
        {
            "timestamp": pa.array([base + i * 600_000 for i in range(n)], layout.TS),
            "machine_id": [None if i % 7 == 0 else f"m-{i % 5}" for i in range(n)],
            "i": list(range(n)),
        }
    )
    parts = split_partitions(table, "logs")
    assert sum(t.num_rows for _, t in parts) == n
    assert sorted(x for _, t in parts for x in t.column("i").to_pylist()) == list(range(n))
    assert len({p for p, _ in parts}) == len(parts)
    for p, t in parts:
        days = {x.date() for x in t.column("timestamp").to_pylist()}
        assert days == {p.date}


def test_files_listed_are_the_files_written(tmp_path: Path) -> None:
    logs, root = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    lines = [ecs(i, machine=f"m-{i % 2}", t=T0 + dt.timedelta(seconds=5 * i)) for i in range(20)]
    write(logs / "svc.ndjson", lines)
    exporter(logs, root).run()
    on_disk = sorted(os.path.relpath(p, root) for p in root.rglob("part-*") if p.is_file())
    archive = Archive.open(str(root))
    listed = sorted(
        f"{p.path()}/{f['name']}"
        for p in archive.partitions("logs")
        for f in (archive.manifest(p) or {"files": []})["files"]
    )
    assert on_disk == listed and len(listed) == 4


def test_the_real_rotating_handler_across_runs_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """plantwatch's own log files (size and midnight rotation, backups deleted only after
    export) exported between writes: every line once."""
    from plantwatch.core.logs import EcsFileHandler, EcsFormatter

    logs, root = tmp_path / "logs", tmp_path / "archive"
    now = [dt.datetime(2026, 12, 4, 23, 58, tzinfo=dt.UTC)]
    handler = EcsFileHandler(
        logs, "plantwatch-run", max_bytes=4096, backups=1000, clock=lambda: now[0]
    )
    handler.setFormatter(EcsFormatter(service="plantwatch-run"))
    logger = logging.getLogger("plantwatch.test.rotation")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        n = 0
        for _ in range(6):  # write, export, write, export ...
            for _ in range(150):
                now[0] += dt.timedelta(seconds=1)
                logger.info("line %d", n, extra={"machine.id": f"m-{n % 3}"})
                n += 1
            exporter(logs, root).run()
        rotated = handler.rotated_files()
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert len(rotated) > 10  # it did rotate, by size and at midnight
    assert messages(root) == sorted(f"line {i}" for i in range(n))
