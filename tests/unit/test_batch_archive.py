"""The archive on a local folder: files, manifests, part files, checksums, prune, remove_run."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from plantwatch.batch import layout
from plantwatch.batch.archive import (
    Archive,
    ArchiveError,
    ChecksumMismatchError,
    FileEntry,
    decode,
    encode,
    file_entry,
)
from plantwatch.batch.archive_cli import add_parser, cmd
from plantwatch.batch.layout import Partition, parse_span

from archive_samples import DAY, T0, CorruptingArchive, put_part, sample_table

MACHINE = "line 1/press ü"


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return Archive.open(str(tmp_path / "archive"))


def test_put_get_list_delete(tmp_path: Path) -> None:
    archive = Archive.open(str(tmp_path / "new" / "root"))  # a bare path: created
    assert (tmp_path / "new" / "root").is_dir()
    sha, md5 = archive.put_bytes("a/b/c.bin", b"hello")
    assert (sha, md5) == (hashlib.sha256(b"hello").hexdigest(), hashlib.md5(b"hello").hexdigest())
    archive.put_bytes("a/a.bin", b"x")
    archive.put_bytes("a/a.bin", b"replaced")
    assert archive.get_bytes("a/a.bin") == b"replaced"
    assert archive.list("") == ["a/a.bin", "a/b/c.bin"]
    assert archive.list("a/b") == ["a/b/c.bin"]
    assert archive.list("nothing/here") == []
    assert archive.exists("a/b/c.bin") and not archive.exists("a/b")
    assert archive.verified_by == {"sha256-readback": 3}
    assert not list((tmp_path / "new").rglob("*.tmp"))  # temp files renamed away
    archive.delete(["a/b/c.bin", "a/missing.bin"])
    assert archive.list("") == ["a/a.bin"]
    assert not (tmp_path / "new" / "root" / "a" / "b").exists()  # empty folders go too
    with pytest.raises(ArchiveError, match="no file"):
        archive.get_bytes("a/b/c.bin")


def test_file_url_and_json(tmp_path: Path) -> None:
    archive = Archive.open(f"file://{tmp_path}")
    assert archive.read_json("_checkpoints/x.json") is None
    archive.write_json("_checkpoints/x.json", {"ü": [1, None]})
    assert archive.read_json("_checkpoints/x.json") == {"ü": [1, None]}
    assert (tmp_path / "_checkpoints" / "x.json").exists()
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ArchiveError, match="not JSON"):
        archive.read_json("bad.json")


def test_unknown_scheme_is_an_archive_error() -> None:
    with pytest.raises(ArchiveError, match="s3://bucket"):
        Archive.open("ftp://example.org/x")


@pytest.mark.parametrize("fmt", layout.FORMATS)
@pytest.mark.parametrize("dataset", layout.DATASETS)
def test_read_partition_round_trip(archive: Archive, dataset: str, fmt: str) -> None:
    p = Partition(dataset, DAY, MACHINE)
    first = sample_table(dataset, 6)
    second = sample_table(dataset, 4, start=T0 + dt.timedelta(hours=2))
    put_part(archive, p, "r1", 0, fmt, first)
    put_part(archive, p, "r1", 1, fmt, second)
    table = archive.read_partition(p)
    assert table.schema.equals(layout.schema(dataset), check_metadata=True)
    assert table.equals(pa.concat_tables([first, second]))
    assert table.column("machine_id").to_pylist()[:3] == ["line 1/press ü", None, ""]


def test_csv_text_form() -> None:
    table = sample_table("readings", 3)
    text = encode(table, "csv").decode()
    header, row0, row1, row2 = text.splitlines()[:4]
    assert header.split(",")[4] == '"ts"'
    assert '"2026-12-05T06:30:00.123Z"' in row0
    assert row1.startswith(",,,,")  # nulls are empty fields
    assert row2.startswith('"",""')  # empty strings stay quoted
    assert decode(text.encode(), "csv", "readings").equals(table)


@pytest.mark.parametrize("fmt", layout.FORMATS)
def test_special_floats_survive(fmt: str) -> None:
    table = sample_table("readings", 4)
    values = pa.array([float("nan"), float("inf"), float("-inf"), None], pa.float64())
    table = table.set_column(table.schema.get_field_index("value"), "value", values)
    back = decode(encode(table, fmt), fmt, "readings").column("value").to_pylist()
    assert math.isnan(back[0]) and back[1:] == [float("inf"), float("-inf"), None]


def test_decode_rejects_foreign_files() -> None:
    with pytest.raises(ArchiveError, match="rows lack the columns"):
        decode(b"a,b\n1,2\n", "csv", "readings")
    with pytest.raises(ArchiveError, match="cannot read"):
        decode(b"not parquet", "parquet", "readings")


def test_manifest_add_and_rewrite(archive: Archive) -> None:
    p = Partition("readings", DAY, "m-001")
    late = put_part(archive, p, "r2", 0, "csv", sample_table("readings", 2, T0))
    early = put_part(
        archive, p, "r1", 3, "parquet", sample_table("readings", 3, T0 - dt.timedelta(hours=1))
    )
    manifest = archive.manifest(p)
    assert manifest is not None
    assert list(manifest) == [
        "manifest_version",
        "schema_version",
        "dataset",
        "partition",
        "rows",
        "min_ts",
        "max_ts",
        "files",
    ]
    assert manifest["partition"] == {"date": "2026-12-05", "machine_id": "m-001"}
    assert manifest["rows"] == 5
    assert manifest["min_ts"] == early.min_ts == "2026-12-05T05:30:00.123Z"
    assert manifest["max_ts"] == late.max_ts == "2026-12-05T06:37:00.124Z"
    assert [f["name"] for f in manifest["files"]] == [early.name, late.name]  # sorted
    assert FileEntry.from_json(manifest["files"][1]) == late
    # a file added again under the same name replaces its entry; totals are recomputed
    put_part(archive, p, "r2", 0, "csv", sample_table("readings", 1, T0))
    manifest = archive.manifest(p)
    assert manifest is not None
    assert manifest["rows"] == 4 and len(manifest["files"]) == 2
    assert manifest["max_ts"] == "2026-12-05T06:30:00.123Z"
    on_disk = json.loads((Path(archive.root) / p.manifest_path()).read_text())
    assert on_disk == manifest


def test_file_entry_fields() -> None:
    table = sample_table("dead_letters", 3)
    data = encode(table, "parquet")
    e = file_entry(table, "dead_letters", "part-r9-00002.parquet", "parquet", data, "r9")
    assert (e.rows, e.bytes, e.run_id, e.format) == (3, len(data), "r9", "parquet")
    assert e.sha256 == hashlib.sha256(data).hexdigest()
    assert e.md5 == hashlib.md5(data).hexdigest()
    assert (e.min_ts, e.max_ts) == ("2026-12-05T06:30:00.123Z", "2026-12-05T06:44:00.125Z")
    empty = layout.schema("logs").empty_table()
    e = file_entry(empty, "logs", "part-r9-00000.csv", "csv", b"", "r9")
    assert (e.rows, e.min_ts, e.max_ts) == (0, None, None)


def test_partitions_filters(archive: Archive) -> None:
    days = [DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)]
    for day in days:
        for machine in (MACHINE, layout.NO_MACHINE):
            put_part(archive, Partition("readings", day, machine))
    put_part(archive, Partition("logs", DAY, "m-1"))
    assert Path(
        archive.root, "readings", "date=2026-12-05", "machine_id=line%201%2Fpress%20%C3%BC"
    ).is_dir()
    everything = archive.partitions("readings")
    assert len(everything) == 6 and everything == sorted(everything)
    assert archive.partitions("readings", since=DAY, until=DAY, machines=[MACHINE]) == [
        Partition("readings", DAY, MACHINE)
    ]
    assert [p.date for p in archive.partitions("readings", since=DAY)] == [days[1]] * 2 + [
        days[2]
    ] * 2
    assert archive.partitions("readings", machines=[layout.NO_MACHINE])[0].machine_id == "_none"
    assert archive.partitions("features") == []
    with pytest.raises(layout.LayoutError):
        archive.partitions("nope")


def test_altered_files_are_detected(archive: Archive) -> None:
    p = Partition("readings", DAY, MACHINE)
    entry = put_part(archive, p)
    path = Path(archive.root) / p.path() / entry.name
    assert archive.verify().ok
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="manifest sha256"):
        archive.read_partition(p)
    report = archive.verify()
    assert [(x.kind, x.path) for x in report.problems] == [("checksum", f"{p.path()}/{entry.name}")]
    path.write_bytes(bytes(data[:-1]))
    assert [x.kind for x in archive.verify().problems] == ["size"]
    path.unlink()
    assert [x.kind for x in archive.verify().problems] == ["missing"]
    with pytest.raises(ArchiveError):
        archive.read_partition(p)


def test_orphans_are_reported(archive: Archive) -> None:
    p = Partition("features", DAY, "m-1")
    put_part(archive, p, "r1", 0)
    archive.put_bytes(
        f"{p.path()}/part-r2-00000.parquet", encode(sample_table("features"), "parquet")
    )
    lonely = Partition("features", DAY, "m-2")
    archive.put_bytes(f"{lonely.path()}/part-r2-00000.csv", b"x")
    report = archive.verify(["features"])
    assert sorted((x.kind, x.path) for x in report.problems) == [
        ("orphan", f"{p.path()}/part-r2-00000.parquet"),
        ("orphan", f"{lonely.path()}/part-r2-00000.csv"),
    ]
    assert (report.partitions, report.files, report.rows) == (2, 1, 6)
    assert archive.verify(["readings"]).ok
    assert archive.partitions("features") == [p]  # a folder without a manifest is no partition


def test_upload_verification_deletes_a_bad_write(tmp_path: Path) -> None:
    good = Archive.open(str(tmp_path))
    bad = CorruptingArchive(good.root_url, good.fs, good.root, good.protocol)
    with pytest.raises(ChecksumMismatchError) as caught:
        bad.put_bytes("x/part-r1-00000.csv", b"hello")
    assert caught.value.method == "sha256-readback"
    assert not good.exists("x/part-r1-00000.csv")
    assert bad.verified_by == {"sha256-readback": 1}


class CountingArchive(Archive):
    """Counts reads (by relative path) and listings."""

    def __init__(self, root_url: str, fs: Any, root: str, protocol: str) -> None:
        super().__init__(root_url, fs, root, protocol)
        self.reads: Counter[str] = Counter()
        self.listings = 0

    def _read(self, path: str) -> bytes:
        self.reads[self._rel(path)] += 1
        return super()._read(path)

    def _find(self, prefix: str) -> dict[str, int]:
        self.listings += 1
        return super()._find(prefix)


def test_reads_and_listings_are_not_repeated(tmp_path: Path) -> None:
    good = Archive.open(str(tmp_path))
    archive = CountingArchive(good.root_url, good.fs, good.root, good.protocol)
    p = Partition("readings", DAY, "m-1")
    put_part(archive, p, "r1", 0)
    put_part(archive, p, "r1", 1, "csv")
    archive.put_bytes(layout.rejects_path("readings", "r1", 0), b"{}\n")
    archive.reads.clear()
    assert archive.read_partition(p).num_rows == 12
    assert archive.reads == {  # the manifest once, each part once
        p.manifest_path(): 1,
        f"{p.path()}/part-r1-00000.parquet": 1,
        f"{p.path()}/part-r1-00001.csv": 1,
    }
    archive.listings = 0
    assert archive.remove_run("r1") == 3
    assert archive.listings == 1  # one listing covers every dataset and the rejects
    assert archive.list("") == []


def test_remove_run_removes_only_that_run_and_chunk(archive: Archive) -> None:
    p1 = Partition("readings", DAY, "m-1")
    p2 = Partition("logs", DAY, layout.NO_MACHINE)
    for p in (p1, p2):
        put_part(archive, p, "runA", 0)
        put_part(archive, p, "runA", 1, "csv")
        put_part(archive, p, "runB", 0)
    archive.put_bytes(f"{p1.path()}/part-runA-00002.parquet", b"crashed before the manifest")
    archive.put_bytes(layout.rejects_path("logs", "runA", 1), b"{}\n")
    archive.put_bytes(layout.rejects_path("logs", "runA", 2), b"{}\n")
    archive.put_bytes(layout.rejects_path("logs", "runB", 1), b"{}\n")
    archive.put_bytes(f"{p1.path()}/part-runAA-00001.csv", b"another run, unlisted")

    assert archive.remove_run("runA", chunk=1) == 3  # two parts and one rejects file
    names = {p: [e.name for e in archive.entries(p)] for p in (p1, p2)}
    assert names[p1] == names[p2] == ["part-runA-00000.parquet", "part-runB-00000.parquet"]
    assert archive.exists(f"{p1.path()}/part-runA-00002.parquet")
    assert archive.list(layout.REJECTS) == [
        layout.rejects_path("logs", "runA", 2),
        layout.rejects_path("logs", "runB", 1),
    ]

    assert archive.remove_run("runA") == 4  # two chunk-0 parts, the unlisted chunk 2, rejects
    assert [e.name for e in archive.entries(p1)] == ["part-runB-00000.parquet"]
    assert archive.list(layout.REJECTS) == [layout.rejects_path("logs", "runB", 1)]
    assert archive.exists(f"{p1.path()}/part-runAA-00001.csv")
    assert archive.read_partition(p2).num_rows == 6
    assert archive.remove_run("runA") == 0

    assert archive.remove_run("runB") == 3
    assert archive.manifest(p1) is None and archive.partitions("logs") == []


def test_prune_boundaries(archive: Archive) -> None:
    now = dt.datetime(2026, 12, 5, 0, 30, tzinfo=dt.UTC)
    cutoff = dt.date(2026, 11, 5)  # (now - 30d).date()
    for days in (-2, -1, 0, 1):
        put_part(archive, Partition("readings", cutoff + dt.timedelta(days=days), "m"))
    put_part(archive, Partition("logs", cutoff - dt.timedelta(days=5), "m"))
    orphan_only = Partition("readings", cutoff - dt.timedelta(days=9), "m")
    archive.put_bytes(f"{orphan_only.path()}/part-x-00000.csv", b"abc")

    dry = archive.prune(dt.timedelta(days=30), now=now, datasets=["readings"], dry_run=True)
    assert dry.cutoff == cutoff and dry.dry_run
    assert [p.date for p in dry.partitions] == [
        cutoff - dt.timedelta(days=9),
        cutoff - dt.timedelta(days=2),
        cutoff - dt.timedelta(days=1),
    ]
    assert (dry.files, dry.rows) == (3, 12)
    assert len(archive.partitions("readings")) == 4  # nothing removed

    done = archive.prune(dt.timedelta(days=30), now=now, datasets=["readings"])
    assert (done.partitions, done.files, done.rows, done.bytes) == (
        dry.partitions,
        dry.files,
        dry.rows,
        dry.bytes,
    )
    assert [p.date for p in archive.partitions("readings")] == [cutoff, cutoff + dt.timedelta(1)]
    assert len(archive.partitions("logs")) == 1  # not asked for
    assert not Path(archive.root, orphan_only.path()).exists()
    assert archive.verify().ok
    assert len(archive.prune(dt.timedelta(days=30), now=now).partitions) == 1  # the logs one
    with pytest.raises(ArchiveError, match="aware"):
        archive.prune(dt.timedelta(days=1), now=dt.datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("365d", dt.timedelta(days=365)),
        ("12h", dt.timedelta(hours=12)),
        ("30m", dt.timedelta(minutes=30)),
        ("2w", dt.timedelta(weeks=2)),
        ("90s", dt.timedelta(seconds=90)),
        (" 7d ", dt.timedelta(days=7)),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_span(text) == expected


@pytest.mark.parametrize("text", ["", "d", "10", "1y", "-5d", "0d", "1.5h", "5 days"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a span"):
        parse_span(text)


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="plantwatch")
    add_parser(parser.add_subparsers(dest="command"))
    return cmd(parser.parse_args(["archive", *argv]))


def test_cli(archive: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    old = Partition("readings", dt.date(2020, 1, 1), "m-1")
    recent = Partition("readings", dt.datetime.now(dt.UTC).date(), "m-1")
    put_part(archive, old)
    put_part(archive, recent)
    at = ["--at", archive.root_url]
    assert _cli("ls", *at) == 0
    out = capsys.readouterr().out
    assert (
        "readings/date=2020-01-01/machine_id=m-1\t6 rows\t1 files\t"
        "2026-12-05T06:30:00.123Z .. 2026-12-05T07:05:00.128Z\n"
    ) in out
    assert f"{recent.path()}\t6 rows" in out
    assert out.endswith("12 rows\n")
    assert _cli("verify", *at, "--dataset", "readings") == 0
    Path(archive.root, old.path(), "part-zz-00000.csv").write_bytes(b"x")
    assert _cli("verify", *at) == 1
    assert "orphan\treadings/date=2020-01-01/machine_id=m-1/part-zz-00000.csv" in (
        capsys.readouterr().out
    )
    assert _cli("prune", *at, "--older-than", "365d", "--dry-run") == 0
    assert "would remove 1 partitions, 2 files" in capsys.readouterr().out
    assert len(archive.partitions("readings")) == 2
    assert _cli("prune", *at, "--older-than", "365d", "--dataset", "readings") == 0
    assert archive.partitions("readings") == [recent]
    with pytest.raises(SystemExit):
        _cli("prune", *at, "--older-than", "soon")
