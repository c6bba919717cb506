"""The archive on real object-store servers: gcp-storage-emulator (gs://) and moto_server (s3://).

Each test gets a fresh bucket. Upload verification must use the store's own checksum (GCS
``md5Hash``, S3 ``ETag``), which :attr:`Archive.verified_by` records.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from plantwatch.batch import layout
from plantwatch.batch.archive import (
    Archive,
    ArchiveError,
    ChecksumMismatchError,
    encode,
)
from plantwatch.batch.layout import Partition

from archive_samples import DAY, T0, CorruptingArchive, put_part, sample_table
from object_store_support import StoreTarget

STORE_CHECKSUM = {"gs": "md5Hash", "s3": "etag"}
MACHINE = "line 1/press ü"


@pytest.fixture(params=["gs", "s3"])
def target(request: pytest.FixtureRequest) -> StoreTarget:
    fixture = {"gs": "gcs_archive_url", "s3": "s3_archive_url"}[request.param]
    found: StoreTarget = request.getfixturevalue(fixture)
    return found


def _open(target: StoreTarget) -> Archive:
    return Archive.open(target.url, target.storage_options)


def _bucket_path(target: StoreTarget, rel: str) -> str:
    return f"{target.url.split('://', 1)[1]}/{rel}"


def test_round_trip_verified_by_the_store(target: StoreTarget) -> None:
    archive = _open(target)
    scheme = target.store.scheme
    p = Partition("readings", DAY, MACHINE)
    first = sample_table("readings", 6)
    second = sample_table("readings", 3, start=T0 + dt.timedelta(hours=3))
    put_part(archive, p, "r1", 0, "parquet", first)
    put_part(archive, p, "r1", 1, "csv", second)
    # two parts and two manifest writes, every one checked with the store's own checksum
    assert archive.verified_by == {STORE_CHECKSUM[scheme]: 4}
    table = archive.read_partition(p)
    assert table.schema.equals(layout.schema("readings"), check_metadata=True)
    assert table.equals(pa.concat_tables([first, second]))
    assert archive.partitions("readings", machines=[MACHINE]) == [p]
    listed = archive.list("readings")
    assert listed == sorted(listed) and len(listed) == 3
    assert listed[0].startswith("readings/date=2026-12-05/machine_id=line%201%2Fpress%20%C3%BC/")
    manifest = archive.manifest(p)
    assert manifest is not None and manifest["rows"] == 9
    # what the store holds is what another client reads, under the prefix
    fs = target.store.filesystem()
    raw = fs.cat_file(_bucket_path(target, f"{p.path()}/part-r1-00001.csv"))
    assert raw == encode(second, "csv")
    archive.delete([f"{p.path()}/part-r1-00001.csv", "not/there.csv"])
    assert not archive.exists(f"{p.path()}/part-r1-00001.csv")


def test_json_and_missing_files(target: StoreTarget) -> None:
    archive = _open(target)
    assert archive.read_json("_checkpoints/c.json") is None
    archive.write_json("_checkpoints/c.json", {"state": {"offset": 3}, "pending": None})
    assert archive.read_json("_checkpoints/c.json") == {"state": {"offset": 3}, "pending": None}
    with pytest.raises(ArchiveError, match="no file"):
        archive.get_bytes("nothing/here.bin")


def test_corrupted_upload_is_detected_and_removed(target: StoreTarget) -> None:
    good = _open(target)
    bad = CorruptingArchive(good.root_url, good.fs, good.root, good.protocol)
    rel = "readings/date=2026-12-05/machine_id=m/part-r1-00000.parquet"
    with pytest.raises(ChecksumMismatchError) as caught:
        bad.put_bytes(rel, encode(sample_table("readings"), "parquet"))
    assert caught.value.method == STORE_CHECKSUM[target.store.scheme]
    assert not good.exists(rel)
    assert not target.store.filesystem().exists(_bucket_path(target, rel))


def test_verify_finds_altered_missing_and_orphan_files(target: StoreTarget) -> None:
    archive = _open(target)
    p = Partition("logs", DAY, layout.NO_MACHINE)
    a = put_part(archive, p, "r1", 0, "parquet", sample_table("logs"))
    b = put_part(archive, p, "r1", 1, "csv", sample_table("logs", 2))
    assert archive.verify().ok
    fs = target.store.filesystem()  # behind the archive's back
    data = bytearray(encode(sample_table("logs"), "parquet"))
    data[100] ^= 0xFF
    fs.pipe_file(_bucket_path(target, f"{p.path()}/{a.name}"), bytes(data))
    fs.rm_file(_bucket_path(target, f"{p.path()}/{b.name}"))
    fs.pipe_file(_bucket_path(target, f"{p.path()}/part-r9-00000.csv"), b"stray")
    report = archive.verify(["logs"])
    assert sorted((x.kind, x.path.rsplit("/", 1)[1]) for x in report.problems) == [
        ("checksum", a.name),
        ("missing", b.name),
        ("orphan", "part-r9-00000.csv"),
    ]
    with pytest.raises(ArchiveError):
        archive.read_partition(p)


def test_prune_and_remove_run(target: StoreTarget) -> None:
    archive = _open(target)
    now = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)
    cutoff = dt.date(2026, 12, 4)
    old = Partition("readings", cutoff - dt.timedelta(days=1), "m")
    kept = Partition("readings", cutoff, "m")
    for p in (old, kept):
        put_part(archive, p, "runA", 0, "parquet", sample_table("readings"))
        put_part(archive, p, "runB", 0, "csv", sample_table("readings", 2))
    archive.put_bytes(layout.rejects_path("readings", "runA", 0), b'{"reason": "x"}\n')

    report = archive.prune(dt.timedelta(hours=36), now=now)
    assert report.cutoff == cutoff
    assert (report.partitions, report.files, report.rows) == ((old,), 2, 8)
    assert archive.partitions("readings") == [kept]
    assert archive.list(old.path()) == []

    assert archive.remove_run("runA") == 2  # the part in `kept` and the rejects file
    assert [e.name for e in archive.entries(kept)] == ["part-runB-00000.csv"]
    assert archive.list(layout.REJECTS) == []
    assert archive.read_partition(kept).num_rows == 2
    assert archive.verify().ok


def test_endpoint_from_the_environment(
    target: StoreTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTWATCH_ARCHIVE_ENDPOINT_URL", target.store.endpoint)
    options: dict[str, Any] = {}
    if target.store.scheme == "s3":
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"},
        }
    archive = Archive.open(target.url, options)
    archive.put_bytes("x.bin", b"via the environment")
    assert target.store.filesystem().cat_file(_bucket_path(target, "x.bin")) == (
        b"via the environment"
    )


def test_missing_bucket_says_what_to_check(target: StoreTarget) -> None:
    scheme = target.store.scheme
    archive = Archive.open(f"{scheme}://no-such-bucket-pw/archive", target.storage_options)
    with pytest.raises(ArchiveError, match="is the bucket there") as caught:
        archive.put_bytes("a.bin", b"x")
    assert f"{scheme}://no-such-bucket-pw/archive/a.bin" in str(caught.value)
