"""Store: ClickHouse schema, migrations, one client over chDB and a server, the batch writer."""

from plantwatch.store.client import (
    Capabilities,
    ClickHouseStore,
    DataDirLock,
    Store,
    open_configured,
    open_store,
)
from plantwatch.store.errors import (
    DataDirLockedError,
    MigrationError,
    QueryError,
    ReadOnlyError,
    StoreError,
)
from plantwatch.store.migrations import migrate

__all__ = [
    "Capabilities",
    "ClickHouseStore",
    "DataDirLock",
    "DataDirLockedError",
    "MigrationError",
    "QueryError",
    "ReadOnlyError",
    "Store",
    "StoreError",
    "migrate",
    "open_configured",
    "open_store",
]
