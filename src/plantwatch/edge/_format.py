"""The spool's on-disk format: entry headers, meta, segment scanning, checkpoints, ack files.

The format is described in :mod:`plantwatch.edge.spool`; this module only reads and writes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from plantwatch.edge.errors import EdgeError, SpoolCorruptError

MAGIC = b"PWSP"
FORMAT_VERSION = 1
#: magic, version, flags, reserved, entry id, meta length, payload length, CRC32(meta + payload)
_HEAD = struct.Struct("<4sBBHQIII")
_HEAD_CRC = struct.Struct("<I")
HEADER_SIZE = _HEAD.size + _HEAD_CRC.size  # 32 bytes
ACK = struct.Struct("<Q")
MAX_PART = 2**32 - 1

SEGMENT_SUFFIX = ".seg"
ACK_SUFFIX = ".ack"
SEQUENCES_FILE = "sequences.json"
LOCK_FILE = "LOCK"
_CHUNK = 1 << 20

SensorKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class EntryMeta:
    content_type: str
    count: int
    max_seq: dict[SensorKey, int]


@dataclass(frozen=True, slots=True)
class ScannedEntry:
    entry_id: int
    offset: int
    size: int
    meta: EntryMeta


@dataclass(frozen=True, slots=True)
class ScanResult:
    entries: list[ScannedEntry]
    valid_end: int
    file_size: int


# -- names -----------------------------------------------------------------------------------


def segment_path(directory: Path, first_id: int) -> Path:
    return directory / f"{first_id:020d}{SEGMENT_SUFFIX}"


def ack_path(segment: Path) -> Path:
    return segment.with_suffix(ACK_SUFFIX)


def segment_files(directory: Path) -> list[tuple[int, Path]]:
    """``(first entry id, path)`` of every segment in ``directory``, oldest first."""
    out = []
    for path in directory.glob(f"*{SEGMENT_SUFFIX}"):
        if path.stem.isdigit():
            out.append((int(path.stem), path))
    return sorted(out)


# -- sensor keys -----------------------------------------------------------------------------


def _esc(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2F")


def _unesc(part: str) -> str:
    return part.replace("%2F", "/").replace("%25", "%")


def encode_seqs(seqs: Mapping[SensorKey, int]) -> dict[str, int]:
    """``{"machine_id/sensor_id": seq}``; ``%`` and ``/`` inside ids are percent-escaped."""
    return {f"{_esc(m)}/{_esc(s)}": int(v) for (m, s), v in seqs.items()}


def decode_seqs(obj: Any) -> dict[SensorKey, int]:
    if not isinstance(obj, dict):
        raise ValueError(f"sequences must be a JSON object, got {type(obj).__name__}")
    out: dict[SensorKey, int] = {}
    for key, value in obj.items():
        machine, sep, sensor = key.partition("/")
        if not sep or isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"bad sequence entry {key!r}: {value!r}")
        out[(_unesc(machine), _unesc(sensor))] = value
    return out


def merge_seqs(into: dict[SensorKey, int], other: Mapping[SensorKey, int]) -> None:
    for key, seq in other.items():
        if seq > into.get(key, 0):
            into[key] = seq


# -- entries ---------------------------------------------------------------------------------


def encode_meta(meta: EntryMeta) -> bytes:
    obj = {
        "content_type": meta.content_type,
        "count": meta.count,
        "max_seq": encode_seqs(meta.max_seq),
    }
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def decode_meta(raw: bytes) -> EntryMeta:
    obj = json.loads(raw)
    if not isinstance(obj, dict):
        raise ValueError("meta is not a JSON object")
    content_type, count = obj.get("content_type"), obj.get("count")
    if not isinstance(content_type, str) or not isinstance(count, int):
        raise ValueError(f"meta lacks content_type or count: {obj!r}")
    return EntryMeta(content_type, count, decode_seqs(obj.get("max_seq", {})))


def encode_header(entry_id: int, meta: bytes, payload: bytes) -> bytes:
    body_crc = zlib.crc32(payload, zlib.crc32(meta))
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, 0, 0, entry_id, len(meta), len(payload), body_crc)
    return head + _HEAD_CRC.pack(zlib.crc32(head))


def parse_header(raw: bytes) -> tuple[int, int, int, int] | str:
    """``(entry id, meta length, payload length, body CRC)``, or what is wrong with ``raw``."""
    if len(raw) < HEADER_SIZE:
        return f"incomplete header ({len(raw)} of {HEADER_SIZE} bytes)"
    magic, version, _flags, _res, entry_id, meta_len, payload_len, body_crc = _HEAD.unpack_from(raw)
    (head_crc,) = _HEAD_CRC.unpack_from(raw, _HEAD.size)
    if magic != MAGIC:
        return f"bad magic {magic!r}"
    if head_crc != zlib.crc32(raw[: _HEAD.size]):
        return "header CRC mismatch"
    if version != FORMAT_VERSION:
        return f"unsupported format version {version} (this SDK reads {FORMAT_VERSION})"
    return entry_id, meta_len, payload_len, body_crc


def read_entry(path: Path, fd: int, offset: int, size: int) -> tuple[int, EntryMeta, bytes]:
    """Read and verify the entry at ``offset`` of an open segment."""
    raw = os.pread(fd, size, offset)
    head = parse_header(raw[:HEADER_SIZE])
    if isinstance(head, str) or HEADER_SIZE + head[1] + head[2] != size or len(raw) != size:
        problem = head if isinstance(head, str) else "entry length changed since it was indexed"
        raise SpoolCorruptError(path=path, offset=offset, problem=problem)
    entry_id, meta_len, _payload_len, body_crc = head
    body = memoryview(raw)[HEADER_SIZE:]
    if zlib.crc32(body) != body_crc:
        raise SpoolCorruptError(path=path, offset=offset, problem="CRC mismatch on read")
    meta = decode_meta(bytes(body[:meta_len]))
    return entry_id, meta, bytes(body[meta_len:])


def scan_segment(path: Path) -> ScanResult:
    """Every intact entry of a segment, and where its intact part ends.

    An invalid entry followed by nothing valid is a torn tail (``valid_end`` < ``file_size``).
    An invalid entry followed by a valid header is corruption: :class:`SpoolCorruptError`.
    """
    size = path.stat().st_size
    entries: list[ScannedEntry] = []
    pos = 0
    with path.open("rb") as f:
        while pos < size:
            found = _entry_at(f, path, pos, size)
            if isinstance(found, str):
                later = _next_valid_header(f, pos + 1)
                if later is not None:
                    raise SpoolCorruptError(
                        path=path,
                        offset=pos,
                        problem=f"{found}, yet a valid entry follows at offset {later}",
                    )
                return ScanResult(entries, pos, size)
            if entries and found.entry_id <= entries[-1].entry_id:
                raise SpoolCorruptError(
                    path=path,
                    offset=pos,
                    problem=f"entry id {found.entry_id} after {entries[-1].entry_id}",
                )
            entries.append(found)
            pos += found.size
    return ScanResult(entries, pos, size)


def _entry_at(f: BinaryIO, path: Path, pos: int, size: int) -> ScannedEntry | str:
    """The verified entry at ``pos``, or what is wrong with it."""
    f.seek(pos)
    head = parse_header(f.read(HEADER_SIZE))
    if isinstance(head, str):
        return head
    entry_id, meta_len, payload_len, body_crc = head
    end = pos + HEADER_SIZE + meta_len + payload_len
    if end > size:
        return f"entry {entry_id} ends at {end}, past the end of the file ({size})"
    raw_meta = f.read(meta_len)
    crc = zlib.crc32(raw_meta)
    left = payload_len
    while left:
        chunk = f.read(min(left, _CHUNK))
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    if crc != body_crc:
        return f"CRC mismatch in entry {entry_id}"
    try:
        meta = decode_meta(raw_meta)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpoolCorruptError(path=path, offset=pos, problem=f"unreadable meta: {exc}") from exc
    return ScannedEntry(entry_id, pos, end - pos, meta)


def _next_valid_header(f: BinaryIO, start: int) -> int | None:
    f.seek(start)
    data: bytes = f.read()
    i = data.find(MAGIC)
    while i >= 0:
        if not isinstance(parse_header(data[i : i + HEADER_SIZE]), str):
            return start + i
        i = data.find(MAGIC, i + 1)
    return None


def lock_directory(directory: Path) -> int:
    """``flock`` the directory's LOCK file: one open spool per directory (released on exit)."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise EdgeError(
            f"spool directory {directory} is in use by another open Spool; give each client "
            "its own directory, or close the other one first"
        ) from None
    return fd


# -- acks and checkpoints --------------------------------------------------------------------


def read_acks(path: Path) -> set[int]:
    """Acknowledged entry ids; a torn trailing record (crash mid-write) is ignored."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return set()
    whole = len(raw) - len(raw) % ACK.size
    return {v for (v,) in ACK.iter_unpack(raw[:whole])}


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(directory: Path) -> tuple[int, dict[SensorKey, int]]:
    """``(next entry id, highest seq per sensor)`` from ``sequences.json`` (``(0, {})`` if none)."""
    path = directory / SEQUENCES_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0, {}
    try:
        obj = json.loads(raw)
        next_id = obj["next_entry_id"]
        if not isinstance(next_id, int):
            raise ValueError(f"next_entry_id is not an integer: {next_id!r}")
        return next_id, decode_seqs(obj["sequences"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SpoolCorruptError(
            path=path, offset=0, problem=f"unreadable checkpoint: {exc}"
        ) from exc


def write_checkpoint(directory: Path, next_id: int, seqs: Mapping[SensorKey, int]) -> None:
    """Replace ``sequences.json`` atomically: write a temporary file, fsync, rename, fsync dir."""
    path = directory / SEQUENCES_FILE
    tmp = path.with_name(SEQUENCES_FILE + ".tmp")
    body = {"format": FORMAT_VERSION, "next_entry_id": next_id, "sequences": encode_seqs(seqs)}
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(directory)


def write_all(fd: int, *parts: bytes) -> None:
    """Write ``parts`` in one ``writev`` (continuing after a short write)."""
    total = sum(len(p) for p in parts)
    done = os.writev(fd, parts)
    if done < total:
        rest = memoryview(b"".join(parts))[done:]
        while rest:
            rest = rest[os.write(fd, rest) :]
