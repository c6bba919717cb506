"""The in-process runner: bus → pipeline → store → commit, in micro-batches.

One step polls the raw topic until it has ``max_batch_rows`` readings or waited
``max_batch_wait_s``, decodes every message (Arrow or JSON), runs the pipeline once over the
whole batch, writes the outputs to the store with the processed readings *last* (their insert is
the commit point), then commits the messages. In the embedded plant the bus turns that commit
into the edge spool's acknowledgement, so a reading leaves the device's spool only once stored.

With ``write_ahead=N`` the writing and committing move to a writer thread that takes up to N
batches ahead, in order: the next batch is decoded and processed while chDB stores this one
(chDB lets go of the GIL while it works, so on two cores the two overlap). The order of commits
and the rule "committed only once stored" do not change; a failed write stops the writer (it
writes and commits nothing after it) and the next :meth:`step` or :meth:`finish` raises it.

After a restart :meth:`LocalRunner.restore` rebuilds the pipeline's state from the store: which
seqs are already stored (so replays are recognised as duplicates), the watermark, each sensor's
baseline and when it was last seen.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable

from plantwatch.bus.base import Bus, Message
from plantwatch.core.clock import Clock
from plantwatch.core.errors import PlantwatchError
from plantwatch.core.topics import Topics
from plantwatch.store.client import Store
from plantwatch.stream.batches import decode_messages, gather, run_batch
from plantwatch.stream.lag import LagSampler, metrics_table
from plantwatch.stream.metrics import RunMetrics
from plantwatch.stream.outputs import Output
from plantwatch.stream.pipeline import Pipeline
from plantwatch.stream.restore import Restored, restore_pipeline

log = logging.getLogger(__name__)

_TOPICS = Topics()

#: Write order: the processed readings go last; their insert is the batch's commit point.
WRITE_ORDER = ("dead_letters", "features", "anomalies", "alert_events", "readings_ingest")


def write_output(store: Store, out: Output) -> None:
    """Store one batch's outputs, processed readings last."""
    tables = {
        "dead_letters": out.dead_letters,
        "features": out.features,
        "anomalies": out.anomalies,
        "alert_events": out.alerts_table(),
        "readings_ingest": out.readings,
    }
    for name in WRITE_ORDER:
        store.insert(name, tables[name])


def alert_json(out: Output) -> list[tuple[str, bytes]]:
    """Alert events as (machine_id, JSON) for the alerts topic."""
    return [(e.machine_id, json.dumps(e.to_dict()).encode()) for e in out.alerts]


class _Writer:
    """Writes and commits batches in order in a thread of its own, up to ``depth`` ahead."""

    def __init__(self, write: Callable[[Output, list[Message]], None], depth: int) -> None:
        self._write = write
        self._queue: queue.Queue[tuple[Output, list[Message]] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:  # after a failure nothing is written or committed
                    self._write(*item)
            except BaseException as exc:  # raised in the stream thread by check()
                log.error("writing a batch to the store failed: %s", exc)
                self._error = exc
            finally:
                self._queue.task_done()

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, out: Output, msgs: list[Message]) -> None:
        self.check()
        self._queue.put((out, msgs))

    def flush(self) -> None:
        """Wait until every submitted batch is written and committed (or the writer failed)."""
        self._queue.join()
        self.check()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class LocalRunner:
    def __init__(
        self,
        *,
        bus: Bus,
        store: Store,
        pipeline: Pipeline,
        clock: Clock,
        topics: Topics = _TOPICS,
        group: str = "plantwatch-stream",
        max_batch_rows: int = 80_000,
        max_batch_wait_s: float = 0.2,
        metrics: RunMetrics | None = None,
        on_output: Callable[[Output], None] | None = None,
        write_ahead: int = 0,
    ) -> None:
        self.bus, self.store, self.pipeline, self.clock = bus, store, pipeline, clock
        self.topics = topics
        self.max_batch_rows = max_batch_rows
        self.max_batch_wait_s = max_batch_wait_s
        self.metrics = metrics or RunMetrics()
        self.on_output = on_output
        self._consumer = bus.subscribe(topics.raw, group)
        self._writer = _Writer(self._write_and_commit, write_ahead) if write_ahead > 0 else None
        self.lag = LagSampler(self._consumer, component="embedded", group=group, clock=clock)

    def restore(self) -> Restored:
        return restore_pipeline(self.store, self.pipeline)

    def step(self, timeout: float = 0.2) -> int:
        """One micro-batch. Returns the number of readings received (0: nothing arrived)."""
        sample = self.lag.due()
        if sample is not None:
            try:
                self.store.insert("pipeline_metrics", metrics_table([sample]))
            except PlantwatchError as exc:  # a metric never stops the stream
                log.warning("cannot store the consumer lag: %s", exc)
        msgs = gather(
            self._consumer,
            max_rows=self.max_batch_rows,
            max_wait_s=self.max_batch_wait_s,
            timeout=timeout,
        )
        if not msgs:
            return 0
        if self._writer is not None:
            self._writer.check()  # a failed write stops the stream before more is processed
        batch = decode_messages(msgs)
        out = run_batch(self.pipeline, batch, clock=self.clock, source=self.topics.raw)
        if self._writer is not None:
            self._writer.submit(out, msgs)
        else:
            self._write_and_commit(out, msgs)
        return out.counts.received

    def _write_and_commit(self, out: Output, msgs: list[Message]) -> None:
        self.write(out)
        self._consumer.commit(msgs)

    def flush(self) -> None:
        """Wait until every processed batch is stored and committed; raises a failed write."""
        if self._writer is not None:
            self._writer.flush()

    def write(self, out: Output) -> None:
        write_output(self.store, out)
        self.metrics.account_processed(out)
        self.metrics.account_stored(out.readings, self.clock)
        for machine, payload in alert_json(out):
            self.bus.publish(
                self.topics.alerts,
                payload,
                key=machine.encode(),
                headers={"content-type": "application/json"},
                timeout=0.0,
            )
        if self.on_output is not None:
            self.on_output(out)

    def finish(self) -> Output:
        """Fire the open windows (end of run) and store what they produce."""
        self.flush()
        out = self.pipeline.flush(now_ms=int(self.clock.time() * 1000))
        self.write(out)
        return out

    def close(self) -> None:
        """Stop the writer (what it holds is written first) and leave the bus."""
        if self._writer is not None:
            self._writer.close()
        self._consumer.close()


def stop_when_idle(runner: LocalRunner, idle_s: float, *, limit_s: float) -> int:
    """Step until nothing arrives for ``idle_s`` (tests and tools). Returns batches run."""
    deadline = time.monotonic() + limit_s
    batches = 0
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if runner.step(timeout=0.05):
            batches += 1
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= idle_s:
            break
    return batches


__all__ = ["WRITE_ORDER", "LocalRunner", "Restored", "alert_json", "stop_when_idle", "write_output"]
