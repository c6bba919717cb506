"""The spool's in-memory index and the records it hands out (payloads stay on disk)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SensorKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled entry with its payload, loaded from disk."""

    entry_id: int
    content_type: str
    count: int
    max_seq: Mapping[SensorKey, int]
    payload: bytes


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """An unacknowledged entry, without its payload."""

    entry_id: int
    content_type: str
    count: int
    size: int


@dataclass(frozen=True, slots=True)
class SpoolStats:
    segments: int
    bytes: int
    entries: int  # on disk, including acknowledged ones whose segment is still there
    pending_entries: int
    pending_readings: int
    evicted_entries: int
    evicted_readings: int
    recovered_truncated_bytes: int
    next_entry_id: int


@dataclass(slots=True, eq=False)
class Segment:
    """One segment file: where each entry is, its size and count, which ids are acked."""

    first_id: int
    path: Path
    ids: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    size: int = 0
    pending_readings: int = 0
    ack_fd: int | None = None

    def add(self, entry_id: int, size: int, count: int, content_type: str) -> None:
        """Index an entry written at the end of the segment (unacknowledged)."""
        self.ids.append(entry_id)
        self.offsets.append(self.size)
        self.sizes.append(size)
        self.counts.append(count)
        self.types.append(content_type)
        self.size += size
        self.pending_readings += count

    def ack(self, entry_id: int) -> int | None:
        """Mark ``entry_id`` acknowledged; its reading count, or None if unknown or acked."""
        i = self.find(entry_id)
        if i is None or entry_id in self.acked:
            return None
        self.acked.add(entry_id)
        self.pending_readings -= self.counts[i]
        return self.counts[i]

    def find(self, entry_id: int) -> int | None:
        i = bisect.bisect_left(self.ids, entry_id)
        return i if i < len(self.ids) and self.ids[i] == entry_id else None

    @property
    def pending_entries(self) -> int:
        return len(self.ids) - len(self.acked)
