"""A batch's outputs as bus messages: one encoding for every shape that publishes them.

The Kafka stream worker (``worker.py``) and the Flink job (``flink/``) both turn a pipeline
:class:`~plantwatch.stream.outputs.Output` into these messages, and the store sink reads them
back (``sink.py``): clean readings, features and anomalies as Arrow (one message per machine,
keyed by machine_id), alert events as JSON, dead letters one message each (the record's bytes as
received, the reason in headers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.bus.base import Message
from plantwatch.core.codec import Reject, encode_table
from plantwatch.core.deadletter import Reason
from plantwatch.core.topics import Topics
from plantwatch.stream.local import alert_json
from plantwatch.stream.outputs import Output

TABLE_CONTENT_TYPE = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True, slots=True)
class OutMessage:
    topic: str
    value: bytes
    key: str | None
    headers: Mapping[str, str] = field(default_factory=dict)


def split_by_machine(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """(machine_id, rows of that machine) for each machine in ``table``."""
    if table.num_rows == 0:
        return
    enc = pc.dictionary_encode(table.column("machine_id").combine_chunks())
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False))
    for i, machine in enumerate(enc.dictionary.to_pylist()):
        yield str(machine), table.take(pa.array(np.flatnonzero(codes == i)))


def output_messages(out: Output, topics: Topics) -> Iterator[OutMessage]:
    """Every message one batch's outputs become, in publishing order."""
    for topic, name, table in (
        (topics.clean, "readings_ingest", out.readings),
        (topics.features, "features", out.features),
        (topics.anomalies, "anomalies", out.anomalies),
    ):
        for machine, part in split_by_machine(table):
            headers = {
                "content-type": TABLE_CONTENT_TYPE,
                "table": name,
                "count": str(part.num_rows),
            }
            yield OutMessage(topic, encode_table(part), machine, headers)
    for machine, payload in alert_json(out):
        yield OutMessage(topics.alerts, payload, machine, {"content-type": "application/json"})
    for row in out.dead_letters.to_pylist():
        yield OutMessage(
            topics.dead_letters,
            row["payload"].encode(),
            row["machine_id"] or None,
            _dl_headers(row),
        )


def whole_dead_letters(
    undecodable: Iterable[tuple[Message, Reject]], out: Output, now_ms: int, topics: Topics
) -> list[OutMessage]:
    """Messages of which nothing decoded, each kept whole for the dead-letter topic and
    accounted in ``out``'s counts (received, and dead as malformed)."""
    dead = [_whole_dead_letter(m, reject, now_ms, topics) for m, reject in undecodable]
    out.counts.received += len(dead)
    out.counts.dead[Reason.MALFORMED.value] += len(dead)
    return dead


def _whole_dead_letter(m: Message, reject: Reject, now_ms: int, topics: Topics) -> OutMessage:
    """A message of which nothing decoded, kept whole for the dead-letter topic."""
    headers = {
        "reason": reject.reason.value,
        "detail": reject.detail,
        "source": f"{m.topic}/{m.partition}/{m.offset}",
        "received_at_ms": str(now_ms),
        "content-type": m.headers.get("content-type", ""),
    }
    key = m.key.decode("utf-8", "replace") if m.key else None
    return OutMessage(topics.dead_letters, m.value, key, headers)


def _dl_headers(row: Mapping[str, Any]) -> dict[str, str]:
    received = row["received_at"]
    return {
        "reason": str(row["reason"]),
        "detail": str(row["detail"]),
        "source": str(row["source"]),
        "machine_id": str(row["machine_id"]),
        "sensor_id": str(row["sensor_id"]),
        "seq": "" if row["seq"] is None else str(row["seq"]),
        "received_at_ms": str(int(received.timestamp() * 1000)),
        "content-type": "application/json",
    }
