"""The machine registry on the bus: one JSON record per machine on ``<prefix>.machines``,
keyed by machine id, so workers and sinks in other processes learn each machine's type.

The simulator, the Kafka backend and replay publish records with :func:`publish_machines`;
the worker and replay read them with :func:`decode_machine`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from plantwatch.bus.base import Bus
from plantwatch.core.topics import Topics


def publish_machines(bus: Bus, topics: Topics, rows: Iterable[Mapping[str, str]]) -> None:
    """One registry record per row (``machine_id``, ``machine_type``, ``line``, ``site``,
    ``name``), keyed by the machine id (the topic is compacted: the last record wins)."""
    for row in rows:
        bus.publish(topics.machines, json.dumps(dict(row)).encode(), key=row["machine_id"].encode())


def decode_machine(value: bytes) -> dict[str, str] | None:
    """A registry record as strings; None when it is not a record with an id and a type."""
    try:
        row = {str(k): str(v) for k, v in json.loads(value).items()}
    except (ValueError, TypeError, AttributeError):
        return None
    return row if "machine_id" in row and "machine_type" in row else None
