"""Micro-batches off a bus: poll until enough readings or long enough, then decode them all."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa

from plantwatch.bus.base import Consumer, Message
from plantwatch.core.clock import Clock
from plantwatch.core.codec import ARROW, Reject, decode
from plantwatch.core.reading import READING_SCHEMA
from plantwatch.stream.outputs import Output
from plantwatch.stream.pipeline import Pipeline


def count_of(m: Message) -> int:
    """Readings in a message, from its ``count`` header (1 when absent or unreadable)."""
    try:
        return max(1, int(m.headers.get("count", "1")))
    except ValueError:
        return 1


def gather(
    consumer: Consumer, *, max_rows: int, max_wait_s: float, timeout: float
) -> list[Message]:
    """Wait up to ``timeout`` for a first message, then keep polling until ``max_rows`` readings
    or ``max_wait_s`` passed. Each poll asks for about as many messages as the readings still
    wanted fill (judged by the messages so far), so a batch overshoots ``max_rows`` by less than
    one message's readings, not by a whole poll's."""
    msgs = consumer.poll(1, timeout)
    if not msgs:
        return msgs
    rows = sum(count_of(m) for m in msgs)
    deadline = time.monotonic() + max_wait_s
    while rows < max_rows and time.monotonic() < deadline:
        per_message = max(1, rows // len(msgs))
        wanted = min(16, max(1, -(-(max_rows - rows) // per_message)))
        more = consumer.poll(wanted, max(0.0, min(0.02, deadline - time.monotonic())))
        msgs.extend(more)
        rows += sum(count_of(m) for m in more)
    return msgs


@dataclass(slots=True)
class Incoming:
    """A decoded micro-batch: the readings, the records that did not decode, and the messages
    of which nothing decoded (kept whole for a dead-letter topic)."""

    table: pa.Table
    rejects: list[Reject] = field(default_factory=list)
    undecodable: list[tuple[Message, Reject]] = field(default_factory=list)


def decode_messages(msgs: list[Message], *, keep_whole: bool = False) -> Incoming:
    """Decode every message by its content type. With ``keep_whole``, messages of which nothing
    decoded go to ``undecodable`` instead of ``rejects``."""
    tables: list[pa.Table] = []
    out = Incoming(READING_SCHEMA.empty_table())
    for m in msgs:
        d = decode(m.headers.get("content-type", ARROW), m.value)
        if d.whole and keep_whole:
            out.undecodable.append((m, d.rejects[0]))
            continue
        if d.table.num_rows:
            tables.append(d.table)
        out.rejects.extend(d.rejects)
    if tables:
        out.table = pa.concat_tables(tables)
    return out


def run_batch(pipeline: Pipeline, batch: Incoming, *, clock: Clock, source: str) -> Output:
    """The pipeline over one decoded micro-batch: ``clock`` is the pipeline's time (simulated
    in an accelerated run), the wall clock says when the batch arrived."""
    return pipeline.process(
        batch.table,
        now_ms=int(clock.time() * 1000),
        rejects=batch.rejects,
        source=source,
        arrival_ms=int(time.time() * 1000),
    )
