"""The Kafka transport splits a spool entry per machine (key = machine_id) and acknowledges the
entry only when every part is confirmed. Run on the real in-process bus."""

from __future__ import annotations

import json
import threading

import pyarrow as pa

from plantwatch.bus import MemoryBus
from plantwatch.core import codec
from plantwatch.edge.spool import SpoolEntry
from plantwatch.edge.transport import KafkaTransport, split_by_machine

from batches import readings


def entry(content_type: str, payload: bytes, count: int) -> SpoolEntry:
    return SpoolEntry(
        entry_id=7, content_type=content_type, count=count, max_seq={}, payload=payload
    )


def test_arrow_entries_split_per_machine_in_order() -> None:
    t = readings(
        machine=["a", "b", "a", "c", "b"], values=[1.0, 2.0, 3.0, 4.0, 5.0], seq=[1, 1, 2, 1, 2]
    )
    parts = split_by_machine(codec.ARROW, codec.encode_arrow(t))
    got = {m: codec.decode_arrow(p).column("value").to_pylist() for m, p, _ in parts}
    assert got == {"a": [1.0, 3.0], "b": [2.0, 5.0], "c": [4.0]}
    assert {m: n for m, _, n in parts} == {"a": 2, "b": 2, "c": 1}


def test_json_lines_split_per_machine_and_unreadable_lines_keep_no_key() -> None:
    lines = [json.dumps({"machine_id": "a", "seq": 1}), "{broken", json.dumps({"machine_id": "b"})]
    parts = split_by_machine(codec.NDJSON, ("\n".join(lines) + "\n").encode())
    assert sorted(m for m, _, _ in parts) == ["", "a", "b"]
    assert {m: n for m, _, n in parts} == {"a": 1, "": 1, "b": 1}


def test_undecodable_entries_go_whole() -> None:
    assert split_by_machine(codec.ARROW, b"garbage") == [("", b"garbage", 1)]


def test_the_entry_is_acknowledged_once_every_part_is() -> None:
    bus = MemoryBus()
    consumer = bus.subscribe("raw", "g")
    acked = threading.Event()
    t = readings(machine=["a", "b", "c"], values=[1.0, 2.0, 3.0])
    KafkaTransport(bus, "raw").send(entry(codec.ARROW, codec.encode_arrow(t), 3), acked.set)
    msgs = consumer.poll(10, 1.0)
    assert sorted(m.key for m in msgs) == [b"a", b"b", b"c"]
    assert all(m.headers["spool-entry"] == "7" and m.headers["count"] == "1" for m in msgs)
    consumer.commit(msgs[:2])
    assert not acked.is_set()  # one part still out
    consumer.commit(msgs[2:])
    assert acked.is_set()
    rows = pa.concat_tables([codec.decode_arrow(m.value) for m in msgs])
    assert sorted(rows.column("value").to_pylist()) == [1.0, 2.0, 3.0]
