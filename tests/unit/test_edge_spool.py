"""The durable spool: append, ack, segment deletion, recovery, full policies, sequences."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from plantwatch.edge import (
    EdgeError,
    Spool,
    SpoolCorruptError,
    SpoolFullError,
    SpoolLimits,
    recover_sequences,
)

CT = "application/octet-stream"
PAYLOAD = b"p" * 100


def entry_size(tmp_path: Path) -> int:
    """Bytes one ``add`` entry takes on disk (header + meta + payload)."""
    with Spool(tmp_path / "probe", limits=SpoolLimits(fsync=False)) as spool:
        add(spool, 1)
        return spool.stats.bytes


def add(spool: Spool, i: int, *, count: int = 1) -> int:
    return spool.append(CT, PAYLOAD + bytes([i % 256]), count=count, max_seq={("m", "s"): i})


def segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.seg"))


def test_append_returns_increasing_ids_and_pending_lists_them(tmp_path: Path) -> None:
    with Spool(tmp_path, limits=SpoolLimits(fsync=True)) as spool:
        ids = [add(spool, i, count=2) for i in range(1, 4)]
        assert ids == [1, 2, 3]
        assert [e.entry_id for e in spool.pending()] == ids
        assert [e.payload for e in spool] == [PAYLOAD + bytes([i]) for i in (1, 2, 3)]
        first = spool.next_pending()
        assert first is not None
        assert (first.content_type, first.count, dict(first.max_seq)) == (CT, 2, {("m", "s"): 1})
        assert spool.stats.pending_readings == 6


def test_segments_roll_and_fully_acked_old_segments_are_deleted(tmp_path: Path) -> None:
    size = entry_size(tmp_path)
    spool = Spool(tmp_path / "s", limits=SpoolLimits(segment_bytes=size, fsync=False))
    ids = [add(spool, i) for i in range(1, 4)]
    assert len(segments(spool.directory)) == 3  # one entry per segment
    assert spool.ack(ids[0])
    assert not spool.ack(ids[0])  # twice: no-op
    assert not spool.ack(999)
    assert len(segments(spool.directory)) == 2
    assert spool.ack(ids[2])  # the active segment stays while it is appended to
    assert len(segments(spool.directory)) == 2
    assert [e.entry_id for e in spool.pending()] == [ids[1]]
    assert spool.stats.pending_entries == 1
    assert spool.stats.bytes == 2 * size
    spool.close()
    assert len(segments(spool.directory)) == 1  # close retires the fully acknowledged one


def test_restart_returns_exactly_the_unacked_entries(tmp_path: Path) -> None:
    with Spool(tmp_path, limits=SpoolLimits(segment_bytes=300, fsync=True)) as spool:
        for i in range(1, 7):
            add(spool, i)
        for entry_id in (2, 4, 5):
            spool.ack(entry_id)
    with Spool(tmp_path, limits=SpoolLimits(segment_bytes=300, fsync=True)) as spool:
        assert [e.entry_id for e in spool] == [1, 3, 6]
        assert [e.payload[-1] for e in spool] == [1, 3, 6]
        assert add(spool, 7) == 7


def test_entry_ids_continue_after_every_segment_was_deleted(tmp_path: Path) -> None:
    with Spool(tmp_path, limits=SpoolLimits(fsync=False)) as spool:
        for i in range(1, 4):
            spool.ack(add(spool, i))
    assert segments(tmp_path) == []
    with Spool(tmp_path, limits=SpoolLimits(fsync=False)) as spool:
        assert spool.pending() == []
        assert add(spool, 4) == 4


def test_truncated_tail_loses_only_the_partial_entry(tmp_path: Path) -> None:
    with Spool(tmp_path, limits=SpoolLimits(fsync=True)) as spool:
        for i in range(1, 4):
            add(spool, i)
        size = spool.stats.bytes // 3
    (seg,) = tmp_path.glob("*.seg")
    full = seg.stat().st_size
    with seg.open("r+b") as f:
        f.truncate(full - size // 2)  # crash in the middle of writing entry 3
    with Spool(tmp_path, limits=SpoolLimits(fsync=True)) as spool:
        assert [e.entry_id for e in spool] == [1, 2]
        assert spool.stats.recovered_truncated_bytes == full - size // 2 - 2 * size
        assert seg.stat().st_size == 2 * size
        assert add(spool, 3) == 3  # id 3 was never returned, so it is free
    with Spool(tmp_path, limits=SpoolLimits(fsync=True)) as spool:
        assert [e.entry_id for e in spool] == [1, 2, 3]
        assert spool.stats.recovered_truncated_bytes == 0


def test_an_acked_entry_lost_with_the_tail_never_hides_a_new_entry(tmp_path: Path) -> None:
    with Spool(tmp_path, limits=SpoolLimits(fsync=False)) as spool:
        for i in range(1, 4):
            add(spool, i)
        size = spool.stats.bytes // 3
        spool.ack(3)  # acked, then (power loss, fsync off) the segment loses entry 3
    (seg,) = tmp_path.glob("*.seg")
    with seg.open("r+b") as f:
        f.truncate(2 * size)
    with Spool(tmp_path, limits=SpoolLimits(fsync=False)) as spool:
        assert [e.entry_id for e in spool] == [1, 2]
        assert add(spool, 4) == 4  # not 3: the stale ack of 3 must not swallow it
    with Spool(tmp_path, limits=SpoolLimits(fsync=False)) as spool:
        assert [e.entry_id for e in spool] == [1, 2, 4]


def test_crc_failing_tail_is_truncated(tmp_path: Path) -> None:
    with Spool(tmp_path, limits=SpoolLimits(fsync=True)) as spool:
        add(spool, 1)
        add(spool, 2)
        size = spool.stats.bytes // 2
    (seg,) = tmp_path.glob("*.seg")
    data = bytearray(seg.read_bytes())
    data[-5] ^= 0xFF  # torn write of the last entry's payload
    seg.write_bytes(bytes(data))
    with Spool(tmp_path, limits=SpoolLimits(fsync=True)) as spool:
        assert [e.entry_id for e in spool] == [1]
        assert spool.stats.recovered_truncated_bytes == size


def test_corruption_before_the_tail_raises_naming_file_and_offset(tmp_path: Path) -> None:
    with Spool(tmp_path, limits=SpoolLimits(fsync=True)) as spool:
        for i in range(1, 4):
            add(spool, i)
        size = spool.stats.bytes // 3
    (seg,) = tmp_path.glob("*.seg")
    data = bytearray(seg.read_bytes())
    data[size + 60] ^= 0xFF  # inside entry 2, entry 3 intact after it
    seg.write_bytes(bytes(data))
    with pytest.raises(SpoolCorruptError) as err:
        Spool(tmp_path, limits=SpoolLimits(fsync=True))
    assert err.value.path == seg
    assert err.value.offset == size
    assert str(seg) in str(err.value)
    assert f"offset {size}" in str(err.value)
    with pytest.raises(SpoolCorruptError):
        recover_sequences(tmp_path)
    Spool(tmp_path / "other").close()  # the failed open released its lock on tmp_path
    seg.unlink()
    Spool(tmp_path).close()


def test_block_waits_until_an_ack_frees_a_segment(tmp_path: Path) -> None:
    size = entry_size(tmp_path)
    limits = SpoolLimits(max_bytes=2 * size, segment_bytes=size, block_timeout_s=5, fsync=False)
    with Spool(tmp_path / "s", limits=limits) as spool:
        add(spool, 1)
        add(spool, 2)
        acker = threading.Timer(0.2, spool.ack, args=(1,))
        acker.start()
        started = time.monotonic()
        assert add(spool, 3) == 3
        assert time.monotonic() - started >= 0.15
        acker.join()
        assert [e.entry_id for e in spool.pending()] == [2, 3]


def test_block_retires_a_fully_acked_active_segment(tmp_path: Path) -> None:
    size = entry_size(tmp_path)
    limits = SpoolLimits(max_bytes=2 * size, block_timeout_s=0, fsync=False)
    with Spool(tmp_path / "s", limits=limits) as spool:
        spool.ack(add(spool, 1))
        spool.ack(add(spool, 2))
        assert add(spool, 3) == 3  # the one (active) segment was fully acknowledged


def test_block_times_out_with_an_actionable_error(tmp_path: Path) -> None:
    size = entry_size(tmp_path)
    limits = SpoolLimits(max_bytes=size, block_timeout_s=0.2, fsync=False)
    with Spool(tmp_path / "s", limits=limits) as spool:
        add(spool, 1)
        started = time.monotonic()
        with pytest.raises(SpoolFullError) as err:
            add(spool, 2)
        assert time.monotonic() - started >= 0.2
        message = str(err.value)
        assert f"{size} of {size} bytes" in message
        assert "when_full='block'" in message
        assert "PLANTWATCH_SPOOL__MAX_BYTES" in message
        assert "PLANTWATCH_SPOOL__WHEN_FULL" in message
        assert [e.entry_id for e in spool.pending()] == [1]


def test_reject_raises_at_once_and_writes_nothing(tmp_path: Path) -> None:
    size = entry_size(tmp_path)
    limits = SpoolLimits(max_bytes=size, when_full="reject", block_timeout_s=30, fsync=False)
    with Spool(tmp_path / "s", limits=limits) as spool:
        add(spool, 1)
        started = time.monotonic()
        with pytest.raises(SpoolFullError, match="when_full='reject'"):
            add(spool, 2)
        assert time.monotonic() - started < 1
        assert spool.stats.bytes == size
        assert spool.stats.next_entry_id == 2


def test_drop_oldest_evicts_whole_segments_and_counts_them(tmp_path: Path) -> None:
    size = entry_size(tmp_path)
    limits = SpoolLimits(
        max_bytes=3 * size, segment_bytes=size, when_full="drop_oldest", fsync=False
    )
    with Spool(tmp_path / "s", limits=limits) as spool:
        for i in range(1, 4):
            add(spool, i, count=5)
        assert add(spool, 4, count=5) == 4
        assert add(spool, 5, count=5) == 5
        stats = spool.stats
        assert (stats.evicted_entries, stats.evicted_readings) == (2, 10)
        assert [e.entry_id for e in spool.pending()] == [3, 4, 5]
        assert stats.bytes <= 3 * size
        assert not spool.ack(1)  # an evicted entry's late acknowledgement is ignored


def test_an_entry_larger_than_the_spool_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path, limits=SpoolLimits(max_bytes=1000, when_full="drop_oldest")) as spool:
        with pytest.raises(SpoolFullError, match="larger than the whole spool"):
            spool.append(CT, b"x" * 2000, count=1, max_seq={})
        assert spool.stats.bytes == 0


def test_recover_sequences_after_acks_deleted_the_segments(tmp_path: Path) -> None:
    size = entry_size(tmp_path)
    directory = tmp_path / "s"
    with Spool(directory, limits=SpoolLimits(segment_bytes=size, fsync=False)) as spool:
        a = spool.append(CT, PAYLOAD, count=2, max_seq={("m/1", "s%1"): 5, ("m2", "s"): 3})
        b = spool.append(CT, PAYLOAD, count=1, max_seq={("m/1", "s%1"): 7})
        c = spool.append(CT, PAYLOAD, count=1, max_seq={("m2", "s"): 1})
        spool.ack(a)
        spool.ack(b)
        assert len(segments(directory)) == 1  # only the active segment (entry c) is left
        expected = {("m/1", "s%1"): 7, ("m2", "s"): 3}
        assert recover_sequences(directory) == expected
        assert spool.max_seqs() == expected
        spool.ack(c)
    assert segments(directory) == []
    assert recover_sequences(directory) == expected
    with Spool(directory) as spool:
        assert spool.max_seqs() == expected
    assert recover_sequences(tmp_path / "missing") == {}


def test_a_directory_is_opened_by_one_spool_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(EdgeError, match="in use"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()


def test_limits_default_to_the_settings_defaults() -> None:
    from plantwatch.core.settings import SpoolSettings

    assert SpoolLimits() == SpoolLimits.from_settings(SpoolSettings())
    assert SpoolLimits().when_full == "block"
    assert SpoolLimits().fsync is True
