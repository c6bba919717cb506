"""Replay: archived readings back through the pipeline, into a fresh chDB store or Kafka.

The source is a real ``plantwatch run`` (10 machines, one behind the legacy gateway, so seqs
have gaps where records were dead-lettered and duplicates were sent): its readings table is
copied into a database of the session's chDB engine, exported from there by the real exporter
(``plantwatch export``'s code) into an archive (a folder, a GCS emulator or moto's S3), replayed
into another database, and must come back row for row.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from plantwatch.batch import layout
from plantwatch.batch.archive import Archive
from plantwatch.batch.export import Exporter, ExportReport
from plantwatch.batch.replay import (
    SORT_KEYS,
    BusTarget,
    ReplayTarget,
    StoreTarget,
    day_tables,
    replay,
)
from plantwatch.batch.sources.store import StoreSource
from plantwatch.core.codec import ARROW, decode
from plantwatch.core.settings import Settings
from plantwatch.core.topics import Topics
from plantwatch.services import KafkaCluster
from plantwatch.store import ClickHouseStore, migrate, queries

from kafka_support import read_topic, unique_prefix
from plantwatch_cli import query

KEY = ["machine_id", "machine_type", "sensor_id", "kind", "ts", "seq", "value", "unit", "quality"]

DUMP = """
import sys
import pyarrow as pa, pyarrow.parquet as pq
from plantwatch.batch.sources.store import StoreSource
src = StoreSource("chdb://" + sys.argv[1], "readings")
tables = [c.table for c in src.chunks(None, None, None, 1_000_000)]
pq.write_table(pa.concat_tables(tables), sys.argv[2])
src.close()
"""


def run_plant(data: Path, *, machines: int, duration: int) -> pa.Table:
    """A real embedded run (subprocess: chDB opens one folder per process); its readings."""
    cmd = [sys.executable, "-m", "plantwatch.cli", "run", "--no-live", "--speed", "max"]
    cmd += ["--machines", str(machines), "--duration", str(duration), "--data-dir", str(data)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = data.parent / f"{data.name}-readings.parquet"
    dump = subprocess.run(
        [sys.executable, "-c", DUMP, str(data), str(out)], capture_output=True, text=True
    )
    assert dump.returncode == 0, dump.stderr
    return pq.read_table(out)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    table = run_plant(tmp_path_factory.mktemp("plant") / "data", machines=10, duration=900)
    assert table.num_rows > 50_000
    return table


@pytest.fixture(scope="module")
def run_db(source: pa.Table, chdb_engine: ClickHouseStore) -> Iterator[ClickHouseStore]:
    """The run's readings in a database of the session's chDB engine (the run's own folder is
    the subprocess's: chDB opens one folder per process)."""
    db = fresh_database(chdb_engine, "run")
    db.insert("readings", source)
    yield db
    db.command(f"DROP DATABASE IF EXISTS {db.database}")


@pytest.fixture(scope="module")
def archive(
    source: pa.Table, run_db: ClickHouseStore, tmp_path_factory: pytest.TempPathFactory
) -> Archive:
    """The run's readings exported to a local folder by two runs (the first half of the run's
    time, then the rest), so a partition holds two part files."""
    ts = source.column("ts")
    lo, hi = pc.min(ts).as_py(), pc.max(ts).as_py()
    mid = lo + (hi - lo) / 2
    root = str(tmp_path_factory.mktemp("archive"))
    _, first = export(run_db, root, until=mid, checkpoint="first-half")
    arch, second = export(run_db, root, since=mid, checkpoint="second-half")
    assert first.rows + second.rows == source.num_rows
    assert first.rows > 0 and second.rows > 0 and first.rejects == second.rejects == 0
    partitions = arch.partitions("readings")
    assert len(partitions) == len(set(first.partitions) | set(second.partitions))
    assert any(len(arch.entries(p)) == 2 for p in partitions)
    return arch


# -- archives, written by the real exporter from a chDB database -------------------------------


def fresh_database(engine: ClickHouseStore, prefix: str) -> ClickHouseStore:
    db = engine.using(f"{prefix}_{uuid.uuid4().hex[:12]}")
    migrate(db)
    return db


def export(
    db: ClickHouseStore,
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    fmt: str = "parquet",
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    checkpoint: str = "readings",
) -> tuple[Archive, ExportReport]:
    """``plantwatch export --from chdb://... --to url``: the readings of ``db``, in-process."""
    source = StoreSource(f"chdb://{db.capabilities.data_path}", "readings", database=db.database)
    source.open(store=db)
    arch = Archive.open(url, storage_options)
    exporter = Exporter(source, arch, fmt=fmt, checkpoint=checkpoint)
    return arch, exporter.run(since=since, until=until)


def archive_table(engine: ClickHouseStore, table: pa.Table, root: Path) -> Archive:
    """An archive of ``table`` (readings): stored in a scratch database, then exported."""
    db = fresh_database(engine, "scratch")
    try:
        db.insert("readings", table)
        arch, report = export(db, str(root))
    finally:
        db.command(f"DROP DATABASE IF EXISTS {db.database}")
    assert report.rows == table.num_rows
    return arch


def stored(store: ClickHouseStore, *, final: bool = True) -> pa.Table:
    cols = ", ".join(f"`{c}`" for c in KEY)
    t = store.query_arrow(
        f"SELECT {cols} FROM {store.database}.readings {'FINAL' if final else ''} "
        "ORDER BY machine_id, sensor_id, seq"
    )
    return _key_table(t)


def _key_table(t: pa.Table) -> pa.Table:
    schema = layout.schema("readings")
    cols = []
    for name in KEY:
        col = t.column(name)
        if pa.types.is_dictionary(col.type):
            col = pc.cast(col, col.type.value_type)
        cols.append(pc.cast(col, schema.field(name).type))
    out = pa.Table.from_arrays(cols, names=KEY)
    return out.sort_by(
        [("machine_id", "ascending"), ("sensor_id", "ascending"), ("seq", "ascending")]
    )


class Recording:
    """Delegates to a real target and keeps every batch it was sent."""

    def __init__(self, inner: ReplayTarget) -> None:
        self.inner = inner
        self.batches: list[pa.Table] = []
        self.registered: list[dict[str, str]] = []

    def describe(self) -> str:
        return self.inner.describe()

    def register(self, machines: Mapping[str, str]) -> None:
        self.registered.append(dict(machines))
        self.inner.register(machines)

    def send(self, batch: pa.Table) -> None:
        self.batches.append(batch)
        self.inner.send(batch)

    def finish(self) -> None:
        self.inner.finish()

    def summary(self) -> dict[str, Any]:
        return self.inner.summary()

    def close(self) -> None:
        self.inner.close()


def assert_event_time_order(batches: list[pa.Table]) -> None:
    """Emitted in (ts, machine, sensor, seq) order overall, so per machine ts never goes back."""
    t = pa.concat_tables(batches)
    keys = [(k, "ascending") for k in SORT_KEYS]
    order = np.asarray(pc.sort_indices(t, sort_keys=keys))
    assert (order == np.arange(t.num_rows)).all(), "batches are not in event-time order"
    ts = np.asarray(pc.cast(t.column("ts"), pa.int64()))
    machines = np.asarray(t.column("machine_id").to_pylist(), dtype=object)
    for m in set(machines):
        assert (np.diff(ts[machines == m]) >= 0).all(), m


# -- store -------------------------------------------------------------------------------------


def test_backfill_gives_back_the_archived_rows_and_twice_stores_nothing_twice(
    source: pa.Table, archive: Archive, store: ClickHouseStore
) -> None:
    target = Recording(StoreTarget(store, Settings()))
    try:
        report = replay(archive, target=target, batch_rows=7_000)
    finally:
        target.close()
    assert report.rows_sent == report.rows_read == source.num_rows
    assert report.batches == len(target.batches) >= source.num_rows // 7_000
    assert report.delivered["stored"] == source.num_rows
    assert report.delivered["duplicates"] == 0 and report.delivered["dead_letters"] == {}
    assert_event_time_order(target.batches)

    want = _key_table(source)
    assert stored(store).equals(want)
    assert stored(store, final=False).equals(want)  # not even before a merge
    types = {r["machine_id"]: r["machine_type"] for r in queries.machine_rows(store)}
    src_types = dict(
        zip(source["machine_id"].to_pylist(), source["machine_type"].to_pylist(), strict=True)
    )
    assert types == src_types and len(types) == 10
    # each machine registered once, with its archived type
    registered = Counter(m for r in target.registered for m in r)
    assert set(registered) == set(src_types) and set(registered.values()) == {1}
    assert {m: t for r in target.registered for m, t in r.items()} == src_types

    # again: the stream's de-duplication (restored from the store) drops every reading
    again = StoreTarget(store, Settings())
    try:
        second = replay(archive, target=again)
    finally:
        again.close()
    assert second.rows_sent == source.num_rows
    assert second.delivered["stored"] == 0
    assert second.delivered["duplicates"] == source.num_rows
    assert stored(store, final=False).equals(want)


# -- export → archive → replay, on a folder, GCS and S3 -------------------------------------------

#: (archive, format, how the store proves an upload: Archive.verified_by)
ROUND_TRIPS = [
    ("folder", "csv", "sha256-readback"),
    ("gcs_archive_url", "parquet", "md5Hash"),
    ("s3_archive_url", "csv", "etag"),
]


@pytest.mark.parametrize(("where", "fmt", "verified_by"), ROUND_TRIPS, ids=["folder", "gs", "s3"])
def test_export_archive_replay_round_trip(
    where: str,
    fmt: str,
    verified_by: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    source: pa.Table,
    run_db: ClickHouseStore,
    store: ClickHouseStore,
) -> None:
    if where == "folder":
        url, options, bucket = str(tmp_path / "archive"), {}, None
    else:
        target = request.getfixturevalue(where)
        url, options, bucket = target.url, target.storage_options, target.store
    arch, exported = export(run_db, url, options, fmt=fmt)
    assert exported.rows == source.num_rows and exported.rejects == 0
    days = pc.strftime(source.column("ts"), format="%Y-%m-%d").to_pylist()
    want_partitions = {
        layout.Partition("readings", dt.date.fromisoformat(d), m).path()
        for d, m in zip(days, source.column("machine_id").to_pylist(), strict=True)
    }
    assert exported.files == len(exported.partitions)  # one chunk: one file per partition
    assert set(exported.partitions) == want_partitions
    # every write (parts, manifests, checkpoint) was checked by the store's own checksum
    assert set(arch.verified_by) == {verified_by}, arch.verified_by
    assert arch.verified_by[verified_by] >= 2 * exported.files
    if bucket is not None:  # the objects are there, seen by another client
        fs = bucket.filesystem()
        parts = [p for p in fs.find(url) if p.rsplit("/", 1)[-1].startswith("part-")]
        assert len(parts) == exported.files
        assert all(p.endswith(f".{fmt}") for p in parts)

    reopened = Archive.open(url, options)  # a fresh client, as a later replay has
    check = reopened.verify()
    assert check.ok, check.problems
    assert (check.files, check.rows) == (exported.files, source.num_rows)
    assert check.partitions == len(exported.partitions)

    target_store = StoreTarget(store, Settings())
    try:
        report = replay(reopened, target=target_store, batch_rows=25_000)
    finally:
        target_store.close()
    assert report.rows_read == report.rows_sent == source.num_rows
    assert report.delivered["stored"] == source.num_rows
    assert report.delivered["dead_letters"] == {}

    got, want = stored(store), stored(run_db)
    assert got.num_rows == want.num_rows == source.num_rows
    assert Counter(zip(*got.to_pydict().values(), strict=True)) == Counter(
        zip(*want.to_pydict().values(), strict=True)
    )
    assert got.equals(want)


def synthetic(machines: dict[str, str], start: dt.datetime, seconds: int) -> pa.Table:
    """Readings of one temperature sensor per machine, one a second, in the archive schema."""
    rows: dict[str, list[Any]] = {n: [] for n in layout.schema("readings").names}
    for i, (m, mtype) in enumerate(sorted(machines.items())):
        for k in range(seconds):
            ts = start + dt.timedelta(seconds=k, milliseconds=100 * i)
            rows["machine_id"].append(m)
            rows["machine_type"].append(mtype)
            rows["sensor_id"].append("t1")
            rows["kind"].append("temperature")
            rows["ts"].append(ts)
            rows["seq"].append(k + 1)
            rows["value"].append(40.0 + (k % 7) * 0.25)
            rows["unit"].append("°C")  # canonical, as archived
            rows["quality"].append("good")
            rows["anomaly_score"].append(0.0)
            rows["late"].append(0)
            rows["ingested_at"].append(ts)
    return pa.table(rows, schema=layout.schema("readings"))


def test_filters_and_days_across_midnight(
    tmp_path: Path, store: ClickHouseStore, chdb_engine: ClickHouseStore
) -> None:
    midnight = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    table = synthetic(
        {"m-a": "centrifugal_pump", "m/b": "air_compressor", "m-c": "centrifugal_pump"},
        midnight - dt.timedelta(seconds=300),
        600,
    )
    arch = archive_table(chdb_engine, table, tmp_path / "arch")
    days = [d for d, _, _ in day_tables(arch)]
    assert days == [dt.date(2026, 12, 5), dt.date(2026, 12, 6)]

    since = midnight - dt.timedelta(seconds=100)
    until = midnight.replace(tzinfo=None) + dt.timedelta(seconds=50)  # naive: UTC
    target = Recording(StoreTarget(store, Settings()))
    try:
        report = replay(arch, target=target, since=since, until=until, machines=["m/b", "m-c"])
    finally:
        target.close()
    ts = table.column("ts")
    want = table.filter(
        pc.and_(
            pc.and_(
                pc.greater_equal(ts, pa.scalar(since, layout.TS)),
                pc.less(ts, pa.scalar(midnight + dt.timedelta(seconds=50), layout.TS)),
            ),
            pc.is_in(table.column("machine_id"), pa.array(["m/b", "m-c"])),
        )
    )
    assert want.num_rows == 2 * 150
    assert report.rows_sent == want.num_rows
    assert report.machines == {"m/b", "m-c"}
    assert report.days == 2
    assert report.first_ts == since + dt.timedelta(milliseconds=100)  # m-c comes first
    assert report.last_ts is not None
    assert report.last_ts < midnight + dt.timedelta(seconds=50)
    assert_event_time_order(target.batches)
    # both machines have readings on the first day: registered then, not again the next day
    assert target.registered == [{"m-c": "centrifugal_pump", "m/b": "air_compressor"}]
    assert stored(store).equals(_key_table(want))
    assert {r["machine_id"]: r["machine_type"] for r in queries.machine_rows(store)} == {
        "m/b": "air_compressor",
        "m-c": "centrifugal_pump",
    }


class Sink:
    """A target that only counts: pacing and stopping need no store."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, int]] = []

    def describe(self) -> str:
        return "counting"

    def register(self, machines: Mapping[str, str]) -> None:
        pass

    def send(self, batch: pa.Table) -> None:
        self.sent.append((time.monotonic(), batch.num_rows))

    def finish(self) -> None:
        pass

    def summary(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


def test_speed_paces_by_event_time_and_stop_ends_cleanly(
    tmp_path: Path, chdb_engine: ClickHouseStore
) -> None:
    start = dt.datetime(2026, 12, 5, 8, tzinfo=dt.UTC)
    table = synthetic({"m1": "centrifugal_pump"}, start, 120)
    arch = archive_table(chdb_engine, table, tmp_path / "arch")
    # 20 event-time seconds at 10x: about 2 wall seconds, in several batches
    sink = Sink()
    report = replay(arch, target=sink, until=start + dt.timedelta(seconds=21), speed=10.0)
    assert report.rows_sent == 21
    assert 1.8 <= report.wall_seconds < 4.0, report.wall_seconds
    assert len(sink.sent) >= 5

    sink, stop = Sink(), threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    report = replay(arch, target=sink, speed=10.0, stop=stop)
    timer.join()
    assert report.stopped
    assert 0 < report.rows_sent < 20
    assert report.wall_seconds < 2.0


class StopAtFirstBatch(Sink):
    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def send(self, batch: pa.Table) -> None:
        super().send(batch)
        self.stop.set()


def test_stop_ends_the_replay_before_the_next_day_is_read(
    tmp_path: Path, chdb_engine: ClickHouseStore
) -> None:
    midnight = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    table = synthetic({"m1": "centrifugal_pump"}, midnight - dt.timedelta(seconds=30), 60)
    arch = archive_table(chdb_engine, table, tmp_path / "arch")
    assert [d for d, _, _ in day_tables(arch)] == [dt.date(2026, 12, 5), dt.date(2026, 12, 6)]

    stop = threading.Event()
    sink = StopAtFirstBatch(stop)
    report = replay(arch, target=sink, batch_rows=10, stop=stop)
    assert report.stopped
    assert sink.sent and [n for _, n in sink.sent] == [10]
    assert report.rows_sent == report.batches * 10 == 10
    assert (report.days, report.rows_read) == (1, 30)  # the second day was never read

    stop = threading.Event()
    stop.set()  # before the start: the first day is read, nothing is sent
    report = replay(arch, target=Sink(), stop=stop)
    assert report.stopped and report.rows_sent == report.batches == 0
    assert (report.days, report.rows_read) == (1, 30)


# -- Kafka -------------------------------------------------------------------------------------


def test_bus_target_publishes_raw_readings_as_the_sdk_does(
    source: pa.Table, archive: Archive, kafka: KafkaCluster
) -> None:
    prefix = unique_prefix()
    settings = Settings(topic_prefix=prefix)
    topics = Topics(prefix)
    target = BusTarget(f"kafka://{kafka.bootstrap}", settings, max_rows_per_message=3_000)
    try:
        report = replay(archive, target=target, batch_rows=20_000)
    finally:
        target.close()
    assert report.rows_sent == source.num_rows
    assert report.delivered["machines_announced"] == 10

    messages = read_topic(kafka.bootstrap, topics.raw)
    tables = []
    last: dict[tuple[str, int], int] = {}
    partitions: dict[str, set[int]] = {}
    for m in messages:
        headers = {k: (v or b"").decode() for k, v in (m.headers() or [])}
        assert headers["content-type"] == ARROW
        t = decode(ARROW, m.value()).table
        assert int(headers["count"]) == t.num_rows <= 3_000
        machines = set(t.column("machine_id").to_pylist())
        assert machines == {m.key().decode()}, "one machine per message, keyed by it"
        assert t.column("schema_version").to_pylist() == [1] * t.num_rows
        ts = np.asarray(pc.cast(t.column("ts"), pa.int64()))
        machine = m.key().decode()
        prev = last.get((machine, m.partition()), -(2**62))
        assert ts[0] >= prev and (np.diff(ts) >= 0).all(), f"{machine} goes back in time"
        last[(machine, m.partition())] = int(ts[-1])
        partitions.setdefault(machine, set()).add(m.partition())
        tables.append(t)
    got = pa.concat_tables(tables)
    assert all(len(p) == 1 for p in partitions.values()), "a machine stays on one partition"
    assert len(set().union(*partitions.values())) > 1, "machines spread over partitions"
    cols = ["machine_id", "sensor_id", "kind", "ts", "seq", "value", "unit", "quality"]
    sort = [("machine_id", "ascending"), ("sensor_id", "ascending"), ("seq", "ascending")]
    want = source.select(cols).sort_by(sort)
    assert got.select(cols).sort_by(sort).cast(want.schema).equals(want)

    registry = read_topic(kafka.bootstrap, topics.machines, quiet_s=2.0)
    assert {m.key().decode() for m in registry} == set(source["machine_id"].to_pylist())
    announced = {m.key().decode(): json.loads(m.value()) for m in registry}
    src_types = dict(
        zip(source["machine_id"].to_pylist(), source["machine_type"].to_pylist(), strict=True)
    )
    assert {m: row["machine_type"] for m, row in announced.items()} == src_types
    assert all(row["machine_id"] == m and row["name"] == m for m, row in announced.items())


# -- the command ---------------------------------------------------------------------------------

CLI = """
import argparse, sys
from plantwatch.batch import replay_cli
p = argparse.ArgumentParser(prog="plantwatch")
replay_cli.add_parser(p.add_subparsers(dest="command", required=True))
sys.exit(replay_cli.cmd(p.parse_args(sys.argv[1:])))
"""


def test_command_replays_into_a_data_folder(tmp_path: Path, chdb_engine: ClickHouseStore) -> None:
    start = dt.datetime(2026, 12, 5, 23, 59, tzinfo=dt.UTC)
    table = synthetic({"m1": "centrifugal_pump", "m2": "air_compressor"}, start, 120)
    archive_table(chdb_engine, table, tmp_path / "arch")
    data = tmp_path / "data"
    args = ["replay", "--from", str(tmp_path / "arch"), "--machine", "m2"]
    args += ["--since", "2026-12-05T23:59:30", "--until", "2026-12-06T00:00:30Z"]
    args += ["--speed", "max", "--data-dir", str(data)]
    proc = subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["rows_sent"] == 60 and report["machines"] == ["m2"]
    assert report["first_ts"] == "2026-12-05T23:59:30.100Z"
    assert report["target_counts"]["stored"] == 60
    rows = query(data, "SELECT count() AS n, min(seq) AS lo FROM plantwatch.readings FINAL")
    assert rows == [{"n": 60, "lo": 31}]
