"""Export source over JSON-lines log files (``logs://GLOB``), resumable across rotations.

Each file is tracked by identity, not by name: ``<device>:<inode>`` plus a digest of its first
bytes (so a recycled inode is seen as a new file), with the byte offset read so far. A rotation
renames the live file and keeps its inode, so a file rotated between two runs is read on from
where the last run stopped, and the new live file from its start: nothing missed, nothing read
twice. Only complete lines are read; a line still being written waits for the next run. A file
shorter than its recorded offset was truncated in place (copytruncate) and is read again from 0.

Lines are ECS JSON objects, flat (``"log.level"``) or nested (``{"log": {"level": ..}}``).
A line that is not a JSON object or has no valid ``@timestamp`` is a reject with the reason;
a naive timestamp is taken as UTC. Files are read oldest first (modification time, then name).
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from plantwatch.batch import layout
from plantwatch.batch.sources.base import Chunk

#: how many leading bytes identify a file next to its inode
HEAD_BYTES = 256
_READ_BYTES = 4 * 1024 * 1024
log = logging.getLogger(__name__)

#: ECS field → column of the ``logs`` dataset; every other field goes to ``fields``
COLUMNS = {
    "log.level": "level",
    "service.name": "service",
    "host.name": "host",
    "log.logger": "logger",
    "message": "message",
    "machine.id": "machine_id",
    "sensor.id": "sensor_id",
    "event.code": "event_code",
}


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested ECS objects as dotted keys: ``{"log": {"level": "info"}}`` → ``log.level``."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def parse_timestamp(value: Any) -> dt.datetime:
    if not isinstance(value, str) or not value:
        raise ValueError("missing @timestamp")
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"@timestamp {value!r} is not ISO-8601") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


class LogRows:
    """Rows of the ``logs`` dataset, gathered column by column."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in layout.schema("logs").names}

    def __len__(self) -> int:
        return len(self.cols["timestamp"])

    def add(self, flat: dict[str, Any], ts: dt.datetime, origin: str) -> None:
        c = self.cols
        c["timestamp"].append(ts)
        rest = {k: v for k, v in flat.items() if k not in COLUMNS and k != "@timestamp"}
        for ecs, col in COLUMNS.items():
            v = flat.get(ecs)
            c[col].append(None if v is None else str(v))
        c["fields"].append(json.dumps(rest, sort_keys=True, default=str, ensure_ascii=False))
        c["origin"].append(origin)

    def table(self) -> pa.Table:
        return pa.table(self.cols, schema=layout.schema("logs"))


@dataclass(slots=True)
class _File:
    path: str
    key: str
    size: int
    mtime: float
    offset: int = 0
    head: str = ""  # digest of the first min(offset, HEAD_BYTES) bytes
    head_len: int = 0

    def progress(self) -> dict[str, Any]:
        """What the state keeps of this file: how far it was read and how it starts."""
        if self.head_len < min(self.offset, HEAD_BYTES):
            self.head, self.head_len = (
                _head_digest(self.path, self.offset),
                min(self.offset, HEAD_BYTES),
            )
        return {"offset": self.offset, "head": self.head, "path": self.path}


def _head_digest(path: str, length: int) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(min(length, HEAD_BYTES))).hexdigest()


class LogFilesSource:
    """``logs://GLOB``: every file the glob matches, oldest first."""

    dataset = "logs"
    range_bound = False  # offsets: a line outside --since/--until waits or is passed over

    def __init__(self, pattern: str) -> None:
        self.pattern = os.path.abspath(Path(pattern).expanduser())  # one checkpoint per glob

    @classmethod
    def from_url(cls, url: str) -> LogFilesSource:
        return cls(url.removeprefix("logs://"))

    def describe(self) -> str:
        return f"logs://{self.pattern}"

    def _files(self, state: dict[str, Any]) -> list[_File]:
        known: dict[str, Any] = state.get("files", {})
        files = []
        for path in glob.glob(self.pattern, recursive=True):
            try:
                st = os.stat(path)
            except FileNotFoundError:  # removed between glob and stat
                continue
            if not os.path.isfile(path):
                continue
            f = _File(path, f"{st.st_dev}:{st.st_ino}", st.st_size, st.st_mtime)
            seen = known.get(f.key)
            if seen is not None:
                offset = int(seen["offset"])
                if offset > f.size:
                    log.warning("%s is shorter than the %d bytes read: read again", path, offset)
                elif _head_digest(path, offset) == seen["head"]:
                    f.offset, f.head, f.head_len = offset, seen["head"], min(offset, HEAD_BYTES)
            files.append(f)
        files.sort(key=lambda f: (f.mtime, f.path))
        return files

    def chunks(
        self,
        state: dict[str, Any] | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        max_rows: int,
    ) -> Iterator[Chunk]:
        files = self._files(state or {})

        def progress() -> dict[str, Any]:
            # only files that still exist stay in the state: a deleted file cannot come back
            return {"files": {f.key: f.progress() for f in files}}

        rows, rejects = LogRows(), list[dict[str, Any]]()
        for f in files:
            for line, end in _complete_lines(f):
                stop = self._take(line, f"{f.path}:{f.offset}", since, until, rows, rejects)
                if stop:
                    break  # a line at or after --until: this file resumes here next time
                f.offset = end
                if len(rows) >= max_rows:
                    yield Chunk(rows.table(), rejects, progress())
                    rows, rejects = LogRows(), list[dict[str, Any]]()
        yield Chunk(rows.table(), rejects, progress())

    @staticmethod
    def _take(
        line: bytes,
        origin: str,
        since: dt.datetime | None,
        until: dt.datetime | None,
        rows: LogRows,
        rejects: list[dict[str, Any]],
    ) -> bool:
        """Add one line to ``rows`` or ``rejects``; True when it lies at or after ``until``."""
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text.strip():
            return False
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError(f"a JSON {type(doc).__name__}, not an object")
            flat = flatten(doc)
            ts = parse_timestamp(flat.get("@timestamp"))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            rejects.append({"origin": origin, "reason": str(exc), "raw": text})
            return False
        if until is not None and ts >= until:
            return True
        if since is None or ts >= since:
            rows.add(flat, ts, origin)
        return False


def _complete_lines(f: _File) -> Iterator[tuple[bytes, int]]:
    """``(line, end offset)`` of each newline-terminated line of ``f`` after its offset."""
    with open(f.path, "rb") as fh:
        fh.seek(f.offset)
        pos, rest = f.offset, b""
        while True:
            block = fh.read(_READ_BYTES)
            if not block:
                return
            data = rest + block
            start = 0
            while True:
                nl = data.find(b"\n", start)
                if nl < 0:
                    break
                pos += nl + 1 - start
                yield data[start : nl + 1], pos
                start = nl + 1
            rest = data[start:]
