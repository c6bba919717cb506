"""Fixtures for integration tests that need a real Alertmanager (started once per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alertmanager_support import RunningAlertmanager, running_alertmanager
from object_store_support import ObjectStore, StoreTarget, running_gcs_emulator, running_moto


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAlertmanager]:
    """One real Prometheus Alertmanager routing every alert to a capturing webhook; tests
    isolate themselves with unique label values. Fails (never skips) if it is not installed."""
    with running_alertmanager(tmp_path_factory.mktemp("alertmanager")) as am:
        yield am


# -- OpenSearch (issue 8: the Elasticsearch export path) ------------------------------------

from plantwatch.services.errors import ServiceError  # noqa: E402
from plantwatch.services.opensearch import OpenSearchNode  # noqa: E402

from opensearch_support import HOW_TO, running_opensearch  # noqa: E402


@pytest.fixture(scope="session")
def opensearch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSearchNode]:
    """One real OpenSearch 2.19 node (Elasticsearch APIs) for the session; tests isolate
    themselves with unique index names. Fails (never skips) when Java, Maven or the jars are
    missing, with the command that installs or starts them."""
    context = running_opensearch(tmp_path_factory.mktemp("opensearch"))
    try:
        node = context.__enter__()
    except ServiceError as exc:
        pytest.fail(f"{HOW_TO}\n{exc}", pytrace=False)
    try:
        yield node
    finally:
        context.__exit__(None, None, None)


# -- object stores for the archive (gcp-storage-emulator and moto_server, once per session) ----


@pytest.fixture(scope="session")
def gcs_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """A real GCS JSON-API server (gcp-storage-emulator, in memory). Fails if not installed."""
    with running_gcs_emulator(tmp_path_factory.mktemp("gcs")) as store:
        yield store


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """A real S3 API server (moto_server). Fails if not installed."""
    with running_moto(tmp_path_factory.mktemp("s3")) as store:
        yield store


@pytest.fixture
def gcs_archive_url(gcs_store: ObjectStore) -> StoreTarget:
    """``gs://<fresh bucket>/archive`` and the storage options that reach the emulator."""
    return StoreTarget(
        f"gs://{gcs_store.new_bucket()}/archive", gcs_store.storage_options, gcs_store
    )


@pytest.fixture
def s3_archive_url(s3_store: ObjectStore) -> StoreTarget:
    """``s3://<fresh bucket>/archive`` and the storage options (test keys, us-east-1)."""
    return StoreTarget(f"s3://{s3_store.new_bucket()}/archive", s3_store.storage_options, s3_store)
