"""The archive's schemas (a versioned contract of their own, batch/layout.py) against the store's
tables after every migration: a column added to a table fails here until layout.py follows it
and SCHEMA_VERSION moves."""

from __future__ import annotations

import pytest

from plantwatch.batch import layout
from plantwatch.store.client import ClickHouseStore

STORED = [d for d in layout.DATASETS if d != "logs"]


@pytest.mark.parametrize("dataset", STORED)
def test_every_stored_column_is_archived(store: ClickHouseStore, dataset: str) -> None:
    columns = [row[0] for row in store.query_rows(f"DESCRIBE TABLE {store.database}.{dataset}")]
    assert layout.schema(dataset).names == columns


def test_a_stored_row_converts_to_the_archive_schema(store: ClickHouseStore) -> None:
    """ClickHouse's types (LowCardinality, DateTime64, Nullable) arrive as the archive's types."""
    for dataset in STORED:
        table = store.query_arrow(f"SELECT * FROM {store.database}.{dataset} LIMIT 0")
        assert layout.conform(table, dataset).schema == layout.schema(dataset)
