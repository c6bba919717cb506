"""The gateway path: records relayed as received, numbered where they lack a seq."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np

from plantwatch.core.codec import encode_records

SensorKey = tuple[str, str]
_MAX_SEQ = 2**63


def number_records(
    records: list[dict[str, Any]], seqs: dict[SensorKey, int]
) -> tuple[dict[SensorKey, int], dict[SensorKey, int]]:
    """Give records without ``seq`` the next seq of their sensor; keep given seqs.

    Updates ``seqs`` (never lowering a counter) and returns ``(counters before, highest seq in
    the records)`` per sensor. Records whose machine_id or sensor_id is not a string, or whose
    seq is not a non-negative integer, are left as they are: the stream dead-letters them.
    """
    before: dict[SensorKey, int] = {}
    top: dict[SensorKey, int] = {}
    for rec in records:
        m, s, given = rec.get("machine_id"), rec.get("sensor_id"), rec.get("seq")
        if not (isinstance(m, str) and isinstance(s, str)):
            continue
        key = (m, s)
        current = seqs.get(key, 0)
        before.setdefault(key, current)
        if given is None:
            rec["seq"] = seq = current + 1
        elif isinstance(given, int) and not isinstance(given, bool) and 0 <= given < _MAX_SEQ:
            seq = given
        else:
            continue
        seqs[key] = max(current, seq)
        top[key] = max(top.get(key, 0), seq)
    return before, top


def encode_unchecked(records: list[dict[str, Any]]) -> bytes:
    """JSON lines of records as received; values JSON cannot hold become their JSON-able form."""
    try:
        return encode_records(records)
    except (TypeError, ValueError):
        return encode_records([{k: _plain(v) for k, v in r.items()} for r in records])


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | datetime):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return json.loads(json.dumps(value, default=str))
