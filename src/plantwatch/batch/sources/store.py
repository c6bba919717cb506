"""Export source over a ClickHouse store: ``chdb://DIR`` (embedded) or ``http(s)://host:port``.

A dataset is read from its table with ``FINAL`` (one row per key) in the dataset's columns.
Incremental runs follow the time the row was *stored* (the cursor column: ``ingested_at`` for
readings, ``computed_at`` for features, …), not its event time, so late readings stored after a
run are exported by the next one. A run reads the rows stored after the cursor and up to the
newest one present when it starts; on a ClickHouse server, rows stored in the last
``settle_s`` seconds wait for the next run, because an insert in flight may carry an earlier
stamp than rows already visible. chDB has a single writer (the folder is locked), so nothing
settles there.

Chunks follow the cursor: a run counts rows per cursor value and cuts the range into slices of
about ``max_rows`` (a single stored batch is never split), so one chunk is one query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from plantwatch.batch import layout
from plantwatch.batch.sources.base import Chunk
from plantwatch.store.client import ClickHouseStore, open_store

#: the column that says when a row was stored, per dataset
CURSOR: dict[str, str] = {
    "readings": "ingested_at",
    "features": "computed_at",
    "anomalies": "detected_at",
    "alert_events": "emitted_at",
    "alarm_events": "created_at",
    "dead_letters": "received_at",
}


def store_url(url: str) -> str:
    """``chdb://DIR`` where DIR may be a plantwatch data folder (holding ``clickhouse/``)."""
    if url.startswith("chdb://"):
        folder = Path(url.removeprefix("chdb://")).expanduser().resolve()
        if (folder / "clickhouse").is_dir():
            folder = folder / "clickhouse"
        return f"chdb://{folder}"
    return url


def _ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def _at(ms: int) -> str:
    return f"fromUnixTimestamp64Milli(toInt64({ms}), 'UTC')"


class StoreSource:
    """One dataset of a ClickHouse store."""

    range_bound = True

    def __init__(
        self,
        url: str,
        dataset: str,
        *,
        database: str = "plantwatch",
        user: str = "default",
        password: str = "",
        settle_s: float | None = None,
    ) -> None:
        if dataset == "logs":
            raise layout.LayoutError("logs are exported from logs:// or elasticsearch://")
        layout.schema(dataset)
        self.url = store_url(url)
        self.dataset = dataset
        self.database = database
        self._credentials = (user, password)
        self.settle_s = settle_s if settle_s is not None else (0.0 if self.embedded else 60.0)
        self._store: ClickHouseStore | None = None

    @property
    def embedded(self) -> bool:
        return self.url.startswith("chdb://")

    def describe(self) -> str:
        return f"{self.url} {self.database}.{self.dataset}"

    def open(self, store: ClickHouseStore | None = None) -> ClickHouseStore:
        if store is not None:
            self._store = store
        if self._store is None:
            user, password = self._credentials
            self._store = open_store(self.url, database=self.database, user=user, password=password)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _where(self, since: dt.datetime | None, until: dt.datetime | None) -> list[str]:
        time_col = layout.TIME_COLUMN[self.dataset]
        where = []
        if since is not None:
            where.append(f"{time_col} >= {_at(_ms(since))}")
        if until is not None:
            where.append(f"{time_col} < {_at(_ms(until))}")
        return where

    def chunks(
        self,
        state: dict[str, Any] | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        max_rows: int,
    ) -> Iterator[Chunk]:
        store = self.open()
        cursor_col = CURSOR[self.dataset]
        after = int((state or {}).get("cursor_ms", -1))
        table = f"{store.database}.{self.dataset}"
        where = [f"toUnixTimestamp64Milli({cursor_col}) > {after}", *self._where(since, until)]
        if self.settle_s > 0:
            settled = _ms(dt.datetime.now(dt.UTC)) - int(self.settle_s * 1000)
            where.append(f"toUnixTimestamp64Milli({cursor_col}) <= {settled}")
        counts = store.query_rows(
            f"SELECT toUnixTimestamp64Milli({cursor_col}) AS c, count() FROM {table} FINAL "
            f"WHERE {' AND '.join(where)} GROUP BY c ORDER BY c"
        )
        columns = ", ".join(f"`{name}`" for name in layout.schema(self.dataset).names)
        schema = layout.schema(self.dataset)
        for lo, hi in _slices([(int(c), int(n)) for c, n in counts], after, max_rows):
            sliced = [
                f"toUnixTimestamp64Milli({cursor_col}) > {lo}",
                f"toUnixTimestamp64Milli({cursor_col}) <= {hi}",
                *self._where(since, until),
            ]
            rows = store.query_arrow(
                f"SELECT {columns} FROM {table} FINAL WHERE {' AND '.join(sliced)} "
                f"ORDER BY {cursor_col}, {layout.TIME_COLUMN[self.dataset]}"
            )
            yield Chunk(layout.conform(rows, self.dataset), [], {"cursor_ms": hi})
        if not counts:
            yield Chunk(schema.empty_table(), [], {"cursor_ms": after})


def _slices(counts: list[tuple[int, int]], after: int, max_rows: int) -> Iterator[tuple[int, int]]:
    """``(lo, hi]`` cursor ranges of about ``max_rows`` rows each; one value is never split."""
    lo, rows = after, 0
    for i, (cursor, n) in enumerate(counts):
        rows += n
        if rows >= max_rows or i == len(counts) - 1:
            yield lo, cursor
            lo, rows = cursor, 0
