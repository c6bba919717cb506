"""Versioned schema migrations: ``schema/NNNN_name.sql`` files applied once, in order.

Applied versions are recorded in ``schema_migrations``. Statements use ``IF NOT EXISTS`` so a
migration interrupted half-way can simply run again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

import pyarrow as pa

from plantwatch.store.client import Store
from plantwatch.store.errors import MigrationError, StoreError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, database: str) -> list[str]:
        text = "\n".join(
            line for line in self.sql.splitlines() if not line.strip().startswith("--")
        )
        return [s.strip().replace("{db}", database) for s in text.split(";") if s.strip()]


def available() -> list[Migration]:
    folder = resources.files("plantwatch.store") / "schema"
    found = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def migrate(store: Store) -> list[Migration]:
    """Apply pending migrations; returns the ones applied now."""
    db = store.database
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", db):
        raise MigrationError(f"database name {db!r} must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    store.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    store.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC')) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {int(r[0]) for r in store.query_rows(f"SELECT version FROM {db}.schema_migrations")}
    applied = []
    for mig in available():
        if mig.version in done:
            continue
        for stmt in mig.statements(db):
            try:
                store.command(stmt)
            except StoreError as exc:
                raise MigrationError(
                    f"migration {mig.version:04d}_{mig.name}.sql failed: {exc}"
                ) from exc
        store.insert(
            "schema_migrations",
            pa.table(
                {
                    "version": pa.array([mig.version], pa.uint32()),
                    "name": [mig.name],
                    "applied_at": pa.array([datetime.now(UTC)], pa.timestamp("ms", tz="UTC")),
                }
            ),
        )
        applied.append(mig)
    return applied
