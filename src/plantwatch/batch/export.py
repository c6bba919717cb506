"""The export: a source's rows into day × machine partitions of an archive, incrementally.

One run reads the source from the state its checkpoint holds and writes chunk after chunk. A
chunk is a small transaction over the archive:

1. the checkpoint records the chunk as ``pending`` (run id and chunk number);
2. the chunk's part files are written (checksums verified after upload), and the manifests of
   their partitions list them; malformed input goes to ``_rejects/`` with its reason;
3. the checkpoint takes the source's state after the chunk and drops ``pending``.

A run that finds a ``pending`` chunk (the last run died between 1 and 3) first removes that
chunk's files, manifest entries and rejects, then reads again from the committed state, so the
archive never holds a row twice nor misses one. The checkpoint lives in the archive itself
(``_checkpoints/<name>.json``), next to what it describes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.batch import layout
from plantwatch.batch.archive import Archive, encode, file_entry
from plantwatch.batch.sources.base import Chunk, Source
from plantwatch.core.errors import PlantwatchError

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
DEFAULT_MAX_ROWS = 500_000
_DAY_MS = 86_400_000


class ExportError(PlantwatchError):
    """An export that cannot run as asked (a checkpoint of another source, a bad range)."""


@dataclass(slots=True)
class ExportReport:
    source: str
    archive: str
    dataset: str
    format: str
    run_id: str
    checkpoint: str | None
    rows: int = 0
    rejects: int = 0
    files: int = 0
    bytes: int = 0
    chunks: int = 0
    partitions: list[str] = field(default_factory=list)
    recovered_files: int = 0  # files of an interrupted chunk removed before this run
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_s": round(self.rows_per_s, 1)}


def new_run_id(now: dt.datetime | None = None) -> str:
    """``20261205T063000Z7f3a``: sortable by start time, unique by its random tail."""
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + secrets.token_hex(3)


def default_checkpoint(source: Source, fmt: str) -> str:
    """A checkpoint name per (source, dataset, format): ``logs-parquet-3f2a9c1e``."""
    digest = hashlib.sha256(source.describe().encode()).hexdigest()[:10]
    return f"{source.dataset}-{fmt}-{digest}"


def split_partitions(table: pa.Table, dataset: str) -> list[tuple[layout.Partition, pa.Table]]:
    """The rows of ``table`` by UTC day of the dataset's time column and by machine."""
    if table.num_rows == 0:
        return []
    ts = table.column(layout.TIME_COLUMN[dataset])
    ms = pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False)
    days = np.floor_divide(ms, _DAY_MS)
    machines = pc.fill_null(table.column("machine_id"), "").combine_chunks()
    encoded = pc.dictionary_encode(machines)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = encoded.dictionary.to_pylist()
    key = (days - days.min()) * (len(names) + 1) + codes
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    cuts = np.flatnonzero(np.diff(sorted_key)) + 1
    out = []
    for idx in np.split(order, cuts):
        first = int(idx[0])
        day = dt.date(1970, 1, 1) + dt.timedelta(days=int(days[first]))
        machine = names[int(codes[first])] or layout.NO_MACHINE
        out.append((layout.Partition(dataset, day, machine), table.take(pa.array(idx))))
    return out


class Exporter:
    """Runs exports of one source into one archive."""

    def __init__(
        self,
        source: Source,
        archive: Archive,
        *,
        fmt: str = "parquet",
        checkpoint: str | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
        on_file: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self.archive = archive
        self.fmt = layout.check_format(fmt)
        self.checkpoint = checkpoint
        self.max_rows = max_rows
        #: called after each file is written (progress; tests use it to die mid-export)
        self.on_file = on_file

    def _load(self, since: dt.datetime | None, until: dt.datetime | None) -> dict[str, Any]:
        span = {
            "since": None if since is None else layout.iso_ms(since),
            "until": None if until is None else layout.iso_ms(until),
        }
        fresh = {
            "checkpoint_version": CHECKPOINT_VERSION,
            "source": self.source.describe(),
            "dataset": self.source.dataset,
            "format": self.fmt,
            "range": span,
            "state": None,
            "pending": None,
            "runs": [],
        }
        if self.checkpoint is None:
            return fresh
        saved = self.archive.read_json(layout.checkpoint_path(self.checkpoint))
        if saved is None:
            return fresh
        if not isinstance(saved, dict) or saved.get("checkpoint_version") != CHECKPOINT_VERSION:
            raise ExportError(
                f"checkpoint {self.checkpoint!r} in {self.archive.root_url} is not a "
                f"version {CHECKPOINT_VERSION} export checkpoint"
            )
        for key, mine in (("source", self.source.describe()), ("dataset", self.source.dataset)):
            if saved.get(key) != mine:
                raise ExportError(
                    f"checkpoint {self.checkpoint!r} belongs to {saved.get(key)!r}, not {mine!r}:"
                    " give this export another --checkpoint name"
                )
        if self.source.range_bound and saved.get("range", span) != span:
            raise ExportError(
                f"checkpoint {self.checkpoint!r} follows --since {saved['range']['since']} "
                f"--until {saved['range']['until']}: its cursor is the time rows were stored, so "
                "another range would leave a gap. Give this range its own --checkpoint NAME, "
                "or --no-checkpoint"
            )
        return saved

    def _save(self, ckpt: dict[str, Any]) -> None:
        if self.checkpoint is not None:
            self.archive.write_json(layout.checkpoint_path(self.checkpoint), ckpt)

    def run(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        run_id: str | None = None,
    ) -> ExportReport:
        if since is not None and until is not None and until <= since:
            raise ExportError(f"--until {until.isoformat()} is not after --since")
        started = time.perf_counter()
        run_id = run_id or new_run_id()
        report = ExportReport(
            self.source.describe(),
            self.archive.root_url,
            self.source.dataset,
            self.fmt,
            run_id,
            self.checkpoint,
        )
        ckpt = self._load(since, until)
        pending = ckpt.get("pending")
        if pending:
            report.recovered_files = self.archive.remove_run(
                pending["run_id"], chunk=int(pending["chunk"])
            )
            log.warning(
                "export %s: removed %d files of chunk %s of run %s, which did not finish",
                self.checkpoint,
                report.recovered_files,
                pending["chunk"],
                pending["run_id"],
            )
            ckpt["pending"] = None
            self._save(ckpt)
        partitions: set[str] = set()
        chunks = self.source.chunks(ckpt.get("state"), since, until, self.max_rows)
        for number, chunk in enumerate(chunks):
            if chunk.table.num_rows or chunk.rejects:
                ckpt["pending"] = {"run_id": run_id, "chunk": number}
                self._save(ckpt)
                self._write(chunk, run_id, number, report, partitions)
                report.chunks += 1
            ckpt["state"] = chunk.state
            ckpt["pending"] = None
            self._save(ckpt)
        report.partitions = sorted(partitions)
        report.seconds = time.perf_counter() - started
        ckpt["runs"] = [
            *ckpt.get("runs", [])[-99:],
            {
                "run_id": run_id,
                "finished_at": layout.iso_ms(dt.datetime.now(dt.UTC)),
                "rows": report.rows,
                "rejects": report.rejects,
                "files": report.files,
                "since": None if since is None else layout.iso_ms(since),
                "until": None if until is None else layout.iso_ms(until),
            },
        ]
        self._save(ckpt)
        return report

    def _write(
        self,
        chunk: Chunk,
        run_id: str,
        number: int,
        report: ExportReport,
        partitions: set[str],
    ) -> None:
        dataset = self.source.dataset
        name = layout.part_name(run_id, number, self.fmt)
        for partition, rows in split_partitions(chunk.table, dataset):
            data = encode(rows, self.fmt)
            digests = self.archive.put_bytes(f"{partition.path()}/{name}", data)
            entry = file_entry(rows, dataset, name, self.fmt, data, run_id, digests=digests)
            self.archive.add_files(partition, [entry])
            report.rows += rows.num_rows
            report.files += 1
            report.bytes += len(data)
            partitions.add(partition.path())
            if self.on_file is not None:
                self.on_file(f"{partition.path()}/{name}")
        if chunk.rejects:
            lines = "".join(
                json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in chunk.rejects
            )
            self.archive.put_bytes(layout.rejects_path(dataset, run_id, number), lines.encode())
            report.rejects += len(chunk.rejects)
