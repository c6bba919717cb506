"""The archive: part files and manifests under one root URL, on fsspec.

Roots: a local folder (a bare path, created if missing, or ``file:///abs``), ``gs://bucket/prefix``
(gcsfs) and ``s3://bucket/prefix`` (s3fs). The layout is :mod:`plantwatch.batch.layout`'s.

Storage options come from the ``storage_options`` mapping given to :meth:`Archive.open` (passed to
the fsspec filesystem as keyword arguments), completed from the environment at ``open()`` time:

* ``PLANTWATCH_ARCHIVE_ENDPOINT_URL`` (also spelled ``PLANTWATCH_ARCHIVE__ENDPOINT_URL``): for
  ``s3://`` it becomes ``client_kwargs={"endpoint_url": ...}``, for ``gs://`` ``endpoint_url``
  (an option given explicitly wins).
* s3fs reads the usual ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_DEFAULT_REGION``/
  ``AWS_PROFILE``/``AWS_ENDPOINT_URL`` itself; gcsfs reads ``STORAGE_EMULATOR_HOST`` and the
  usual Google credentials itself.
* GCS against an emulator (an ``endpoint_url`` option, or ``STORAGE_EMULATOR_HOST`` set): we use
  ``token="anon"`` unless a token is given, and the plain ``gcsfs.core.GCSFileSystem``: gcsfs's
  default class first asks the gRPC Storage Control API for the bucket type, which an emulator
  does not serve (a 60 s timeout per bucket). Real GCS uses fsspec's registered ``gs`` class.

Every write is verified: local files are written to a temporary name in the same folder, fsynced
and renamed, then read back and compared by sha256. On GCS the object's ``md5Hash`` (or, without
it, ``crc32c``) is compared with the data; on S3 a single-part upload's ``ETag`` (hex md5). When
the store gives no usable checksum (local; multipart ETags with ``-``) the object is read back and
compared by sha256. A mismatch deletes the object and raises :class:`ChecksumMismatchError`.
:attr:`Archive.verified_by` counts which method ran. Store errors become :class:`ArchiveError`
naming the URL and what to check.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import importlib
import json
import os
import posixpath
import uuid
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import fsspec.core  # type: ignore[import-untyped]
import pyarrow as pa

from plantwatch.batch import layout
from plantwatch.batch.archive_codec import (
    ArchiveError,
    ChecksumMismatchError,
    FileEntry,
    checksums,
    decode,
    encode,
    file_entry,
)
from plantwatch.batch.layout import Partition
from plantwatch.core.errors import PlantwatchError

__all__ = [
    "Archive",
    "ArchiveError",
    "ChecksumMismatchError",
    "FileEntry",
    "Problem",
    "PruneReport",
    "VerifyReport",
    "decode",
    "encode",
    "file_entry",
]

ENDPOINT_ENV = ("PLANTWATCH_ARCHIVE_ENDPOINT_URL", "PLANTWATCH_ARCHIVE__ENDPOINT_URL")


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What :meth:`Archive.prune` removed (or, with ``dry_run``, would remove)."""

    cutoff: date  # partitions dated before this day go
    dry_run: bool
    partitions: tuple[Partition, ...] = ()
    files: int = 0
    rows: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # missing | size | checksum | orphan | manifest
    path: str  # relative to the archive root
    detail: str


@dataclass(slots=True)
class VerifyReport:
    """What :meth:`Archive.verify` found; ``ok`` when no problem."""

    partitions: int = 0
    files: int = 0
    rows: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _env_endpoint() -> str | None:
    for name in ENDPOINT_ENV:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _filesystem(url: str, options: Mapping[str, Any] | None) -> tuple[Any, str, str]:
    """``(fs, root path inside fs, protocol)`` for a root URL."""
    opts = dict(options or {})
    if "://" not in url:
        url = os.path.abspath(os.path.expanduser(url))
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    endpoint = _env_endpoint()
    if protocol == "s3":
        client_kwargs = dict(opts.get("client_kwargs") or {})
        if endpoint and "endpoint_url" not in client_kwargs and "endpoint_url" not in opts:
            client_kwargs["endpoint_url"] = endpoint
        if client_kwargs:
            opts["client_kwargs"] = client_kwargs
    elif protocol in ("gs", "gcs"):
        if endpoint:
            opts.setdefault("endpoint_url", endpoint)
        if opts.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST"):
            opts.setdefault("token", "anon")
            gcs = importlib.import_module("gcsfs.core").GCSFileSystem
            fs = gcs(**opts)
            return fs, str(gcs._strip_protocol(url)).rstrip("/"), protocol
    elif protocol != "file":
        raise ArchiveError(
            f"archive URL {url!r}: use a folder, file:///abs/path, gs://bucket/prefix "
            "or s3://bucket/prefix"
        )
    fs, path = fsspec.core.url_to_fs(url, **opts)
    return fs, str(path).rstrip("/"), protocol


class Archive:
    """One archive root. Paths given to and returned by methods are relative to the root."""

    def __init__(self, root_url: str, fs: Any, root: str, protocol: str) -> None:
        self.root_url = root_url
        self.fs = fs
        self.root = root
        self.protocol = protocol
        self.local = protocol == "file"
        #: how uploads were verified: "md5Hash", "crc32c", "etag" or "sha256-readback"
        self.verified_by: Counter[str] = Counter()

    @classmethod
    def open(
        cls, url: str, storage_options: Mapping[str, Any] | None = None, *, create: bool = True
    ) -> Archive:
        """The archive at ``url``; a local root folder is created unless ``create`` is false
        (reading a folder that is not there then finds nothing)."""
        try:
            fs, root, protocol = _filesystem(url, storage_options)
        except PlantwatchError:
            raise
        except Exception as exc:
            raise ArchiveError(
                f"cannot open the archive {url}: {exc}; check the URL and the storage options"
            ) from exc
        archive = cls(url, fs, root, protocol)
        if archive.local and create:
            with archive._errors("create", ""):
                os.makedirs(root, exist_ok=True)
        return archive

    def __repr__(self) -> str:
        return f"Archive({self.root_url!r})"

    # -- paths and errors -------------------------------------------------------------------

    def _abs(self, rel_path: str) -> str:
        rel = rel_path.strip("/")
        return f"{self.root}/{rel}" if rel else self.root

    def _rel(self, abs_path: str) -> str:
        path = abs_path.rstrip("/")
        prefix = self.root + "/"
        return path[len(prefix) :] if path.startswith(prefix) else path

    def _url(self, rel_path: str) -> str:
        return f"{self.root_url.rstrip('/')}/{rel_path.strip('/')}"

    @contextlib.contextmanager
    def _errors(self, action: str, rel_path: str) -> Iterator[None]:
        """Translate store errors into :class:`ArchiveError` (one boundary)."""
        try:
            yield
        except PlantwatchError:
            raise
        except Exception as exc:
            hint = (
                "is the folder there and writable?"
                if self.local
                else "is the bucket there? are the credentials and the endpoint right?"
            )
            raise ArchiveError(
                f"cannot {action} {self._url(rel_path)}: {type(exc).__name__}: {exc}; {hint}"
            ) from exc

    # -- files ------------------------------------------------------------------------------

    def put_bytes(self, rel_path: str, data: bytes) -> tuple[str, str]:
        """Write ``data`` (replacing any file there), verify it, return ``(sha256, md5)``."""
        sha256, md5 = checksums(data)
        path = self._abs(rel_path)
        with self._errors("write", rel_path):
            self._write(path, data)
        with self._errors("verify", rel_path):
            failure = self._check_upload(path, data, sha256, md5)
        if failure is not None:
            with contextlib.suppress(Exception):
                self._remove(path)
            raise ChecksumMismatchError(self._url(rel_path), *failure)
        return sha256, md5

    def _write(self, path: str, data: bytes) -> None:
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with builtins.open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _check_upload(
        self, path: str, data: bytes, sha256: str, md5: str
    ) -> tuple[str, str, str] | None:
        """None when the stored object matches; else ``(expected, actual, method)``."""
        info: dict[str, Any] = {} if self.local else dict(self.fs.info(path))
        md5_b64 = info.get("md5Hash")
        if md5_b64:
            self.verified_by["md5Hash"] += 1
            actual = base64.b64decode(md5_b64).hex()
            return None if actual == md5 else (md5, actual, "md5Hash")
        crc_b64 = info.get("crc32c")
        if crc_b64:
            crc = _crc32c(data)
            if crc is not None:
                self.verified_by["crc32c"] += 1
                actual = base64.b64decode(crc_b64).hex()
                return None if actual == crc else (crc, actual, "crc32c")
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        if self.protocol == "s3" and etag and "-" not in etag:
            self.verified_by["etag"] += 1
            return None if etag == md5 else (md5, etag, "etag")
        self.verified_by["sha256-readback"] += 1
        actual = hashlib.sha256(self._read(path)).hexdigest()
        return None if actual == sha256 else (sha256, actual, "sha256-readback")

    def _read(self, path: str) -> bytes:
        if self.local:
            with builtins.open(path, "rb") as fh:
                return fh.read()
        data: bytes = self.fs.cat_file(path)
        return data

    def _remove(self, path: str) -> bool:
        try:
            if self.local:
                os.remove(path)
            else:
                self.fs.rm_file(path)
        except FileNotFoundError:
            return False
        return True

    def _delete_file(self, rel_path: str) -> bool:
        """Delete one file; False when it was not there."""
        with self._errors("delete", rel_path):
            return self._remove(self._abs(rel_path))

    def _get(self, rel_path: str) -> bytes | None:
        """The file's bytes, None when there is no such file."""
        with self._errors("read", rel_path):
            try:
                return self._read(self._abs(rel_path))
            except FileNotFoundError:
                return None

    def get_bytes(self, rel_path: str) -> bytes:
        data = self._get(rel_path)
        if data is None:
            raise ArchiveError(f"no file {self._url(rel_path)} in the archive")
        return data

    def exists(self, rel_path: str) -> bool:
        path = self._abs(rel_path)
        with self._errors("look up", rel_path):
            if self.local:
                return os.path.isfile(path)
            self.fs.invalidate_cache(path)
            return bool(self.fs.isfile(path))

    def delete(self, rel_paths: Sequence[str]) -> None:
        """Delete files; a file that is not there is fine."""
        for rel in rel_paths:
            self._delete_file(rel)
        if self.local:
            self._drop_empty_folders({posixpath.dirname(r.strip("/")) for r in rel_paths})

    def _drop_empty_folders(self, rel_dirs: Collection[str]) -> None:
        for rel in sorted(rel_dirs, key=len, reverse=True):
            while rel:
                try:
                    os.rmdir(self._abs(rel))
                except OSError:
                    break
                rel = posixpath.dirname(rel)

    def _find(self, prefix: str) -> dict[str, int]:
        """``{rel path: size}`` of every file under ``prefix``."""
        path = self._abs(prefix)
        with self._errors("list", prefix):
            if not self.local:
                self.fs.invalidate_cache()
            try:
                found = self.fs.find(path, detail=True)
            except FileNotFoundError:
                return {}
        return {
            self._rel(p): int(info.get("size") or 0)
            for p, info in found.items()
            if info.get("type", "file") == "file"
        }

    def list(self, prefix: str) -> list[str]:
        """Relative paths of the files under ``prefix`` (recursive), sorted."""
        return sorted(self._find(prefix))

    def read_json(self, rel_path: str) -> Any | None:
        """The JSON document at ``rel_path``, None when there is no such file."""
        data = self._get(rel_path)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ArchiveError(f"{self._url(rel_path)} is not JSON: {exc}") from exc

    def write_json(self, rel_path: str, obj: Any) -> None:
        text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
        self.put_bytes(rel_path, text.encode("utf-8"))

    # -- partitions and manifests -----------------------------------------------------------

    def _scan(self, dataset: str) -> dict[Partition, dict[str, int]]:
        """Every partition folder of ``dataset`` with ``{file name: size}`` of its files."""
        layout.schema(dataset)
        return _by_partition(self._find(dataset))

    def partitions(
        self,
        dataset: str,
        *,
        since: date | None = None,
        until: date | None = None,
        machines: Collection[str] | None = None,
    ) -> builtins.list[Partition]:
        """Partitions with a manifest, sorted; ``since``/``until`` are inclusive days and
        ``machines`` raw machine ids (``_none`` for rows without one)."""
        wanted = set(machines) if machines is not None else None
        return sorted(
            p
            for p, names in self._scan(dataset).items()
            if layout.MANIFEST in names
            and (since is None or p.date >= since)
            and (until is None or p.date <= until)
            and (wanted is None or p.machine_id in wanted)
        )

    def manifest(self, p: Partition) -> dict[str, Any] | None:
        obj = self.read_json(p.manifest_path())
        if obj is not None and not isinstance(obj, dict):
            raise ArchiveError(f"{self._url(p.manifest_path())} is not a manifest object")
        return obj

    def entries(self, p: Partition) -> builtins.list[FileEntry]:
        """The files the partition's manifest lists (none without a manifest)."""
        return self._entries_of(p, self.manifest(p))

    def _entries_of(self, p: Partition, obj: dict[str, Any] | None) -> builtins.list[FileEntry]:
        """The file entries of ``obj``, the partition's manifest (None: no manifest)."""
        if obj is None:
            return []
        try:
            return [FileEntry.from_json(f) for f in obj.get("files", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(
                f"{self._url(p.manifest_path())} has a malformed file entry: {exc}"
            ) from exc

    def _write_manifest(self, p: Partition, files: Sequence[FileEntry]) -> None:
        if not files:
            self.delete([p.manifest_path()])
            return
        files = sorted(files, key=lambda e: e.name)
        lows = [e.min_ts for e in files if e.min_ts is not None]
        highs = [e.max_ts for e in files if e.max_ts is not None]
        manifest = {
            "manifest_version": layout.MANIFEST_VERSION,
            "schema_version": layout.SCHEMA_VERSION,
            "dataset": p.dataset,
            "partition": {"date": p.date.isoformat(), "machine_id": p.machine_id},
            "rows": sum(e.rows for e in files),
            "min_ts": min(lows) if lows else None,
            "max_ts": max(highs) if highs else None,
            "files": [e.to_json() for e in files],
        }
        self.write_json(p.manifest_path(), manifest)

    def add_files(self, p: Partition, entries: Sequence[FileEntry]) -> None:
        """List ``entries`` in the partition's manifest (replacing entries of the same name)."""
        for e in entries:
            if layout.parse_part_name(e.name) is None:
                raise ArchiveError(f"{e.name!r} is not a part file name (part-<run>-<chunk>.fmt)")
        new = {e.name for e in entries}
        kept = [e for e in self.entries(p) if e.name not in new]
        self._write_manifest(p, [*kept, *entries])

    def remove_run(self, run_id: str, chunk: int | None = None) -> int:
        """Delete the part files of a run (or of one chunk of it) everywhere, their manifest
        entries and their rejects; returns how many files were removed."""

        def ours(parsed: tuple[str, int] | tuple[str, int, str] | None) -> bool:
            return (
                parsed is not None and parsed[0] == run_id and (chunk is None or parsed[1] == chunk)
            )

        found = self._find("")  # one listing for every dataset and the rejects
        removed = 0
        for p, names in _by_partition(found).items():
            doomed = [n for n in names if ours(layout.parse_part_name(n))]
            listed = self.entries(p) if layout.MANIFEST in names else []
            kept = [e for e in listed if not ours(layout.parse_part_name(e.name))]
            if len(kept) != len(listed):
                self._write_manifest(p, kept)
            for name in doomed:
                removed += self._delete_file(f"{p.path()}/{name}")
            if doomed and self.local:
                self._drop_empty_folders([p.path()])
        rejects = f"{layout.REJECTS}/"
        for rel in found:
            if rel.startswith(rejects) and ours(_rejects_name(posixpath.basename(rel))):
                removed += self._delete_file(rel)
        return removed

    def read_partition(self, p: Partition) -> pa.Table:
        """Every file of the partition's manifest, checked against its sha256, as one table in
        the dataset's schema."""
        obj = self.manifest(p)
        if obj is None:
            raise ArchiveError(f"no manifest at {self._url(p.manifest_path())}")
        tables = []
        for e in self._entries_of(p, obj):
            rel = f"{p.path()}/{e.name}"
            data = self.get_bytes(rel)
            actual = hashlib.sha256(data).hexdigest()
            if actual != e.sha256:
                raise ChecksumMismatchError(self._url(rel), e.sha256, actual, "manifest sha256")
            tables.append(decode(data, e.format, p.dataset))
        if not tables:
            return layout.schema(p.dataset).empty_table()
        return pa.concat_tables(tables)

    # -- housekeeping -----------------------------------------------------------------------

    def _datasets(self, datasets: Collection[str] | None) -> builtins.list[str]:
        if datasets is None:
            return builtins.list(layout.DATASETS)
        for d in datasets:
            layout.schema(d)
        return sorted(datasets)

    def prune(
        self,
        older_than: timedelta,
        *,
        now: datetime,
        datasets: Collection[str] | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        """Remove whole partitions dated before ``(now - older_than)`` (UTC day): their files,
        listed or not, and their manifest."""
        if now.tzinfo is None:
            raise ArchiveError(f"prune needs an aware 'now', got {now.isoformat()}")
        cutoff = (now.astimezone(UTC) - older_than).date()
        gone: builtins.list[Partition] = []
        files = rows = size = 0
        for dataset in self._datasets(datasets):
            for p, names in sorted(self._scan(dataset).items()):
                if p.date >= cutoff:
                    continue
                gone.append(p)
                parts = [n for n in names if n != layout.MANIFEST]
                files += len(parts)
                size += sum(names[n] for n in parts)
                rows += sum(e.rows for e in self.entries(p)) if layout.MANIFEST in names else 0
                if not dry_run:
                    # parts first: a crash leaves a manifest naming missing files (verify
                    # reports it) rather than unlisted files nobody removes
                    self.delete([f"{p.path()}/{n}" for n in parts])
                    self.delete([p.manifest_path()])
        return PruneReport(cutoff, dry_run, tuple(gone), files, rows, size)

    def verify(self, datasets: Collection[str] | None = None) -> VerifyReport:
        """Check every manifest entry (file there, size and sha256 match) and report part files
        that no manifest lists."""
        report = VerifyReport()
        for dataset in self._datasets(datasets):
            for p, names in sorted(self._scan(dataset).items()):
                report.partitions += 1
                listed: dict[str, FileEntry] = {}
                if layout.MANIFEST in names:
                    try:
                        listed = {e.name: e for e in self.entries(p)}
                    except ArchiveError as exc:
                        report.problems.append(Problem("manifest", p.manifest_path(), str(exc)))
                for name, e in sorted(listed.items()):
                    rel = f"{p.path()}/{name}"
                    report.files += 1
                    report.rows += e.rows
                    report.bytes += e.bytes
                    if name not in names:
                        report.problems.append(Problem("missing", rel, "listed, not there"))
                    elif names[name] != e.bytes:
                        detail = f"{names[name]} bytes, manifest says {e.bytes}"
                        report.problems.append(Problem("size", rel, detail))
                    else:
                        actual = hashlib.sha256(self.get_bytes(rel)).hexdigest()
                        if actual != e.sha256:
                            detail = f"sha256 {actual}, manifest says {e.sha256}"
                            report.problems.append(Problem("checksum", rel, detail))
                for name in sorted(names):
                    if name != layout.MANIFEST and name not in listed:
                        rel = f"{p.path()}/{name}"
                        report.problems.append(Problem("orphan", rel, "no manifest lists it"))
        return report


def _by_partition(found: Mapping[str, int]) -> dict[Partition, dict[str, int]]:
    """``{rel path: size}`` grouped by partition folder as ``{file name: size}``; files outside
    a partition folder are left out."""
    grouped: dict[Partition, dict[str, int]] = {}
    for rel, size in found.items():
        folder, name = posixpath.split(rel)
        try:
            p = Partition.parse(folder)
        except layout.LayoutError:
            continue
        grouped.setdefault(p, {})[name] = size
    return grouped


def _rejects_name(name: str) -> tuple[str, int] | None:
    """``(run_id, chunk)`` of ``rejects-<run>-<chunk>.jsonl``."""
    stem, ext = posixpath.splitext(name)
    bits = stem.split("-")
    if ext != ".jsonl" or len(bits) != 3 or bits[0] != "rejects" or not bits[2].isdigit():
        return None
    return bits[1], int(bits[2])


def _crc32c(data: bytes) -> str | None:
    """Hex big-endian CRC32C of ``data``; None without the google-crc32c package."""
    try:
        module: Any = importlib.import_module("google_crc32c")
    except ImportError:
        return None
    value: int = module.value(data)
    return value.to_bytes(4, "big").hex()
