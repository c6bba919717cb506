"""Shared fixtures: one chDB engine per test session, a fresh database per test.

chDB runs one engine per process on one folder, so the session opens it once and every test that
needs a store gets its own database in it (isolation by unique names, not restarts). Tests that
run the whole plant start it as a subprocess with its own data folder.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantwatch.services import KafkaCluster
from plantwatch.store import ClickHouseStore, migrate, open_store

from kafka_support import running_cluster


@pytest.fixture
def root_restored() -> Iterator[None]:
    """Code that configures logging (``plantwatch.cli.main``, ``core.logs.setup``) changes the
    root logger: put its handlers and level back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


@pytest.fixture(scope="session")
def chdb_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseStore]:
    folder: Path = tmp_path_factory.mktemp("chdb") / "clickhouse"
    store = open_store(f"chdb://{folder}")
    yield store
    store.close()


@pytest.fixture
def store(chdb_engine: ClickHouseStore) -> Iterator[ClickHouseStore]:
    """A migrated, empty database of its own in the session's chDB engine."""
    db = chdb_engine.using(f"t_{uuid.uuid4().hex[:12]}")
    migrate(db)
    yield db
    db.command(f"DROP DATABASE IF EXISTS {db.database}")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One real Kafka broker for the session (tests isolate themselves by topic prefix)."""
    with running_cluster(tmp_path_factory.mktemp("kafka")) as cluster:
        yield cluster
