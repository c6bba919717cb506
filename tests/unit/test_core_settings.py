"""Settings from the environment (``PLANTWATCH_`` prefix, nested with ``__``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from plantwatch.core.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PLANTWATCH_ variable of the machine running the tests leaks in; cwd is empty."""
    for name in list(os.environ):
        if name.upper().startswith("PLANTWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = Settings()
    assert s.data_dir == Path("data")
    assert s.store_url is None
    assert s.database == "plantwatch"
    assert s.clickhouse_user == "default"
    assert s.clickhouse_password.get_secret_value() == ""
    assert s.topic_prefix == "plantwatch"
    assert s.stream.window_s == 10.0
    assert s.spool.when_full == "block"
    assert s.bus.max_messages == 256


def test_the_store_defaults_to_embedded_chdb_under_data_dir(tmp_path: Path) -> None:
    assert Settings().resolved_store_url() == f"chdb://{tmp_path.resolve() / 'data' / 'clickhouse'}"
    s = Settings(data_dir=tmp_path / "plant")
    assert s.resolved_store_url() == f"chdb://{tmp_path.resolve() / 'plant' / 'clickhouse'}"
    assert s.resolved_store_url().startswith("chdb:///")  # an absolute path


def test_an_explicit_store_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_STORE_URL", "http://clickhouse:8123")
    assert Settings().resolved_store_url() == "http://clickhouse:8123"


def test_environment_variables_with_the_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PLANTWATCH_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("PLANTWATCH_DATABASE", "plant_b")
    monkeypatch.setenv("PLANTWATCH_TOPIC_PREFIX", "site7")
    monkeypatch.setenv("DATABASE", "not-ours")  # no prefix: ignored
    s = Settings()
    assert s.data_dir == tmp_path / "d"
    assert s.database == "plant_b"
    assert s.topic_prefix == "site7"


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_STREAM__WINDOW_S", "30")
    monkeypatch.setenv("PLANTWATCH_SPOOL__WHEN_FULL", "drop_oldest")
    monkeypatch.setenv("PLANTWATCH_SPOOL__FSYNC", "false")
    monkeypatch.setenv("PLANTWATCH_BUS__MAX_MESSAGES", "7")
    s = Settings()
    assert s.stream.window_s == 30.0
    assert s.stream.out_of_orderness_s == 5.0  # siblings keep their defaults
    assert s.spool.when_full == "drop_oldest"
    assert s.spool.fsync is False
    assert s.bus.max_messages == 7


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PLANTWATCH_STREAM__WINDOW_S", "0"),
        ("PLANTWATCH_STREAM__WINDOW_S", "soon"),
        ("PLANTWATCH_SPOOL__WHEN_FULL", "explode"),
        ("PLANTWATCH_SPOOL__MAX_BYTES", "1024"),  # below 1 MiB
        ("PLANTWATCH_BUS__MAX_MESSAGES", "0"),
        ("PLANTWATCH_BATCHING__MAX_DELAY_S", "-1"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    field = name.removeprefix("PLANTWATCH_").lower().split("__")[-1]
    assert field in str(info.value)


def test_the_password_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_CLICKHOUSE_PASSWORD", "hunter2")
    s = Settings()
    assert isinstance(s.clickhouse_password, SecretStr)
    assert s.clickhouse_password.get_secret_value() == "hunter2"
    for shown in (repr(s), str(s), s.model_dump_json(), repr(s.clickhouse_password)):
        assert "hunter2" not in shown
