"""``plantwatch flink``: finding the newest checkpoint and the job's command line (no PyFlink)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from plantwatch.core.errors import ConfigError
from plantwatch.core.settings import FlinkSettings, Settings
from plantwatch.stream.flink import cli as flink_cli
from plantwatch.stream.flink.runtime import FlinkEnv

BUS = "kafka://h:9092"


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    flink_cli.add_parser(sub)
    return p.parse_args(["flink", *argv])


def run_args(*extra: str) -> argparse.Namespace:
    return parse("run", "--local", "--bus", BUS, *extra)


def fake_env(tmp_path: Path) -> FlinkEnv:
    return FlinkEnv(
        python=tmp_path / "venv" / "bin" / "python",
        flink=tmp_path / "venv" / "bin" / "flink",
        jars=(tmp_path / "jars" / "a.jar", tmp_path / "jars" / "b.jar"),
        source=tmp_path / "src",
    )


def option(out: list[str], name: str) -> str:
    """The value after ``name`` (which appears exactly once)."""
    assert out.count(name) == 1, out
    return out[out.index(name) + 1]


def checkpoint(folder: Path, relative: str, mtime: float | None) -> Path:
    """A checkpoint folder; complete (with ``_metadata`` of that mtime) unless mtime is None."""
    path = folder / relative
    path.mkdir(parents=True)
    if mtime is not None:
        meta = path / "_metadata"
        meta.write_bytes(b"meta")
        os.utime(meta, (mtime, mtime))
    return path


# -- latest_checkpoint ---------------------------------------------------------------------------


def test_latest_checkpoint_is_the_newest_metadata_across_jobs_and_savepoints(
    tmp_path: Path,
) -> None:
    checkpoint(tmp_path, "job-a/chk-3", 1_000_000)
    newest = checkpoint(tmp_path, "job-b/chk-1", 3_000_000)
    checkpoint(tmp_path, "savepoints/savepoint-abc-123", 2_000_000)
    assert flink_cli.latest_checkpoint(tmp_path) == newest


def test_latest_checkpoint_can_be_a_savepoint(tmp_path: Path) -> None:
    checkpoint(tmp_path, "job-a/chk-9", 1_000_000)
    savepoint = checkpoint(tmp_path, "savepoints/savepoint-abc-123", 2_000_000)
    assert flink_cli.latest_checkpoint(tmp_path) == savepoint


def test_latest_checkpoint_ignores_an_incomplete_checkpoint(tmp_path: Path) -> None:
    complete = checkpoint(tmp_path, "job-a/chk-4", 1_000_000)
    incomplete = checkpoint(tmp_path, "job-a/chk-5", None)
    (incomplete / "some-state").write_bytes(b"x")  # newer, but without its _metadata
    assert flink_cli.latest_checkpoint(tmp_path) == complete


def test_latest_checkpoint_without_any_complete_one_names_the_folder(tmp_path: Path) -> None:
    checkpoint(tmp_path, "job-a/chk-1", None)
    with pytest.raises(ConfigError, match="no complete checkpoint") as err:
        flink_cli.latest_checkpoint(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_latest_checkpoint_of_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    with pytest.raises(ConfigError) as err:
        flink_cli.latest_checkpoint(missing)
    assert str(missing) in str(err.value)


# -- job_arguments: refusals ---------------------------------------------------------------------


def test_bounded_with_from_checkpoint_is_refused(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path, "job/chk-1", 1_000_000)
    args = run_args("--bounded", "--from-checkpoint", str(ckpt))
    with pytest.raises(ConfigError) as err:
        flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))
    assert "--bounded" in str(err.value)
    assert "--from-checkpoint" in str(err.value)


def test_negative_checkpoint_interval_is_refused(tmp_path: Path) -> None:
    args = run_args("--checkpoint-interval=-1")
    with pytest.raises(ConfigError, match="--checkpoint-interval"):
        flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))


def test_from_a_missing_checkpoint_path_is_refused(tmp_path: Path) -> None:
    args = run_args("--from-checkpoint", "/no/such/path")
    with pytest.raises(ConfigError, match="/no/such/path"):
        flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))


def test_from_latest_without_checkpoints_is_refused(tmp_path: Path) -> None:
    args = run_args("--from-checkpoint", "latest", "--checkpoint-dir", str(tmp_path / "ck"))
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))


def test_run_requires_local() -> None:
    with pytest.raises(SystemExit):
        parse("run", "--bus", BUS)


def test_submit_requires_a_jobmanager() -> None:
    with pytest.raises(SystemExit):
        parse("submit", "--bus", BUS)


# -- job_arguments: the command line -------------------------------------------------------------


def test_from_latest_restores_the_newest_checkpoint_of_the_checkpoint_dir(tmp_path: Path) -> None:
    ckdir = tmp_path / "ck"
    checkpoint(ckdir, "job/chk-1", 1_000_000)
    newest = checkpoint(ckdir, "job/chk-2", 2_000_000)
    args = run_args("--from-checkpoint", "latest", "--checkpoint-dir", str(ckdir))
    out = flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))
    assert option(out, "--restore") == str(newest.resolve())
    assert option(out, "--checkpoint-dir") == str(ckdir.resolve())


def test_an_existing_checkpoint_path_is_restored_as_given(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path, "job/chk-7", 1_000_000)
    out = flink_cli.job_arguments(
        run_args("--from-checkpoint", str(ckpt)), Settings(data_dir=tmp_path), fake_env(tmp_path)
    )
    assert option(out, "--restore") == str(ckpt)


def test_a_remote_checkpoint_url_is_passed_without_a_local_check(tmp_path: Path) -> None:
    url = "s3://bucket/ck/job/chk-3"
    out = flink_cli.job_arguments(
        run_args("--from-checkpoint", url), Settings(data_dir=tmp_path), fake_env(tmp_path)
    )
    assert option(out, "--restore") == url


def test_defaults(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(
        data_dir=data,
        topic_prefix="abc",
        flink=FlinkSettings(checkpoint_interval_s=7.5, restart_attempts=5, restart_delay_s=1.5),
    )
    out = flink_cli.job_arguments(run_args(), settings, fake_env(tmp_path))
    assert option(out, "--bootstrap") == "h:9092"
    assert option(out, "--checkpoint-dir") == str((data / "flink" / "checkpoints").resolve())
    assert Path(option(out, "--checkpoint-dir")).is_absolute()
    assert float(option(out, "--checkpoint-interval-s")) == 7.5
    assert option(out, "--transactional-id-prefix") == "abc-flink"
    assert option(out, "--restart-attempts") == "5"
    assert float(option(out, "--restart-delay-s")) == 1.5
    assert option(out, "--group") == "plantwatch-flink"
    assert option(out, "--name") == "plantwatch-stream"
    for absent in ("--restore", "--bounded", "--parallelism", "--kafka-property"):
        assert absent not in out


def test_a_relative_data_dir_gives_an_absolute_checkpoint_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = flink_cli.job_arguments(run_args(), Settings(data_dir=Path("rel")), fake_env(tmp_path))
    assert option(out, "--checkpoint-dir") == str(tmp_path.resolve() / "rel/flink/checkpoints")


def test_bootstrap_of_several_brokers(tmp_path: Path) -> None:
    args = parse("run", "--local", "--bus", "kafka://a:9092,b:9093")
    out = flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))
    assert option(out, "--bootstrap") == "a:9092,b:9093"


def test_checkpoint_interval_zero_is_passed_through(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, flink=FlinkSettings(checkpoint_interval_s=30))
    out = flink_cli.job_arguments(
        run_args("--checkpoint-interval", "0"), settings, fake_env(tmp_path)
    )
    assert float(option(out, "--checkpoint-interval-s")) == 0.0


def test_given_options_override_the_defaults(tmp_path: Path) -> None:
    args = run_args(
        "--parallelism",
        "4",
        "--bounded",
        "--checkpoint-interval",
        "2.5",
        "--group",
        "g1",
        "--name",
        "job1",
        "--transactional-id-prefix",
        "tx1",
    )
    out = flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))
    assert option(out, "--parallelism") == "4"
    assert "--bounded" in out
    assert float(option(out, "--checkpoint-interval-s")) == 2.5
    assert option(out, "--group") == "g1"
    assert option(out, "--name") == "job1"
    assert option(out, "--transactional-id-prefix") == "tx1"


def test_kafka_properties_are_repeated_items(tmp_path: Path) -> None:
    args = run_args(
        "--kafka-property",
        "security.protocol=SASL_SSL",
        "--kafka-property",
        "sasl.jaas.config=a b=c;",
    )
    out = flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))
    props = [out[i + 1] for i, a in enumerate(out) if a == "--kafka-property"]
    assert props == ["security.protocol=SASL_SSL", "sasl.jaas.config=a b=c;"]


def test_run_uses_the_flink_env_python_and_ships_nothing(tmp_path: Path) -> None:
    env = fake_env(tmp_path)
    out = flink_cli.job_arguments(run_args(), Settings(data_dir=tmp_path), env)
    assert option(out, "--python") == str(env.python)
    assert "--ship-package" not in out


def test_submit_uses_the_cluster_python_and_ships_the_package(tmp_path: Path) -> None:
    args = parse("submit", "--jobmanager", "h:8081", "--bus", BUS, "--cluster-python", "/opt/py")
    out = flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))
    assert option(out, "--python") == "/opt/py"
    assert "--ship-package" in out


def test_submit_default_cluster_python(tmp_path: Path) -> None:
    args = parse("submit", "--jobmanager", "h:8081", "--bus", BUS)
    out = flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))
    assert option(out, "--python") == "python3"


def test_the_env_jars_follow_jars(tmp_path: Path) -> None:
    env = fake_env(tmp_path)
    out = flink_cli.job_arguments(run_args(), Settings(data_dir=tmp_path), env)
    at = out.index("--jars")
    assert out[at + 1 : at + 1 + len(env.jars)] == [str(j) for j in env.jars]
    after = out[at + 1 + len(env.jars) :]
    assert not after or after[0].startswith("--")


def test_a_remote_checkpoint_dir_is_passed_as_given(tmp_path: Path) -> None:
    args = parse(
        "submit", "--jobmanager", "h:8081", "--bus", BUS, "--checkpoint-dir", "s3://bucket/ck"
    )
    out = flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))
    assert option(out, "--checkpoint-dir") == "s3://bucket/ck"


def test_latest_in_a_remote_checkpoint_dir_is_refused(tmp_path: Path) -> None:
    args = parse(
        "submit",
        "--jobmanager",
        "h:8081",
        "--bus",
        BUS,
        "--checkpoint-dir",
        "s3://bucket/ck",
        "--from-checkpoint",
        "latest",
    )
    with pytest.raises(ConfigError, match="local --checkpoint-dir"):
        flink_cli.job_arguments(args, Settings(data_dir=tmp_path), fake_env(tmp_path))
