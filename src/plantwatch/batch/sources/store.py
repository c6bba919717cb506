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
about ``max_rows``, so one chunk is one query. One cursor value with more rows than that (a
simulated plant at ``--speed max`` stamps a whole run alike) is read in parts by a hash of
(machine, sensor, time), and the state says how many parts are done.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

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
        cursor = f"toUnixTimestamp64Milli({CURSOR[self.dataset]})"
        state = state or {}
        after = int(state.get("cursor_ms", -1))
        split: dict[str, int] | None = state.get("split")
        table = f"{store.database}.{self.dataset}"
        where = [f"{cursor} > {after}", *self._where(since, until)]
        if self.settle_s > 0:
            settled = _ms(dt.datetime.now(dt.UTC)) - int(self.settle_s * 1000)
            where.append(f"{cursor} <= {settled}")
        counts = [
            (int(c), int(n))
            for c, n in store.query_rows(
                f"SELECT {cursor} AS c, count() FROM {table} FINAL "
                f"WHERE {' AND '.join(where)} GROUP BY c ORDER BY c"
            )
        ]
        columns = ", ".join(f"`{name}`" for name in layout.schema(self.dataset).names)
        time_col = layout.TIME_COLUMN[self.dataset]
        bucket = f"cityHash64(machine_id, sensor_id, {time_col})"

        def read(condition: list[str]) -> pa.Table:
            rows = store.query_arrow(
                f"SELECT {columns} FROM {table} FINAL "
                f"WHERE {' AND '.join([*condition, *self._where(since, until)])} "
                f"ORDER BY {cursor}, {time_col}"
            )
            return layout.conform(rows, self.dataset)

        if split is not None:  # the last run stopped inside one cursor value: finish it first
            at, parts = split["at"], split["buckets"]
            counts = [(c, n) for c, n in counts if c != at]
            for b in range(split["done"] + 1, parts):
                rows = read([f"{cursor} = {at}", f"{bucket} % {parts} = {b}"])
                done = {"cursor_ms": after, "split": {"at": at, "buckets": parts, "done": b}}
                yield Chunk(rows, [], done if b < parts - 1 else {"cursor_ms": at})
            after = at
        yielded = False
        for lo, hi, parts in _slices(counts, after, max_rows):
            yielded = True
            if parts == 1:
                yield Chunk(read([f"{cursor} > {lo}", f"{cursor} <= {hi}"]), [], {"cursor_ms": hi})
                continue
            # one stored batch of more than max_rows rows: split it by a hash of the row
            for b in range(parts):
                rows = read([f"{cursor} = {hi}", f"{bucket} % {parts} = {b}"])
                done = {"cursor_ms": lo, "split": {"at": hi, "buckets": parts, "done": b}}
                yield Chunk(rows, [], done if b < parts - 1 else {"cursor_ms": hi})
        if not yielded:
            yield Chunk(layout.schema(self.dataset).empty_table(), [], {"cursor_ms": after})


def _slices(
    counts: list[tuple[int, int]], after: int, max_rows: int
) -> Iterator[tuple[int, int, int]]:
    """``(lo, hi, parts)``: the cursor range ``(lo, hi]`` of about ``max_rows`` rows in one part,
    or (``lo`` = the value before) one value of more than ``max_rows`` rows in ``parts`` parts."""
    lo, rows = after, 0
    for i, (cursor, n) in enumerate(counts):
        if n > max_rows:
            if rows:  # what gathered before this value
                yield lo, counts[i - 1][0], 1
                lo, rows = counts[i - 1][0], 0
            yield lo, cursor, -(-n // max_rows)
            lo = cursor
            continue
        rows += n
        if rows >= max_rows or i == len(counts) - 1:
            yield lo, cursor, 1
            lo, rows = cursor, 0
