"""The machine registry's records on the bus: what publishers write, readers read back."""

from __future__ import annotations

import json

from plantwatch.bus.memory import MemoryBus
from plantwatch.core.topics import Topics
from plantwatch.stream.directory import decode_machine, publish_machines


def test_published_records_decode_to_the_rows_keyed_by_machine() -> None:
    bus, topics = MemoryBus(), Topics("t")
    consumer = bus.subscribe(topics.machines, "g")
    rows = [
        {"machine_id": "m-1", "machine_type": "pump", "line": "L1", "site": "s", "name": "P 1"},
        {"machine_id": "m/2", "machine_type": "fan", "line": "", "site": "", "name": "m/2"},
    ]
    publish_machines(bus, topics, rows)
    got = consumer.poll(10, 1.0)
    assert [m.key for m in got] == [b"m-1", b"m/2"]
    assert [decode_machine(m.value) for m in got] == rows


def test_records_without_an_id_or_a_type_or_not_json_are_refused() -> None:
    assert decode_machine(b"not json") is None
    assert decode_machine(b"[1, 2]") is None
    assert decode_machine(json.dumps({"machine_id": "m"}).encode()) is None
    assert decode_machine(json.dumps({"machine_type": "pump"}).encode()) is None
    assert decode_machine(json.dumps({"machine_id": 7, "machine_type": "pump"}).encode()) == {
        "machine_id": "7",
        "machine_type": "pump",
    }
