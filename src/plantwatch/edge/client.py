"""``EdgeClient``: what a device or gateway uses to send readings, losing nothing.

Three ways in, one way out::

    typed helpers (client.temperature(...)) -> column buffer -+
    send_batch(table)   (validated, columnar)  ---------------+-> Spool -> sender thread
    forward(records)    (unvalidated gateway relay) ----------+      -> Transport -> bus

When is a reading *accepted* (durable: it survives ``kill -9`` and is sent after a restart)?

* ``send_batch`` and ``forward``: when they return.
* typed helpers: once the buffer holding it was written to the spool, i.e. after ``flush()``
  returned (``flush()`` blocks until it is), or after the sender thread wrote the buffer
  (``max_delay_s`` after the buffer's first reading, or at once when it holds ``max_readings``).
  A helper that returned but whose buffer was not yet written can be lost by a crash; its seq
  is then reused after the restart (it was never sent).

An accepted reading leaves the spool only when the transport acknowledges it (with the memory
bus: after the stream and the store committed it). Sequence numbers are per ``(machine_id,
sensor_id)``, start at 1 and continue across restarts (they come from the spool).

Threads: one producer thread may call helpers, ``send_batch`` and ``forward`` while the sender
thread runs; acknowledgements arrive on the consumer's thread.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from plantwatch.core.clock import Clock, WallClock
from plantwatch.core.codec import ARROW, NDJSON, encode_arrow
from plantwatch.core.errors import InvalidReadingError
from plantwatch.core.kinds import SensorKind
from plantwatch.core.logs import EventThrottle, sensor_event
from plantwatch.core.reading import READING_SCHEMA, SCHEMA_VERSION
from plantwatch.edge._buffer import Columns
from plantwatch.edge._config import Backoff, Batching
from plantwatch.edge._records import encode_unchecked, number_records
from plantwatch.edge._typed import TypedHelpers
from plantwatch.edge._validate import check_batch, check_id, check_reading, rank_by_sensor
from plantwatch.edge.errors import ClientClosedError
from plantwatch.edge.spool import SensorKey, Spool
from plantwatch.edge.transport import Transport

__all__ = ["Backoff", "Batching", "EdgeClient", "EdgeStats"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EdgeStats:
    accepted_readings: int  # written to the spool by this client
    buffered_readings: int  # typed readings not yet written (not yet accepted)
    spooled_entries: int
    sent_entries: int
    acked_entries: int
    pending_entries: int  # in the spool, not yet acknowledged (including earlier runs)
    pending_readings: int
    retries: int
    evicted_entries: int
    evicted_readings: int
    last_error: str | None


_WALL = WallClock()
_BATCHING = Batching()
_BACKOFF = Backoff()


class EdgeClient(TypedHelpers):
    """Validates, numbers, spools and sends readings. See the module docstring for guarantees."""

    def __init__(
        self,
        *,
        spool: Spool,
        transport: Transport,
        clock: Clock = _WALL,
        batching: Batching = _BATCHING,
        backoff: Backoff = _BACKOFF,
    ) -> None:
        self.spool = spool
        self.transport = transport
        self.clock = clock
        self.batching = batching
        self.backoff = backoff
        self._seqs: dict[SensorKey, int] = spool.max_seqs()  # = recover_sequences(directory)
        self._buf = Columns()
        self._buf_lock = threading.Lock()  # buffer and seq counters
        self._write_lock = threading.Lock()  # spool writes, so entries keep seq order
        self._cond = threading.Condition()  # wakes the sender
        self._kick = False
        self._stop = False
        self._closed = False
        self._stats_lock = threading.Lock()
        self._accepted = self._spooled = self._sent = self._acked = self._retries = 0
        self._last_error: str | None = None
        self._throttle = EventThrottle(60.0)
        self._thread = threading.Thread(
            target=self._run, name="plantwatch-edge-sender", daemon=True
        )
        self._thread.start()

    # -- typed readings ------------------------------------------------------------------------

    def reading(
        self,
        kind: SensorKind | str,
        machine_id: str,
        sensor_id: str,
        value: float,
        *,
        unit: str | None = None,
        ts: datetime | None = None,
        quality: str = "good",
    ) -> int:
        """Validate one reading, buffer it and return its seq. See the module docstring for
        when it is accepted; raises ``InvalidReadingError`` (nothing buffered, no seq used)."""
        self._check_open()
        try:
            key = (check_id("machine_id", machine_id), check_id("sensor_id", sensor_id))
            checked = check_reading(
                kind, value, unit=unit, ts=ts, quality=quality, now=self.clock.now
            )
        except InvalidReadingError as exc:
            self._rejected(exc, machine_id, sensor_id, 1)
            raise
        while True:
            with self._buf_lock:
                size = len(self._buf)
                if size < self.batching.max_readings:
                    seq = self._seqs.get(key, 0) + 1
                    self._seqs[key] = seq
                    if size == 0:
                        self._buf.started = time.monotonic()
                    self._buf.add(key[0], key[1], checked, seq)
                    break
            self._write_buffer(wait=True)  # full: write it here, or raise with nothing taken
        if size == 0 or size + 1 >= self.batching.max_readings:
            self._wake()
        return seq

    def flush(self) -> None:
        """Write buffered typed readings to the spool; when it returns they are accepted."""
        self._check_open()
        self._write_buffer(wait=True)

    def _write_buffer(self, *, wait: bool) -> bool:
        if not self._write_lock.acquire(blocking=wait):
            return False
        try:
            self._write_buffer_locked(wait=wait)
        finally:
            self._write_lock.release()
        return True

    def _write_buffer_locked(self, *, wait: bool) -> None:
        with self._buf_lock:
            if not len(self._buf):
                return
            batch, self._buf = self._buf, Columns()
        try:
            payload = encode_arrow(batch.to_table())
            self._append(ARROW, payload, count=len(batch), max_seq=batch.max_seq, wait=wait)
        except BaseException:
            with self._buf_lock:  # put it back in front of readings buffered meanwhile
                batch.extend(self._buf)
                self._buf = batch
            raise

    # -- batches -------------------------------------------------------------------------------

    def send_batch(self, table: pa.Table) -> pa.Table:
        """Validate whole columns, number and spool them as one entry; accepted on return.

        Columns: machine_id, sensor_id, kind, value, unit, optional ts (tz-aware timestamps,
        default now) and quality (default "good"). A bad row raises ``InvalidReadingError``
        with field, value and row index, and nothing of the batch is accepted. Returns the
        table as spooled (``READING_SCHEMA``, with seq).
        """
        self._check_open()
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        try:
            cols = check_batch(table, now=self.clock.now())
        except InvalidReadingError as exc:
            self._rejected(exc, *_row_ids(table, exc.row), getattr(table, "num_rows", 0))
            raise
        n = table.num_rows
        if n == 0:
            return READING_SCHEMA.empty_table()
        ranked = rank_by_sensor(cols.machine_id, cols.sensor_id)
        with self._write_lock:
            self._write_buffer_locked(wait=True)  # earlier typed readings go first
            with self._buf_lock:
                base = np.array([self._seqs.get(k, 0) for k in ranked.keys], np.int64)
                before = dict(zip(ranked.keys, base.tolist(), strict=True))
                after = dict(zip(ranked.keys, (base + ranked.counts).tolist(), strict=True))
                self._seqs.update(after)
            seq = base[ranked.inverse] + ranked.rank + 1
            out = pa.table(
                {
                    "machine_id": cols.machine_id,
                    "sensor_id": cols.sensor_id,
                    "kind": cols.kind,
                    "value": cols.value,
                    "unit": cols.unit,
                    "ts": cols.ts,
                    "seq": pa.array(seq.astype(np.uint64)),
                    "quality": cols.quality,
                    "schema_version": pa.array(np.full(n, SCHEMA_VERSION, np.uint8)),
                },
                schema=READING_SCHEMA,
            )
            try:
                self._append(ARROW, encode_arrow(out), count=n, max_seq=after, wait=True)
            except BaseException:
                self._give_back(before, after)
                raise
        return out

    def forward(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Relay records as received (the stream validates and dead-letters); accepted on return.

        A record without ``seq`` gets the next seq of its sensor (when machine_id and sensor_id
        are strings); a record with one keeps it (a re-transmission) and later seqs of that
        sensor continue above it. Spooled as JSON lines (NaN stays NaN). Returns the records as
        spooled.
        """
        self._check_open()
        out = [dict(r) for r in records]
        if not out:
            return []
        with self._write_lock:
            self._write_buffer_locked(wait=True)
            with self._buf_lock:
                before, top = number_records(out, self._seqs)
                after = {key: self._seqs[key] for key in before if key in self._seqs}
            try:
                payload = encode_unchecked(out)
                self._append(NDJSON, payload, count=len(out), max_seq=top, wait=True)
            except BaseException:
                self._give_back(before, after)
                raise
        return out

    def _rejected(self, exc: InvalidReadingError, machine: Any, sensor: Any, readings: int) -> None:
        """One event per rejected call (a batch is one), at most one a minute per sensor and
        field; the count of those held back rides on the next one."""
        m = machine if isinstance(machine, str) else None
        s = sensor if isinstance(sensor, str) else None
        held = self._throttle.allow(("rejected", m, s, exc.field))
        if held is None:
            return
        sensor_event(
            _log,
            logging.WARNING,
            "sdk.reading.rejected",
            f"edge client: rejected {readings} reading(s): {exc}",
            machine_id=m,
            sensor_id=s,
            readings=readings,
            field=exc.field,
            row=exc.row,
            reason=exc.problem,
            suppressed=held or None,
        )

    def _give_back(self, before: Mapping[SensorKey, int], after: Mapping[SensorKey, int]) -> None:
        """Return seqs reserved for a batch that was not accepted (unless used since)."""
        with self._buf_lock:
            for key, value in after.items():
                if self._seqs.get(key) == value:
                    if before.get(key, 0):
                        self._seqs[key] = before[key]
                    else:
                        self._seqs.pop(key, None)

    def _append(
        self,
        content_type: str,
        payload: bytes,
        *,
        count: int,
        max_seq: Mapping[SensorKey, int],
        wait: bool,
    ) -> None:
        write = self.spool.append if wait else self.spool.try_append
        write(content_type, payload, count=count, max_seq=max_seq)
        with self._stats_lock:
            self._accepted += count
            self._spooled += 1
        self._wake()

    # -- sending -------------------------------------------------------------------------------

    def _wake(self) -> None:
        with self._cond:
            self._kick = True
            self._cond.notify_all()

    def _flush_due(self) -> float | None:
        with self._buf_lock:
            if not len(self._buf):
                return None
            if len(self._buf) >= self.batching.max_readings:
                return 0.0
            return self._buf.started + self.batching.max_delay_s

    def _run(self) -> None:
        cursor = 0  # highest entry id sent in this run; after a restart all pending are re-sent
        down_since: float | None = None  # monotonic time of the first failed send of a streak
        failures = 0
        retry_at = flush_at = 0.0
        backoff = flush_backoff = 0.0
        while True:
            with self._cond:
                if self._stop:
                    return
                self._kick = False
            now = time.monotonic()
            due = self._flush_due()
            if due is not None and now >= max(due, flush_at):
                try:
                    if not self._write_buffer(wait=False):  # a producer is writing
                        flush_at = now + self.backoff.initial_s
                    flush_backoff = 0.0
                except ClientClosedError:
                    return
                except Exception as exc:  # e.g. SpoolFullError; the buffer is kept
                    self._failed(exc, "writing buffered readings to the spool", flush_backoff)
                    flush_backoff = self.backoff.after(flush_backoff)
                    flush_at = now + flush_backoff
                continue
            if now >= retry_at:
                try:
                    entry = self.spool.next_pending(cursor)
                    if entry is not None:
                        ack = functools.partial(self._on_ack, entry.entry_id)
                        self.transport.send(entry, ack)
                        cursor = entry.entry_id
                        backoff = 0.0
                        if down_since is not None:
                            self._transport_recovered(failures, now - down_since)
                            down_since, failures = None, 0
                        with self._stats_lock:
                            self._sent += 1
                        continue
                except ClientClosedError:
                    return
                except Exception as exc:  # TransportError, or a bug: retry, never drop
                    self._failed(exc, f"sending the spool entry after {cursor}", backoff)
                    if down_since is None:
                        down_since = now
                        self._transport_down(exc)
                    failures += 1
                    backoff = self.backoff.after(backoff)
                    retry_at = now + backoff
                    with self._stats_lock:
                        self._retries += 1
            wake = [t for t in (retry_at, None if due is None else max(due, flush_at)) if t]
            timeout = min([1.0, *(t - time.monotonic() for t in wake if t > now)])
            with self._cond:
                if not self._stop and not self._kick and timeout > 0:
                    self._cond.wait(timeout)

    def _failed(self, exc: Exception, doing: str, backoff: float) -> None:
        with self._stats_lock:
            self._last_error = f"{doing}: {exc}"
        level = logging.WARNING if backoff == 0.0 else logging.DEBUG  # once per failure streak
        _log.log(level, "edge client: %s failed: %s (will retry)", doing, exc)

    @staticmethod
    def _transport_down(exc: Exception) -> None:
        """The event for the first failed send of a streak (at INFO: ``_failed`` warns)."""
        sensor_event(
            _log,
            logging.INFO,
            "sdk.transport.unavailable",
            f"edge client: the transport cannot take entries ({exc}); retrying with backoff",
            machine_id=None,
            reason=type(exc).__name__,
        )

    @staticmethod
    def _transport_recovered(retries: int, down_s: float) -> None:
        """The event for the first successful send after a streak of ``retries`` failures."""
        sensor_event(
            _log,
            logging.INFO,
            "sdk.transport.recovered",
            f"edge client: the transport takes entries again after {down_s:.1f}s",
            machine_id=None,
            retries=retries,
            down_s=round(down_s, 3),
        )

    def _on_ack(self, entry_id: int) -> None:
        try:
            recorded = self.spool.ack(entry_id)
        except Exception:  # must not break the consumer that committed
            _log.exception("edge client: could not record the acknowledgement of %d", entry_id)
            return
        if recorded:
            with self._stats_lock:
                self._acked += 1

    # -- lifecycle -----------------------------------------------------------------------------

    def drain(self, timeout: float | None = None) -> bool:
        """Flush, then wait until every spooled entry is acknowledged. False on timeout."""
        self.flush()
        return self.spool.wait_empty(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush, wait up to ``timeout`` for acknowledgements, stop the sender, close transport
        and spool. Unacknowledged entries stay in the spool for the next start. True if drained.
        """
        if self._closed:
            return False
        self._closed = True
        drained = False
        try:
            self._write_buffer(wait=True)
            drained = self.spool.wait_empty(timeout)
        finally:
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            self._thread.join(timeout=10.0)
            try:
                self.transport.close()
            finally:
                self.spool.close()
        return drained

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the edge client is closed; create a new one to send more")

    @property
    def stats(self) -> EdgeStats:
        spool = self.spool.stats
        with self._buf_lock:
            buffered = len(self._buf)
        with self._stats_lock:
            return EdgeStats(
                accepted_readings=self._accepted,
                buffered_readings=buffered,
                spooled_entries=self._spooled,
                sent_entries=self._sent,
                acked_entries=self._acked,
                pending_entries=spool.pending_entries,
                pending_readings=spool.pending_readings,
                retries=self._retries,
                evicted_entries=spool.evicted_entries,
                evicted_readings=spool.evicted_readings,
                last_error=self._last_error,
            )

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _row_ids(table: pa.Table, row: int | None) -> tuple[Any, Any]:
    """machine_id and sensor_id of a batch's row (None when unknown), for the rejection event."""
    try:
        names = table.schema.names
        m, s = (
            table.column(c)[row].as_py() if c in names and row is not None else None
            for c in ("machine_id", "sensor_id")
        )
    except (AttributeError, IndexError, TypeError, ValueError, pa.ArrowException):
        return None, None
    return m, s
