"""One store interface over ClickHouse, embedded (chDB) or a server, chosen by the URL scheme.

``chdb:///abs/path`` opens the in-process engine on a data folder; ``http(s)://host:port`` talks
to a ClickHouse server. Both go through clickhouse-connect, so queries, Arrow inserts and
errors behave the same; what differs is declared in :class:`Capabilities`, never probed.

chDB allows one process per data folder (and one folder per process): :class:`DataDirLock`
turns a second opener into a clear :class:`DataDirLockedError` error instead of a ClickHouse one.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import pyarrow as pa

from plantwatch.core.settings import Settings
from plantwatch.store.errors import DataDirLockedError, QueryError, ReadOnlyError, StoreError


@dataclass(frozen=True, slots=True)
class Capabilities:
    embedded: bool  # in-process chDB: one process per data folder, no concurrent readers
    data_path: Path | None  # the chDB folder when embedded


class Store(Protocol):
    capabilities: Capabilities
    database: str

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None: ...

    def insert(self, table: str, data: pa.Table) -> None:
        """Insert an Arrow table into ``database.table`` in one statement."""

    def query_arrow(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, read_only: bool = False
    ) -> pa.Table: ...

    def query_rows(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, read_only: bool = False
    ) -> list[tuple[Any, ...]]: ...

    def close(self) -> None: ...


class DataDirLock:
    """An exclusive ``flock`` on ``<folder>.lock``, holding the owner's pid for error messages."""

    def __init__(self, folder: Path) -> None:
        self.path = folder.with_name(folder.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLockedError(
                f"the data folder {self.path.parent} is in use by process {owner} "
                "(probably `plantwatch run`). chDB lets one process open a folder: stop that "
                "process first, or point --data-dir at another folder."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


_READ_STATEMENT = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.I)


def check_read_only(sql: str) -> None:
    """Refuse anything but one reading statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS).

    A server also gets ``readonly = 1``; chDB cannot take it per query (the setting sticks to
    its one session), so for chDB this check is the guard.
    """
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S).strip().rstrip(";")
    if not _READ_STATEMENT.match(text) or ";" in text:
        raise ReadOnlyError(
            "only one reading statement is allowed here (SELECT, WITH, SHOW, DESCRIBE, "
            f"EXPLAIN, EXISTS); got: {' '.join(sql.split())[:120]}"
        )


def _translate(exc: Exception, sql: str) -> StoreError:
    text = str(exc)
    short = " ".join(sql.split())[:300]
    if "READONLY" in text or "readonly mode" in text:
        return ReadOnlyError(f"this query would write, and it runs read-only: {short}")
    return QueryError(f"{text.strip()}\n  in: {short}")


class ClickHouseStore:
    """:class:`Store` over clickhouse-connect (``chdb://`` or ``http(s)://``)."""

    def __init__(
        self,
        url: str,
        *,
        database: str = "plantwatch",
        user: str = "default",
        password: str = "",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import Error as ClickHouseConnectError

        self.database = database
        self._owner = True  # False for views made by using()
        # one statement at a time per connection: the stream and the alert service share it
        self._io = threading.RLock()
        self._lock: DataDirLock | None = None
        parsed = urlparse(url)
        if parsed.scheme == "chdb":
            path = Path(parsed.path)
            if parsed.netloc or not path.is_absolute():
                raise StoreError(f"chdb URL needs an absolute path (chdb:///abs/path), got {url!r}")
            self._lock = DataDirLock(path)
            self._lock.acquire()
            self.capabilities = Capabilities(embedded=True, data_path=path)
            try:
                path.mkdir(parents=True, exist_ok=True)
                self._client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
            except ClickHouseConnectError as exc:
                self._lock.release()
                if "already initialized with path" in str(exc):
                    raise StoreError(
                        f"cannot open the chDB folder {path}: this process already has another "
                        "chDB folder open, and chDB runs one folder per process"
                    ) from exc
                raise StoreError(f"cannot open the chDB folder {path}: {exc}") from exc
        elif parsed.scheme in ("http", "https"):
            self.capabilities = Capabilities(embedded=False, data_path=None)
            try:
                self._client = clickhouse_connect.get_client(
                    host=parsed.hostname or "localhost",
                    port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
                    secure=parsed.scheme == "https",
                    username=user,
                    password=password,
                    settings=dict(settings or {}),
                )
            except ClickHouseConnectError as exc:
                raise StoreError(f"cannot reach ClickHouse at {url}: {exc}") from exc
        else:
            raise StoreError(
                f"unsupported store URL {url!r}: use chdb:///abs/path or http(s)://host:port"
            )
        self._errors: tuple[type[Exception], ...] = (ClickHouseConnectError,)

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        try:
            with self._io:
                self._client.command(sql, parameters=dict(parameters) if parameters else None)
        except self._errors as exc:
            raise _translate(exc, sql) from exc

    def insert(self, table: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        try:
            with self._io:
                self._client.insert_arrow(table, data, database=self.database)
        except self._errors as exc:
            raise _translate(exc, f"INSERT INTO {self.database}.{table}") from exc

    def _run(
        self, method: str, sql: str, parameters: Mapping[str, Any] | None, read_only: bool
    ) -> Any:
        """One query through clickhouse-connect, its errors translated here and nowhere else."""
        settings = self._read_only(sql) if read_only else None
        try:
            with self._io:
                return getattr(self._client, method)(
                    sql, parameters=dict(parameters) if parameters else None, settings=settings
                )
        except self._errors as exc:
            raise _translate(exc, sql) from exc

    def query_arrow(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, read_only: bool = False
    ) -> pa.Table:
        return self._run("query_arrow", sql, parameters, read_only)

    def query_rows(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, read_only: bool = False
    ) -> list[tuple[Any, ...]]:
        result = self._run("query", sql, parameters, read_only)
        return [tuple(r) for r in result.result_rows]

    def query_named(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, read_only: bool = False
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows with Python values typed from the ClickHouse types (DateTime
        becomes a datetime, not the epoch integer the Arrow path gives for it)."""
        result = self._run("query", sql, parameters, read_only)
        return list(result.column_names), [tuple(r) for r in result.result_rows]

    def _read_only(self, sql: str) -> dict[str, int] | None:
        check_read_only(sql)
        return None if self.capabilities.embedded else {"readonly": 1}

    def using(self, database: str) -> ClickHouseStore:
        """The same connection working in another database (closing it closes nothing)."""
        view = object.__new__(ClickHouseStore)
        view.__dict__.update(self.__dict__)
        view.database = database
        view._lock = None
        view._owner = False
        return view

    def close(self) -> None:
        if not self._owner:
            return
        try:
            self._client.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> ClickHouseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(
    url: str, *, database: str = "plantwatch", user: str = "default", password: str = ""
) -> ClickHouseStore:
    """Open the store at ``url`` (see module docs)."""
    return ClickHouseStore(url, database=database, user=user, password=password)


def open_configured(settings: Settings) -> ClickHouseStore:
    """The store the settings name (URL, database, credentials)."""
    return open_store(
        settings.resolved_store_url(),
        database=settings.database,
        user=settings.clickhouse_user,
        password=settings.clickhouse_password.get_secret_value(),
    )
