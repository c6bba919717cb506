"""Store errors; clickhouse-connect errors are translated in ``client.py`` and nowhere else."""

from __future__ import annotations

from plantwatch.core.errors import PlantwatchError


class StoreError(PlantwatchError):
    """Root of store errors."""


class DataDirLockedError(StoreError):
    """Another process has the chDB data folder open (chDB allows one process per folder)."""


class MigrationError(StoreError):
    """A schema migration failed; the message names the file and the statement."""


class QueryError(StoreError):
    """ClickHouse refused or failed a query; the message carries its error text."""


class ReadOnlyError(QueryError):
    """A write was attempted through a read-only query."""
