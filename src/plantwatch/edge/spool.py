"""The durable store-and-forward spool: readings survive crashes, restarts and outages.

On-disk format (one directory per client)
-----------------------------------------
``<first-entry-id:020d>.seg``
    An append-only segment. Each entry is a 32-byte little-endian header, a JSON meta and the
    payload bytes::

        magic "PWSP" | version u8 (1) | flags u8 | reserved u16 | entry id u64
        | meta length u32 | payload length u32 | CRC32(meta + payload) u32 | CRC32(header) u32

    The meta is ``{"content_type": ..., "count": <readings>, "max_seq": {"machine_id/sensor_id":
    <highest seq of that sensor in the entry>}}`` (``%`` and ``/`` inside ids are escaped as
    ``%25`` and ``%2F``). Entry ids increase across segments and restarts. A segment rolls when
    the next entry would make it larger than ``segment_bytes``.
``<first-entry-id:020d>.ack``
    The ids (u64 each) of acknowledged entries of that segment, appended without fsync: a lost
    acknowledgement only means a re-send, which the stream de-duplicates by ``(machine_id,
    sensor_id, seq)``.
``sequences.json``
    ``{"format": 1, "next_entry_id": n, "sequences": {"machine_id/sensor_id": seq}}``, written
    atomically (temporary file, fsync, rename) before any segment is deleted, so that per-sensor
    sequence counters and entry ids never go backwards (:func:`recover_sequences`).
``LOCK``
    ``flock``-ed while a :class:`Spool` has the directory open: one spool per directory.

:meth:`Spool.append` writes the entry (and fsyncs it when ``fsync=True``) before it returns the
entry id. A segment whose entries are all acknowledged is deleted once it is no longer the one
being appended to.

Recovery: opening a spool reads every segment and checks every CRC. A damaged *tail* (an entry
cut short or failing its CRC with nothing valid after it — what a crash mid-write leaves) is
truncated away and counted in ``stats.recovered_truncated_bytes``; with ``fsync=True`` that
entry's append never returned, so nothing accepted is lost (with ``fsync=False`` a power loss
can also take entries whose append returned; a process crash cannot). Damage *before* the tail
raises
:class:`~plantwatch.edge.errors.SpoolCorruptError` naming the file and the offset.

When the spool is full
----------------------
The segments never hold more than ``max_bytes``. When an append would exceed it, ``when_full``
decides (``PLANTWATCH_SPOOL__WHEN_FULL``):

* ``block`` (default): wait up to ``block_timeout_s`` for acknowledgements to free whole
  segments, then raise :class:`~plantwatch.edge.errors.SpoolFullError`. Loses nothing.
* ``reject``: raise ``SpoolFullError`` at once. Loses nothing; the caller decides.
* ``drop_oldest``: delete the oldest whole segment(s), acknowledged or not, and count what was
  evicted (``stats.evicted_entries``, ``stats.evicted_readings``). **The only policy that can
  lose accepted readings**; choose it explicitly, when the newest data matters more.

An entry larger than ``max_bytes`` is refused under every policy.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from plantwatch.core.logs import EventThrottle, sensor_event
from plantwatch.edge import _format as fmt
from plantwatch.edge._config import SpoolLimits, WhenFull
from plantwatch.edge._index import PendingEntry, Segment, SensorKey, SpoolEntry, SpoolStats
from plantwatch.edge.errors import ClientClosedError, EdgeError, SpoolFullError

_log = logging.getLogger(__name__)


class Spool:
    """A directory of append-only segments; see the module docstring for format and policies.

    Thread-safe: one thread may append while another acknowledges and a third reads.
    """

    def __init__(self, directory: str | os.PathLike[str], *, limits: SpoolLimits | None = None):
        self.directory = Path(directory)
        self.limits = limits if limits is not None else SpoolLimits()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cond = threading.Condition()
        self._closed = False
        self._lock_fd = fmt.lock_directory(self.directory)
        self._segments: list[Segment] = []
        self._active: Segment | None = None  # the segment appends go to (always the last)
        self._active_fd: int | None = None
        self._next_id = 1
        self._seqs: dict[SensorKey, int] = {}
        self._total = 0
        self._pending_entries = 0
        self._pending_readings = 0
        self._evicted_entries = 0
        self._evicted_readings = 0
        self._throttle = EventThrottle(60.0)
        self._truncated = 0
        try:
            self._recover()
        except BaseException:
            self._release()
            raise

    # -- recovery ------------------------------------------------------------------------------

    def _recover(self) -> None:
        (self.directory / (fmt.SEQUENCES_FILE + ".tmp")).unlink(missing_ok=True)
        next_id, self._seqs = fmt.load_checkpoint(self.directory)
        files = fmt.segment_files(self.directory)
        names = {p.name for _, p in files}
        for orphan in self.directory.glob(f"*{fmt.ACK_SUFFIX}"):
            if orphan.with_suffix(fmt.SEGMENT_SUFFIX).name not in names:
                orphan.unlink()
        for first_id, path in files:
            scan = fmt.scan_segment(path)
            if scan.valid_end < scan.file_size:  # a torn tail: the append never returned
                os.truncate(path, scan.valid_end)
                self._truncated += scan.file_size - scan.valid_end
            seg = Segment(first_id, path)
            acks = fmt.read_acks(fmt.ack_path(path))
            for e in scan.entries:
                seg.add(e.entry_id, e.size, e.meta.count, e.meta.content_type)
                fmt.merge_seqs(self._seqs, e.meta.max_seq)
                if e.entry_id in acks:
                    seg.ack(e.entry_id)
            # never reuse an id an ack file names (its entry may be lost if fsync was off)
            next_id = max(next_id, first_id, max(acks, default=0) + 1)
            next_id = max(next_id, seg.ids[-1] + 1 if seg.ids else 0)
            self._segments.append(seg)
            self._total += seg.size
            self._pending_entries += seg.pending_entries
            self._pending_readings += seg.pending_readings
        self._next_id = max(next_id, 1)
        for seg in self._segments[:-1]:
            if seg.pending_entries == 0:
                self._delete(seg)
        if self._segments:
            self._active = self._segments[-1]
            self._active_fd = os.open(self._active.path, os.O_WRONLY | os.O_APPEND)

    # -- appending -----------------------------------------------------------------------------

    def append(
        self,
        content_type: str,
        payload: bytes,
        *,
        count: int,
        max_seq: Mapping[SensorKey, int],
    ) -> int:
        """Write one entry (fsynced when ``limits.fsync``) and return its id.

        When it returns the entry is durable. Raises :class:`SpoolFullError` as the ``when_full``
        policy says (``block`` waits for acknowledgements first).
        """
        return self._append(content_type, payload, count=count, max_seq=max_seq, wait=True)

    def try_append(
        self,
        content_type: str,
        payload: bytes,
        *,
        count: int,
        max_seq: Mapping[SensorKey, int],
    ) -> int:
        """Like :meth:`append`, but never waits: ``block`` behaves like ``reject`` here."""
        return self._append(content_type, payload, count=count, max_seq=max_seq, wait=False)

    def _append(
        self,
        content_type: str,
        payload: bytes,
        *,
        count: int,
        max_seq: Mapping[SensorKey, int],
        wait: bool,
    ) -> int:
        meta = fmt.encode_meta(fmt.EntryMeta(content_type, count, dict(max_seq)))
        if len(meta) > fmt.MAX_PART or len(payload) > fmt.MAX_PART:
            raise EdgeError(f"entry too large for the spool format: {len(payload)} bytes")
        size = fmt.HEADER_SIZE + len(meta) + len(payload)
        with self._cond:
            self._check_open()
            self._make_room(size, wait=wait)
            seg = self._segment_for(size)
            assert self._active_fd is not None
            entry_id = self._next_id
            header = fmt.encode_header(entry_id, meta, payload)
            try:
                fmt.write_all(self._active_fd, header, meta, payload)
                if self.limits.fsync:
                    os.fsync(self._active_fd)
            except OSError as exc:
                os.ftruncate(self._active_fd, seg.size)
                raise EdgeError(f"could not write to spool segment {seg.path}: {exc}") from exc
            self._next_id += 1
            seg.add(entry_id, size, count, content_type)
            self._total += size
            self._pending_entries += 1
            self._pending_readings += count
            fmt.merge_seqs(self._seqs, max_seq)
            self._cond.notify_all()
            return entry_id

    def _make_room(self, size: int, *, wait: bool) -> None:
        limit = self.limits.max_bytes
        policy = self.limits.when_full
        started = time.monotonic()
        while self._total + size > limit:
            if size > limit:
                raise self._full(size, None)
            if self._active is not None and self._active.pending_entries == 0:
                self._delete(self._active)  # fully acknowledged: retire it early
                continue
            if policy == "drop_oldest":
                oldest = self._segments[0]
                self._evicted_entries += oldest.pending_entries
                self._evicted_readings += oldest.pending_readings
                self._delete(oldest)
                sensor_event(
                    _log,
                    logging.WARNING,
                    "sdk.spool.dropped",
                    f"spool {self.directory} is full: dropped its oldest segment, "
                    f"{oldest.pending_readings} unsent readings (when_full='drop_oldest')",
                    machine_id=None,
                    spool=str(self.directory),
                    entries=oldest.pending_entries,
                    readings=oldest.pending_readings,
                    policy=policy,
                )
                continue
            waited = time.monotonic() - started
            left = self.limits.block_timeout_s - waited
            if policy == "reject" or not wait or left <= 0:
                raise self._full(size, waited if policy == "block" and wait else None)
            self._cond.wait(left)
            self._check_open()

    def _full(self, size: int, waited: float | None) -> SpoolFullError:
        held = self._throttle.allow("full")
        if held is not None:  # one event a minute; callers retry and would repeat it
            sensor_event(
                _log,
                logging.WARNING,
                "sdk.spool.full",
                f"spool {self.directory} is full: {self._total} of {self.limits.max_bytes} "
                f"bytes used, an entry of {size} bytes refused "
                f"(when_full={self.limits.when_full!r})",
                machine_id=None,
                spool=str(self.directory),
                bytes=size,
                max_bytes=self.limits.max_bytes,
                policy=self.limits.when_full,
                suppressed=held or None,
            )
        return SpoolFullError(
            directory=self.directory,
            used_bytes=self._total,
            max_bytes=self.limits.max_bytes,
            needed_bytes=size,
            policy=self.limits.when_full,
            waited_s=waited,
        )

    def _segment_for(self, size: int) -> Segment:
        """The active segment, or a new one when the entry would make it too large."""
        active = self._active
        if active is not None and (
            active.size == 0 or active.size + size <= self.limits.segment_bytes
        ):
            return active
        if active is not None:
            if active.pending_entries == 0:
                self._delete(active)
            else:
                self._deactivate()
        seg = Segment(self._next_id, fmt.segment_path(self.directory, self._next_id))
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL
        self._active_fd = os.open(seg.path, flags, 0o644)
        if self.limits.fsync:
            fmt.fsync_dir(self.directory)
        self._segments.append(seg)
        self._active = seg
        return seg

    def _deactivate(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
        self._active = None
        self._active_fd = None

    # -- acknowledging -------------------------------------------------------------------------

    def ack(self, entry_id: int) -> bool:
        """Record that ``entry_id`` was delivered. False if unknown, already acked, or closed."""
        with self._cond:
            if self._closed:
                return False
            seg = self._segment_of(entry_id)
            count = None if seg is None else seg.ack(entry_id)
            if seg is None or count is None:
                return False
            if seg.ack_fd is None:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
                seg.ack_fd = os.open(fmt.ack_path(seg.path), flags, 0o644)
            fmt.write_all(seg.ack_fd, fmt.ACK.pack(entry_id))
            self._pending_entries -= 1
            self._pending_readings -= count
            if seg.pending_entries == 0 and seg is not self._active:
                self._delete(seg)
            self._cond.notify_all()
            return True

    def _segment_of(self, entry_id: int) -> Segment | None:
        i = bisect.bisect_right([s.first_id for s in self._segments], entry_id) - 1
        if i < 0:
            return None
        seg = self._segments[i]
        return seg if seg.find(entry_id) is not None else None

    def _delete(self, seg: Segment) -> None:
        """Checkpoint the counters, then delete a segment and its ack file."""
        fmt.write_checkpoint(self.directory, self._next_id, self._seqs)
        if seg.ack_fd is not None:
            os.close(seg.ack_fd)
            seg.ack_fd = None
        if seg is self._active:
            self._deactivate()
        seg.path.unlink(missing_ok=True)
        fmt.ack_path(seg.path).unlink(missing_ok=True)
        self._segments.remove(seg)
        self._total -= seg.size
        self._pending_entries -= seg.pending_entries
        self._pending_readings -= seg.pending_readings
        self._cond.notify_all()

    # -- reading -------------------------------------------------------------------------------

    def pending(self) -> list[PendingEntry]:
        """Unacknowledged entries in id order, without payloads."""
        with self._cond:
            return [
                PendingEntry(entry_id, seg.types[i], seg.counts[i], seg.sizes[i])
                for seg in self._segments
                for i, entry_id in enumerate(seg.ids)
                if entry_id not in seg.acked
            ]

    def next_pending(self, after: int = 0) -> SpoolEntry | None:
        """The first unacknowledged entry with an id greater than ``after``, payload loaded."""
        with self._cond:
            self._check_open()
            found = self._locate(after)
            if found is None:
                return None
            seg, i = found
            path, offset, size = seg.path, seg.offsets[i], seg.sizes[i]
            fd = os.open(path, os.O_RDONLY)
        try:  # read outside the lock; the open descriptor survives a concurrent deletion
            entry_id, meta, payload = fmt.read_entry(path, fd, offset, size)
        finally:
            os.close(fd)
        return SpoolEntry(entry_id, meta.content_type, meta.count, meta.max_seq, payload)

    def _locate(self, after: int) -> tuple[Segment, int] | None:
        for seg in self._segments:
            if seg.pending_entries == 0 or seg.ids[-1] <= after:
                continue
            for i in range(bisect.bisect_right(seg.ids, after), len(seg.ids)):
                if seg.ids[i] not in seg.acked:
                    return seg, i
        return None

    def __iter__(self) -> Iterator[SpoolEntry]:
        """Unacknowledged entries in id order, each loaded from disk when it is reached."""
        after = 0
        while (entry := self.next_pending(after)) is not None:
            yield entry
            after = entry.entry_id

    def max_seqs(self) -> dict[SensorKey, int]:
        """The highest seq accepted per sensor (what :func:`recover_sequences` reads)."""
        with self._cond:
            return dict(self._seqs)

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Wait until every entry is acknowledged. False on timeout or when closed first."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._pending_entries == 0, timeout)
            return not self._closed and self._pending_entries == 0

    @property
    def stats(self) -> SpoolStats:
        with self._cond:
            return SpoolStats(
                segments=len(self._segments),
                bytes=self._total,
                entries=sum(len(s.ids) for s in self._segments),
                pending_entries=self._pending_entries,
                pending_readings=self._pending_readings,
                evicted_entries=self._evicted_entries,
                evicted_readings=self._evicted_readings,
                recovered_truncated_bytes=self._truncated,
                next_entry_id=self._next_id,
            )

    # -- lifecycle -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(f"spool {self.directory} is closed")

    def close(self) -> None:
        """Close the files; unacknowledged entries stay for the next open. Idempotent."""
        with self._cond:
            if self._closed:
                return
            try:
                for seg in [s for s in self._segments if s.pending_entries == 0]:
                    self._delete(seg)
            finally:
                self._closed = True
                self._release()
                self._cond.notify_all()

    def _release(self) -> None:
        for seg in self._segments:
            if seg.ack_fd is not None:
                os.close(seg.ack_fd)
                seg.ack_fd = None
        self._deactivate()
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recover_sequences(directory: str | os.PathLike[str]) -> dict[SensorKey, int]:
    """The highest seq the spool in ``directory`` ever accepted, per ``(machine_id, sensor_id)``.

    The maximum of ``sequences.json`` and the ``max_seq`` of every intact entry present. Reads
    only: a torn tail is skipped, not repaired; corruption before a tail raises
    :class:`~plantwatch.edge.errors.SpoolCorruptError`. A missing directory gives ``{}``.
    """
    path = Path(directory)
    if not path.is_dir():
        return {}
    _, seqs = fmt.load_checkpoint(path)
    for _, segment in fmt.segment_files(path):
        try:
            scan = fmt.scan_segment(segment)
        except FileNotFoundError:  # deleted by an open spool meanwhile; its seqs are checkpointed
            _, checkpointed = fmt.load_checkpoint(path)
            fmt.merge_seqs(seqs, checkpointed)
            continue
        for entry in scan.entries:
            fmt.merge_seqs(seqs, entry.meta.max_seq)
    return seqs


__all__ = [
    "PendingEntry",
    "SensorKey",
    "Spool",
    "SpoolEntry",
    "SpoolLimits",
    "SpoolStats",
    "WhenFull",
    "recover_sequences",
]
