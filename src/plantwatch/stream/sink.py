"""The ClickHouse sink: the stream's output topics into the store, each reading exactly once.

One step gathers a large batch from the clean-readings, features, anomalies, alerts and
dead-letter topics, writes it in the store's write order (processed readings last) and only then
commits the offsets. A batch delivered again — the sink or a worker crashed before committing —
stores no reading twice: the sink keeps the set of stored (machine, sensor, seq) keys, rebuilt
from the store itself when it starts, and drops what is already there (the same de-duplication
as the stream's, ``dedupe.py``). Keyed dead letters are de-duplicated the same way; features,
anomalies and alert events are derived rows whose tables collapse repeats (ReplacingMergeTree).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.bus.base import Bus, Message
from plantwatch.core.clock import Clock
from plantwatch.core.codec import decode_table
from plantwatch.core.deadletter import DEAD_LETTER_SCHEMA
from plantwatch.core.errors import CodecError
from plantwatch.core.topics import Topics
from plantwatch.store import queries
from plantwatch.store.client import Store
from plantwatch.stream.batches import gather
from plantwatch.stream.dedupe import Deduper
from plantwatch.stream.lag import LagSampler, metrics_table
from plantwatch.stream.lag import decode as lag_decode
from plantwatch.stream.local import WRITE_ORDER
from plantwatch.stream.metrics import RunMetrics
from plantwatch.stream.outputs import (
    ANOMALIES_SCHEMA,
    FEATURES_SCHEMA,
    READINGS_INGEST_SCHEMA,
    AlertEvent,
    alerts_table,
)
from plantwatch.stream.registry import SensorRegistry
from plantwatch.stream.restore import restore_dedupe

log = logging.getLogger(__name__)


class StoreSink:
    def __init__(
        self,
        *,
        bus: Bus,
        store: Store,
        clock: Clock,
        topics: Topics,
        group: str = "plantwatch-sink",
        max_batch_rows: int = 200_000,
        max_batch_wait_s: float = 0.5,
        metrics: RunMetrics | None = None,
        dedupe_horizon: int = 100_000,
        on_alerts: Callable[[list[AlertEvent]], None] | None = None,
    ) -> None:
        self.store, self.clock, self.topics = store, clock, topics
        #: called with each batch's alert events once they are stored (alarms, notifications)
        self.on_alerts = on_alerts
        self.max_batch_rows = max_batch_rows
        self.max_batch_wait_s = max_batch_wait_s
        self.metrics = metrics or RunMetrics()
        self.registry = SensorRegistry()
        self.deduper = Deduper(horizon=dedupe_horizon)
        self.table_of = {
            topics.clean: "readings_ingest",
            topics.features: "features",
            topics.anomalies: "anomalies",
            topics.alerts: "alert_events",
            topics.dead_letters: "dead_letters",
        }
        self.consumer = bus.subscribe([*self.table_of, topics.machines, topics.metrics], group)
        self.lag = LagSampler(self.consumer, component="sink", group=group, clock=clock)
        self.stored = 0
        self.duplicates = 0

    def restore(self) -> int:
        """Load what the store already holds; returns the number of sensors."""
        histories, _ = restore_dedupe(self.store, self.registry, self.deduper)
        return len(histories)

    def step(self, timeout: float = 0.5) -> int:
        """One batch into the store; returns the messages handled (0: nothing arrived)."""
        msgs = gather(
            self.consumer,
            max_rows=self.max_batch_rows,
            max_wait_s=self.max_batch_wait_s,
            timeout=timeout,
        )
        own = self.lag.due()
        if not msgs and own is None:
            return 0
        by_table: dict[str, list[Message]] = defaultdict(list)
        for m in msgs:
            if m.topic == self.topics.metrics:
                by_table["pipeline_metrics"].append(m)
            else:
                by_table[self.table_of.get(m.topic, "")].append(m)
        samples = lag_decode(m.value for m in by_table["pipeline_metrics"])
        if own is not None:
            samples.append(own)
        if samples:
            self.store.insert("pipeline_metrics", metrics_table(samples))
        if not msgs:
            return 0
        tables = {
            "readings_ingest": self._tables(by_table["readings_ingest"], READINGS_INGEST_SCHEMA),
            "features": self._tables(by_table["features"], FEATURES_SCHEMA),
            "anomalies": self._tables(by_table["anomalies"], ANOMALIES_SCHEMA),
            "alert_events": alerts_table(alerts := _alerts(by_table["alert_events"])),
            "dead_letters": _dead_letters(by_table["dead_letters"]),
        }
        _register_machines(self.store, by_table[""])
        readings, dups = self._new_only(tables["readings_ingest"])
        dead, dead_dups = self._new_only(tables["dead_letters"])
        tables["readings_ingest"], tables["dead_letters"] = readings, dead
        for name in WRITE_ORDER:
            self.store.insert(name, tables[name])
        self.consumer.commit(msgs)
        self.stored += readings.num_rows
        self.duplicates += dups + dead_dups
        self.metrics.account_stored(readings, self.clock, duplicates=dups + dead_dups)
        if alerts and self.on_alerts is not None:
            self.on_alerts(alerts)
        return len(msgs)

    def _tables(self, msgs: list[Message], schema: pa.Schema) -> pa.Table:
        parts = []
        for m in msgs:
            try:
                parts.append(decode_table(m.value).select(schema.names).cast(schema))
            except (CodecError, KeyError, pa.ArrowInvalid) as exc:
                log.error(
                    "sink: skipping an unreadable message %s/%s/%s: %s",
                    m.topic,
                    m.partition,
                    m.offset,
                    exc,
                )
        return pa.concat_tables(parts) if parts else schema.empty_table()

    def _new_only(self, table: pa.Table) -> tuple[pa.Table, int]:
        """Rows whose (machine, sensor, seq) the store does not hold yet; rows without a seq
        (unkeyed dead letters) always pass. Returns (rows, duplicates dropped)."""
        if table.num_rows == 0:
            return table, 0
        seq = table.column("seq")
        keyed = np.asarray(pc.is_valid(seq).to_numpy(zero_copy_only=False), np.bool_)
        keyed &= np.asarray(
            pc.not_equal(pc.utf8_length(table.column("machine_id")), 0).to_numpy(
                zero_copy_only=False
            ),
            np.bool_,
        )
        if not keyed.any():
            return table, 0
        rows = np.flatnonzero(keyed)
        sub = table.take(pa.array(rows))
        kind = (
            sub.column("kind").combine_chunks()
            if "kind" in sub.column_names
            else pa.array([""] * len(rows))
        )
        idx = self.registry.lookup(
            sub.column("machine_id").combine_chunks(),
            sub.column("sensor_id").combine_chunks(),
            kind,
        )
        q = np.asarray(pc.cast(sub.column("seq"), pa.int64(), safe=False).to_numpy(), np.int64)
        r = self.deduper.check(idx, q)
        keep = np.ones(table.num_rows, np.bool_)
        keep[rows[r.duplicate]] = False  # stale rows are kept: never lose a reading
        return table.filter(pa.array(keep)), int(r.duplicate.sum())

    def close(self) -> None:
        self.consumer.close()


def _register_machines(store: Store, msgs: list[Message]) -> None:
    rows = []
    for m in msgs:
        try:
            row = json.loads(m.value)
            rows.append({k: str(row[k]) for k in ("machine_id", "machine_type", "line", "name")})
        except (ValueError, KeyError, TypeError):
            log.error("sink: skipping an unreadable machine record at offset %s", m.offset)
    if rows:
        queries.register_machines(store, rows)


def _alerts(msgs: list[Message]) -> list[AlertEvent]:
    events = []
    for m in msgs:
        try:
            events.append(AlertEvent.from_dict(json.loads(m.value)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error(
                "sink: skipping an unreadable alert event %s/%s: %s", m.partition, m.offset, exc
            )
    return events


def _dead_letters(msgs: list[Message]) -> pa.Table:
    rows = []
    for m in msgs:
        h: Mapping[str, str] = m.headers
        seq = h.get("seq", "")
        rows.append(
            {
                "received_at": _ts(int(h.get("received_at_ms", "0") or 0)),
                "reason": h.get("reason", "malformed"),
                "detail": h.get("detail", ""),
                "source": h.get("source", m.topic),
                "machine_id": h.get("machine_id", ""),
                "sensor_id": h.get("sensor_id", ""),
                "seq": int(seq) if seq.isdigit() else None,
                "payload": m.value.decode("utf-8", "replace"),
            }
        )
    return pa.Table.from_pylist(rows, schema=DEAD_LETTER_SCHEMA)


def _ts(ms: Any) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000.0, UTC)
