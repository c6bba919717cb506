"""Replay: archived readings fed back through the pipeline, in event-time order.

``replay`` reads the archive's ``readings`` dataset one UTC day at a time (every machine's
partitions of that day are read, filtered, merged and sorted by ``ts, machine_id, sensor_id,
seq``, so what is emitted is in event-time order overall and so per machine), cuts it into
batches of Arrow columns and hands them to a target:

* :class:`BusTarget` publishes them to the raw topic of a Kafka cluster exactly as the edge SDK
  does (Arrow IPC, ``content-type`` and ``count`` headers, one message per machine keyed by
  ``machine_id``), so running stream workers process them again (re-score with a new model,
  backfill through the sink).
* :class:`StoreTarget` runs the embedded runner's own code in this process: an in-process bus
  and :class:`~plantwatch.stream.local.LocalRunner` (validate → de-duplicate → normalize →
  windows → detectors → alerts → store) into a ClickHouse store (chDB or a server).

The replayed readings are the *processed* ones: value and unit are already canonical (so
``raw_readings`` of a backfilled store holds canonical values, not the device's units), ``seq``
is the SDK's counter, so the stream's de-duplication recognises a reading the store already
holds: replaying into a store that has (some of) the readings stores none of them twice. The
readings table of a store backfilled from an archive of a store holds the same (machine_id,
machine_type, sensor_id, kind, ts, seq, value, unit, quality) rows. What may legitimately
differ from the original run: ``late`` flags and ``anomaly_score`` (the arrival order is not the
original one), ``ingested_at`` (the time of the replay), features, anomalies and alert events
(recomputed, possibly by another model or rule set).

Memory: one day of the selected machines at a time (plus one batch in flight per target).
Time limits of validation (``max_age_s``, ``max_future_skew_s``) do not apply to archived
history (it was validated when first ingested): the store target's pipeline runs on the wall
clock with those limits lifted.

Speed: ``None`` as fast as possible; ``X`` replays X event-time seconds per wall second, paced
from the first replayed reading (a batch is sent once the wall clock reaches its last event).
A set ``stop`` event ends the replay after the batch in flight; what was sent is stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.alert.control import rule_set
from plantwatch.batch import layout
from plantwatch.bus.memory import MemoryBus
from plantwatch.core.clock import Clock, WallClock
from plantwatch.core.codec import ARROW, encode_arrow
from plantwatch.core.errors import ConfigError, PlantwatchError
from plantwatch.core.reading import SCHEMA_VERSION, conform
from plantwatch.core.settings import Settings
from plantwatch.core.topics import Topics
from plantwatch.models.scoring import scorer_from_settings
from plantwatch.store import migrate, queries
from plantwatch.store.client import Store
from plantwatch.stream.directory import decode_machine, publish_machines
from plantwatch.stream.distributed import connect
from plantwatch.stream.local import LocalRunner
from plantwatch.stream.messages import split_by_machine
from plantwatch.stream.metrics import RunMetrics
from plantwatch.stream.pipeline import Pipeline, PipelineConfig

log = logging.getLogger("plantwatch.replay")

DATASET = "readings"
SORT_KEYS = ("ts", "machine_id", "sensor_id", "seq")
#: validation limits for archived history: a century either way
_NO_LIMIT_S = 100 * 365 * 86_400.0
#: with a speed, one batch spans at most this many wall seconds of event time
_PACE_STEP_S = 0.2


class ReplayError(PlantwatchError):
    """A replay that cannot run or could not deliver what it read."""


class ReadingsArchive(Protocol):
    """What replay needs of :class:`plantwatch.batch.archive.Archive`."""

    def partitions(
        self,
        dataset: str,
        *,
        since: dt.date | None = None,
        until: dt.date | None = None,
        machines: Collection[str] | None = None,
    ) -> list[layout.Partition]: ...

    def read_partition(self, p: layout.Partition) -> pa.Table: ...


class ReplayTarget(Protocol):
    def describe(self) -> str: ...

    def register(self, machines: Mapping[str, str]) -> None:
        """Machines (id → type) met for the first time, before their first batch."""

    def send(self, batch: pa.Table) -> None:
        """One batch of raw readings (``READING_SCHEMA``) in event-time order."""

    def finish(self) -> None:
        """Everything sent is delivered (bus) or stored (store)."""

    def summary(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class ReplayReport:
    target: str
    rows_read: int = 0  # rows in the partitions read
    rows_sent: int = 0  # rows that passed --since/--until/--machine and were sent
    batches: int = 0
    days: int = 0
    machines: set[str] = field(default_factory=set)
    first_ts: dt.datetime | None = None
    last_ts: dt.datetime | None = None
    wall_seconds: float = 0.0
    stopped: bool = False
    delivered: dict[str, Any] = field(default_factory=dict)  # the target's own account

    @property
    def rows_per_s(self) -> float:
        return self.rows_sent / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "rows_read": self.rows_read,
            "rows_sent": self.rows_sent,
            "batches": self.batches,
            "days": self.days,
            "machines": sorted(self.machines),
            "first_ts": layout.iso_ms(self.first_ts) if self.first_ts else None,
            "last_ts": layout.iso_ms(self.last_ts) if self.last_ts else None,
            "wall_seconds": round(self.wall_seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "stopped": self.stopped,
            **({"target_counts": self.delivered} if self.delivered else {}),
        }


# -- reading the archive -----------------------------------------------------------------------


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def day_tables(
    archive: ReadingsArchive,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    machines: Collection[str] | None = None,
) -> Iterator[tuple[dt.date, int, pa.Table]]:
    """``(day, rows read, rows selected and sorted)`` per archived UTC day, oldest first.

    ``since`` is inclusive, ``until`` exclusive (naive means UTC). Rows come in the
    ``readings`` dataset schema, sorted by ts, machine_id, sensor_id, seq.
    """
    since, until = _utc(since), _utc(until)
    wanted = sorted(set(machines)) if machines is not None else None
    parts = archive.partitions(
        DATASET,
        since=since.date() if since else None,
        until=until.date() if until else None,
        machines=wanted,
    )
    by_day: dict[dt.date, list[layout.Partition]] = {}
    for p in parts:
        by_day.setdefault(p.date, []).append(p)
    for day in sorted(by_day):
        # each in the dataset's schema; a day in by_day has at least one partition
        table = pa.concat_tables([archive.read_partition(p) for p in by_day[day]])
        read = table.num_rows
        table = _select(table, since, until, wanted)
        if table.num_rows:
            table = table.sort_by([(k, "ascending") for k in SORT_KEYS])
        yield day, read, table


def _select(
    table: pa.Table,
    since: dt.datetime | None,
    until: dt.datetime | None,
    machines: Sequence[str] | None,
) -> pa.Table:
    ts = table.column("ts")
    conds: list[Any] = []
    if since is not None:
        conds.append(pc.greater_equal(ts, pa.scalar(since, layout.TS)))
    if until is not None:
        conds.append(pc.less(ts, pa.scalar(until, layout.TS)))
    if machines is not None:
        conds.append(pc.is_in(table.column("machine_id"), pa.array(machines, pa.string())))
    return table.filter(functools.reduce(pc.and_, conds)) if conds else table


def raw_readings(table: pa.Table) -> pa.Table:
    """Archived (processed) readings as raw readings for the bus (``READING_SCHEMA``)."""
    version = pa.array(np.full(table.num_rows, SCHEMA_VERSION, np.uint8))
    return conform(table.append_column("schema_version", version))


def _batches(ts_ms: np.ndarray[Any, Any], batch_rows: int, span_ms: int | None) -> Iterator[slice]:
    """Row ranges of at most ``batch_rows`` rows and (with a speed) ``span_ms`` of event time."""
    n, i = len(ts_ms), 0
    while i < n:
        end = min(n, i + batch_rows)
        if span_ms is not None:
            cut = int(np.searchsorted(ts_ms, ts_ms[i] + span_ms, side="left"))
            end = min(end, max(cut, i + 1))
        yield slice(i, end)
        i = end


def _machine_types(table: pa.Table) -> dict[str, str]:
    pairs = table.group_by(["machine_id", "machine_type"], use_threads=False).aggregate([])
    out: dict[str, str] = {}
    for m, t in zip(
        pairs.column("machine_id").to_pylist(),
        pairs.column("machine_type").to_pylist(),
        strict=True,
    ):
        if m in out and out[m] != t:
            log.warning("machine %s has types %r and %r in the archive; using %r", m, out[m], t, t)
        out[str(m)] = str(t or "")
    return out


# -- the replay --------------------------------------------------------------------------------


def replay(
    archive: ReadingsArchive,
    *,
    target: ReplayTarget,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    machines: Collection[str] | None = None,
    speed: float | None = None,
    batch_rows: int = 50_000,
    stop: threading.Event | None = None,
) -> ReplayReport:
    """Feed the archived readings to ``target`` in event-time order; see the module docs.

    The target is finished (everything sent delivered or stored) but not closed.
    """
    if speed is not None and not speed > 0:
        raise ConfigError(f"speed must be > 0 event-time seconds per wall second, got {speed}")
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be >= 1, got {batch_rows}")
    stop = stop or threading.Event()
    report = ReplayReport(target=target.describe())
    started = time.monotonic()
    span_ms = max(1, int(speed * _PACE_STEP_S * 1000)) if speed is not None else None
    first_ms: int | None = None
    known: dict[str, str] = {}
    for _day, read, table in day_tables(archive, since=since, until=until, machines=machines):
        report.days += 1
        report.rows_read += read
        if stop.is_set():  # set before the first day or during an empty one
            break
        if not table.num_rows:
            continue
        types = _machine_types(table)
        new = {m: t for m, t in types.items() if known.get(m) != t}
        if new:
            target.register(new)
            known.update(new)
        ts = np.asarray(pc.cast(table.column("ts"), pa.int64()).to_numpy(), np.int64)
        if first_ms is None:
            first_ms = int(ts[0])
        for rows in _batches(ts, batch_rows, span_ms):
            wait_s = 0.0
            if speed is not None:
                due = started + (int(ts[rows.stop - 1]) - first_ms) / 1000.0 / speed
                wait_s = max(0.0, due - time.monotonic())
            if stop.wait(wait_s):
                break
            batch = table.slice(rows.start, rows.stop - rows.start)
            target.send(raw_readings(batch))
            report.batches += 1
            report.rows_sent += batch.num_rows
            report.first_ts = report.first_ts or _from_ms(int(ts[rows.start]))
            report.last_ts = _from_ms(int(ts[rows.stop - 1]))
        report.machines.update(types)
        if stop.is_set():  # before the next day is read: it would not be replayed
            break
    report.stopped = stop.is_set()
    target.finish()  # after a stop too: what was sent is delivered or stored
    report.wall_seconds = time.monotonic() - started
    report.delivered = target.summary()
    if report.stopped:
        log.warning("replay stopped after %d readings", report.rows_sent)
    return report


def _from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000.0, dt.UTC)


# -- targets -----------------------------------------------------------------------------------


class BusTarget:
    """Raw readings to Kafka's raw topic, as the edge SDK publishes them.

    One message per machine and batch (at most ``max_rows_per_message`` readings), keyed by
    ``machine_id`` so a machine's readings stay in order on one partition. Machines the
    registry topic does not know yet are announced there first (as ``plantwatch run --bus``
    does), so workers apply the right machine type; known ones are left alone.
    """

    def __init__(
        self,
        bus_url: str,
        settings: Settings,
        *,
        max_rows_per_message: int = 10_000,
        announce: bool = True,
        registry_timeout_s: float = 15.0,
    ) -> None:
        self.url = bus_url
        self.bus, self.topics = connect(bus_url, settings)
        self.max_rows = max_rows_per_message
        self.announce = announce
        self.registry_timeout_s = registry_timeout_s
        self._known: set[str] | None = None
        self._failed_before = self.bus.failed
        self.messages = 0
        self.sent = 0
        self.announced: list[str] = []

    def describe(self) -> str:
        return f"{self.url} {self.topics.raw}"

    def _registry(self) -> set[str]:
        """Machine ids on the registry topic (read from its start by a group of our own)."""
        consumer = self.bus.subscribe(self.topics.machines, f"plantwatch-replay-{uuid.uuid4().hex}")
        known: set[str] = set()
        deadline = time.monotonic() + self.registry_timeout_s
        try:
            while time.monotonic() < deadline:
                msgs = consumer.poll(500, 0.2)
                for m in msgs:
                    row = decode_machine(m.value)
                    if row is not None:
                        known.add(row["machine_id"])
                if not msgs and consumer.caught_up():
                    break
            else:
                log.warning(
                    "the machine registry %s was not read to its end in %.0f s",
                    self.topics.machines,
                    self.registry_timeout_s,
                )
        finally:
            consumer.close()
        return known

    def register(self, machines: Mapping[str, str]) -> None:
        if not self.announce:
            return
        if self._known is None:
            self._known = self._registry()
        for machine_id, machine_type in sorted(machines.items()):
            if machine_id in self._known:
                continue
            row = {
                "machine_id": machine_id,
                "machine_type": machine_type,
                "line": "",
                "site": "",
                "name": machine_id,
            }
            publish_machines(self.bus, self.topics, [row])
            self._known.add(machine_id)
            self.announced.append(machine_id)

    def send(self, batch: pa.Table) -> None:
        for machine, part in split_by_machine(batch):
            for i in range(0, part.num_rows, self.max_rows):
                rows = part.slice(i, self.max_rows)
                self.bus.publish(
                    self.topics.raw,
                    encode_arrow(rows),
                    key=machine.encode(),
                    headers={"content-type": ARROW, "count": str(rows.num_rows)},
                )
                self.messages += 1
                self.sent += rows.num_rows

    def finish(self) -> None:
        left = self.bus.flush(60.0)
        while left:
            log.info("waiting for the broker to take %d messages", left)
            left = self.bus.flush(60.0)
        failed = self.bus.failed - self._failed_before
        if failed:
            raise ReplayError(
                f"{failed} messages were not delivered to {self.url}: {self.bus.last_error}; "
                "replay again (the stream de-duplicates what arrived twice)"
            )

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "readings": self.sent,
            "machines_announced": len(self.announced),
        }

    def close(self) -> None:
        self.bus.close()


def replay_config(settings: Settings) -> PipelineConfig:
    """The pipeline configuration of a replay: the settings', archived history exempt from the
    age and clock-skew limits."""
    return dataclasses.replace(
        PipelineConfig.from_settings(settings.stream),
        max_age_s=_NO_LIMIT_S,
        max_future_skew_s=_NO_LIMIT_S,
    )


class StoreTarget:
    """The embedded runner's code in this process: in-process bus → LocalRunner → ``store``.

    The store is migrated and the pipeline restored from it (de-duplication state, watermark,
    baselines, open alerts), exactly as ``plantwatch run`` starts. Machines the store's registry
    does not know are added to it (machine_type from the archive, no line or site); the
    pipeline labels readings with the archived machine type.
    """

    def __init__(self, store: Store, settings: Settings, *, clock: Clock | None = None) -> None:
        self.store = store
        migrate(store)
        self.pipeline = Pipeline(
            replay_config(settings),
            rules=rule_set(settings).rules,
            models=scorer_from_settings(settings),
        )
        self.metrics = RunMetrics()
        self.topics = Topics(settings.topic_prefix)
        self.bus = MemoryBus(max_messages=4, publish_timeout=settings.bus.publish_timeout_s)
        self.runner = LocalRunner(
            bus=self.bus,
            store=store,
            pipeline=self.pipeline,
            clock=clock or WallClock(),
            topics=self.topics,
            group="plantwatch-replay",
            max_batch_rows=1,  # one message (one replay batch) per micro-batch
            max_batch_wait_s=0.0,
            metrics=self.metrics,
            write_ahead=settings.stream.write_ahead,
        )
        self.restored = self.runner.restore()
        self.registered: list[str] = []
        self._stored: dict[str, dict[str, str]] | None = None  # the registry, read once

    def describe(self) -> str:
        caps = self.store.capabilities
        where = f"chdb://{caps.data_path}" if caps.embedded else "clickhouse"
        return f"{where} {self.store.database}"

    def register(self, machines: Mapping[str, str]) -> None:
        if self._stored is None:
            self._stored = {r["machine_id"]: r for r in queries.machine_rows(self.store)}
        stored = self._stored
        rows = []
        for machine_id, machine_type in sorted(machines.items()):
            have = stored.get(machine_id)
            if have is not None and have["machine_type"] != machine_type:
                log.warning(
                    "machine %s is a %r in the store's registry and a %r in the archive: the "
                    "replayed readings keep the archived type; the registry is left as it is",
                    machine_id,
                    have["machine_type"],
                    machine_type,
                )
            base = have or {"line": "", "site": "", "name": machine_id}
            rows.append({**base, "machine_id": machine_id, "machine_type": machine_type})
        self.pipeline.register_machines(rows)
        new = [r for r in rows if r["machine_id"] not in stored]
        queries.register_machines(self.store, new)
        stored.update((r["machine_id"], r) for r in new)
        self.registered += [r["machine_id"] for r in new]

    def _drain(self) -> None:
        while self.runner.step(timeout=0.0):
            pass

    def send(self, batch: pa.Table) -> None:
        self.bus.publish(
            self.topics.raw,
            encode_arrow(batch),
            headers={"content-type": ARROW, "count": str(batch.num_rows)},
        )
        self._drain()

    def finish(self) -> None:
        self._drain()
        self.runner.finish()

    def summary(self) -> dict[str, Any]:
        with self.metrics.lock:
            c = self.metrics.counts
            return {
                "received": c.received,
                "stored": c.stored,
                "duplicates": c.duplicates,
                "dead_letters": dict(sorted(c.dead.items())),
                "late": c.late,
                "anomalies": self.metrics.anomalies,
                "alerts_fired": self.metrics.alerts_fired,
                "machines_registered": len(self.registered),
            }

    def close(self) -> None:
        self.runner.close()
        self.bus.close()


__all__ = [
    "BusTarget",
    "ReadingsArchive",
    "ReplayError",
    "ReplayReport",
    "ReplayTarget",
    "StoreTarget",
    "day_tables",
    "raw_readings",
    "replay",
    "replay_config",
]
