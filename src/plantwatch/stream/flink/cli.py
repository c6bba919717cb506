"""``plantwatch flink``: the stream stage as a Flink job (wired in ``cli.py``).

    plantwatch flink run --local --bus kafka://HOST:PORT [--parallelism N] [--bounded]
                         [--checkpoint-interval S] [--checkpoint-dir DIR]
                         [--from-checkpoint PATH|latest] [--group G] [--transactional-id-prefix P]
    plantwatch flink submit --jobmanager HOST:PORT --bus kafka://HOST:PORT --parallelism N
                         [--cluster-python PATH] [...the same options]

``run --local`` runs the job on a MiniCluster inside this machine (development, tests, a small
plant); ``submit`` hands it to a Flink cluster's JobManager with the ``flink run`` client that
ships with PyFlink. Both first make the Flink environment if it is missing (``runtime.py``) and
create the plantwatch topics. The outputs go to the Kafka topics a ``plantwatch sink`` stores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from plantwatch.cliargs import positive
from plantwatch.core.errors import ConfigError
from plantwatch.core.settings import Settings
from plantwatch.stream.flink import runtime


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``flink`` to the subcommands ``sub`` (``ArgumentParser.add_subparsers()``)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "flink", help="the stream stage as an Apache Flink job (local MiniCluster or a cluster)"
    )
    actions = p.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="run the job on a local MiniCluster")
    run.add_argument(
        "--local",
        action="store_true",
        required=True,
        help="on a MiniCluster in this process (to use a cluster: plantwatch flink submit)",
    )
    _common(run)
    submit = actions.add_parser("submit", help="submit the job to a Flink cluster")
    submit.add_argument("--jobmanager", required=True, metavar="HOST:PORT", help="REST endpoint")
    submit.add_argument(
        "--cluster-python",
        default="python3",
        metavar="PATH",
        help="the Python the cluster's TaskManagers run the job's functions with; it needs "
        "apache-flink's Python packages, numpy, pyarrow, pyyaml and pydantic-settings "
        "(default: python3)",
    )
    submit.add_argument(
        "--detached", action="store_true", help="return once the cluster accepted the job"
    )
    _common(submit)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bus", required=True, metavar="URL", help="kafka://host:port of the cluster")
    p.add_argument("--parallelism", type=positive(int), default=None, metavar="N")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where checkpoints and Flink's log go by default (default: PLANTWATCH_DATA_DIR)",
    )
    p.add_argument(
        "--bounded",
        action="store_true",
        help="read the raw topic up to its end as the job starts, fire the open windows, stop "
        "(backfills and tests); default: run until stopped",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=None,
        metavar="S",
        help="seconds between checkpoints (default: PLANTWATCH_FLINK__CHECKPOINT_INTERVAL_S, "
        "10); 0 turns checkpoints off, and with them exactly-once output",
    )
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        metavar="DIR",
        help="where checkpoints are kept (default: <data_dir>/flink/checkpoints; on a cluster "
        "give a path every node reaches, e.g. s3:// or a shared folder)",
    )
    p.add_argument(
        "--from-checkpoint",
        default=None,
        metavar="PATH|latest",
        help="resume from a retained checkpoint or savepoint; 'latest': the newest complete "
        "checkpoint under --checkpoint-dir",
    )
    p.add_argument("--group", default="plantwatch-flink", help="Kafka consumer group of the job")
    p.add_argument(
        "--transactional-id-prefix",
        default=None,
        metavar="P",
        help="Kafka transactional id prefix of the exactly-once sink; one per job, the same "
        "across restarts (default: <topic prefix>-flink)",
    )
    p.add_argument(
        "--kafka-property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Kafka client property for the job's sources and sink (security.protocol, "
        "sasl.jaas.config, ...); repeatable",
    )
    p.add_argument("--name", default="plantwatch-stream", help="the Flink job name")


def latest_checkpoint(folder: Path) -> Path:
    """The newest complete checkpoint or savepoint under ``folder``: a ``<job>/chk-N`` or a
    ``savepoints/savepoint-…`` folder with its ``_metadata`` (written last, so present only
    when complete)."""
    found = [m.parent for m in folder.glob("*/chk-*/_metadata")]
    found += [m.parent for m in folder.glob("savepoints/savepoint-*/_metadata")]
    if not found:
        raise ConfigError(
            f"no complete checkpoint or savepoint under {folder} (a chk-N or savepoint-… folder "
            "with a _metadata file); give one with --from-checkpoint PATH"
        )
    return max(found, key=lambda p: (p / "_metadata").stat().st_mtime_ns)


def job_arguments(args: argparse.Namespace, settings: Settings, env: runtime.FlinkEnv) -> list[str]:
    """The command line of ``plantwatch.stream.flink.job`` for these options."""
    from plantwatch.bus.kafka_config import parse_bus_url

    fs = settings.flink
    interval = (
        fs.checkpoint_interval_s if args.checkpoint_interval is None else args.checkpoint_interval
    )
    if interval < 0:
        raise ConfigError(f"--checkpoint-interval must be >= 0 seconds, got {interval}")
    ckpt = args.checkpoint_dir or str(settings.data_dir / "flink" / "checkpoints")
    if "://" not in ckpt:  # a local folder; s3://, hdfs://, ... go to Flink as given
        ckpt = str(Path(ckpt).resolve())
    restore = ""
    if args.from_checkpoint and args.bounded:
        raise ConfigError(
            "--bounded with --from-checkpoint: a restored job keeps the Kafka positions and "
            "bounds of the job that took the checkpoint, and would not stop; resume without "
            "--bounded (and stop it when it has caught up)"
        )
    if args.from_checkpoint == "latest":
        if "://" in ckpt:
            raise ConfigError(
                f"--from-checkpoint latest looks in a local --checkpoint-dir; {ckpt} is not "
                "one: give the checkpoint's path (…/<job id>/chk-N or a savepoint)"
            )
        restore = str(latest_checkpoint(Path(ckpt)))
    elif args.from_checkpoint:
        restore = args.from_checkpoint
        if "://" not in restore and not Path(restore).exists():
            raise ConfigError(f"--from-checkpoint {restore}: no such checkpoint or savepoint")
    cluster = getattr(args, "jobmanager", None) is not None
    out = [
        "--bootstrap",
        parse_bus_url(args.bus),
        "--name",
        args.name,
        "--group",
        args.group,
        "--checkpoint-interval-s",
        str(interval),
        "--checkpoint-dir",
        ckpt,
        "--transactional-id-prefix",
        args.transactional_id_prefix or f"{settings.topic_prefix}-flink",
        "--restart-attempts",
        str(fs.restart_attempts),
        "--restart-delay-s",
        str(fs.restart_delay_s),
        "--python",
        args.cluster_python if cluster else str(env.python),
        "--jars",
        *map(str, env.jars),
    ]
    if args.parallelism:
        out += ["--parallelism", str(args.parallelism)]
    if args.bounded:
        out.append("--bounded")
    if restore:
        out += ["--restore", restore]
    if cluster:
        out.append("--ship-package")
    for prop in args.kafka_property:
        out += ["--kafka-property", prop]
    return out


def cmd(args: argparse.Namespace, settings: Settings) -> int:
    from plantwatch.stream.distributed import connect

    env = runtime.ensure(settings.cache_dir)
    bus, _ = connect(args.bus, settings)  # the topics exist before the job reads or writes them
    bus.close()
    job_args = job_arguments(args, settings, env)
    if args.action == "run":
        command = [str(env.python), "-m", "plantwatch.stream.flink.job", *job_args]
    else:
        command = [
            str(env.flink),
            "run",
            "--jobmanager",
            args.jobmanager,
            *(["--detached"] if args.detached else []),
            *(["--parallelism", str(args.parallelism)] if args.parallelism else []),
            "--python",
            str(Path(runtime.__file__).with_name("job.py")),
            "--pyClientExecutable",
            str(env.python),
            *job_args,
        ]
    log_dir = settings.data_dir.resolve() / "logs" / "flink"
    # The job stays in this process group: whoever stops the group (a terminal's Ctrl-C, a
    # supervisor) stops the driver, Flink's JVM and its Python workers with it.
    child = subprocess.Popen(command, env=env.environ(log_dir))

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code != 0:
        print(
            f"plantwatch: the Flink job exited with {code}; Flink's own log is in {log_dir}",
            file=sys.stderr,
        )
    return code
