"""Silences: mute notifications for alerts whose labels match, during a time range.

As in Alertmanager, a silence never stops evaluation: alerts still fire, are stored and become
alarms; they are only not sent. When a silence ends, alerts still firing are notified.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import pyarrow as pa

from plantwatch.alert.notify.config import Matcher, matches_all
from plantwatch.core.reading import TS_TYPE
from plantwatch.store.client import Store

SILENCES_SCHEMA = pa.schema(
    [
        ("silence_id", pa.string()),
        ("matchers", pa.string()),
        ("starts_at", TS_TYPE),
        ("ends_at", TS_TYPE),
        ("created_by", pa.string()),
        ("comment", pa.string()),
        ("updated_at", TS_TYPE),
    ]
)


@dataclass(frozen=True, slots=True)
class Silence:
    silence_id: str
    matchers: tuple[Matcher, ...]
    starts_ms: int
    ends_ms: int
    created_by: str = ""
    comment: str = ""

    def active(self, now_ms: int) -> bool:
        return self.starts_ms <= now_ms < self.ends_ms

    def state(self, now_ms: int) -> str:
        if now_ms < self.starts_ms:
            return "pending"
        return "active" if now_ms < self.ends_ms else "expired"

    def as_dict(self, now_ms: int) -> dict[str, object]:
        return {
            "silence_id": self.silence_id,
            "matchers": [str(m) for m in self.matchers],
            "starts_ms": self.starts_ms,
            "ends_ms": self.ends_ms,
            "state": self.state(now_ms),
            "created_by": self.created_by,
            "comment": self.comment,
        }


def new_silence(
    matchers: Iterable[str | Matcher],
    *,
    starts_ms: int,
    ends_ms: int,
    created_by: str,
    comment: str = "",
) -> Silence:
    ms = tuple(m if isinstance(m, Matcher) else Matcher.parse(m) for m in matchers)
    if not ms:
        raise ValueError("a silence needs at least one matcher (it would mute everything)")
    if ends_ms <= starts_ms:
        raise ValueError("a silence must end after it starts")
    if not created_by.strip():
        raise ValueError("say who creates the silence: --user NAME")
    return Silence("S" + secrets.token_hex(5), ms, starts_ms, ends_ms, created_by, comment)


def silences_table(items: Iterable[Silence], now_ms: int) -> pa.Table:
    xs = list(items)
    return pa.table(
        {
            "silence_id": [s.silence_id for s in xs],
            "matchers": [json.dumps([str(m) for m in s.matchers]) for s in xs],
            "starts_at": pa.array([s.starts_ms for s in xs], pa.int64()).cast(TS_TYPE),
            "ends_at": pa.array([s.ends_ms for s in xs], pa.int64()).cast(TS_TYPE),
            "created_by": [s.created_by for s in xs],
            "comment": [s.comment for s in xs],
            "updated_at": pa.array([now_ms] * len(xs), pa.int64()).cast(TS_TYPE),
        },
        schema=SILENCES_SCHEMA,
    )


class Silences:
    def __init__(self, items: Iterable[Silence] = ()) -> None:
        self._items = {s.silence_id: s for s in items}

    def add(self, s: Silence) -> None:
        self._items[s.silence_id] = s

    def expire(self, silence_id: str, now_ms: int) -> Silence:
        s = self._items.get(silence_id)
        if s is None:
            raise KeyError(f"no silence {silence_id!r}: `plantwatch silences list` shows them")
        if s.ends_ms > now_ms:
            s = replace(s, ends_ms=now_ms, starts_ms=min(s.starts_ms, now_ms))
            self._items[silence_id] = s
        return s

    def muting(self, labels: Mapping[str, str], now_ms: int) -> Silence | None:
        """The first active silence that matches ``labels``."""
        for s in self._items.values():
            if s.active(now_ms) and matches_all(s.matchers, labels):
                return s
        return None

    def all(self) -> list[Silence]:
        return sorted(self._items.values(), key=lambda s: s.starts_ms)


def load_silences(store: Store) -> list[Silence]:
    """Every silence that has not ended, from the store."""
    db = store.database
    rows = store.query_rows(
        f"SELECT silence_id, matchers, toUnixTimestamp64Milli(starts_at), "
        f"toUnixTimestamp64Milli(ends_at), created_by, comment FROM {db}.silences FINAL"
    )
    return [
        Silence(
            str(i), tuple(Matcher.parse(m) for m in json.loads(ms)), int(a), int(b), str(u), str(c)
        )
        for i, ms, a, b, u, c in rows
    ]
