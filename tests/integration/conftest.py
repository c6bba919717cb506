"""Fixtures for integration tests that need a real Alertmanager (started once per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alertmanager_support import RunningAlertmanager, running_alertmanager


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAlertmanager]:
    """One real Prometheus Alertmanager routing every alert to a capturing webhook; tests
    isolate themselves with unique label values. Fails (never skips) if it is not installed."""
    with running_alertmanager(tmp_path_factory.mktemp("alertmanager")) as am:
        yield am
