"""The Flink environment: its own virtualenv, the connector jars, and the job's command line.

PyFlink pins its own pandas, pyarrow (< 17 with apache-flink 2.2.1's Beam) and numpy, so the job
runs in a virtualenv of its own, ``<cache>/flink/<version>/venv``, made on first use from
``requirements.txt`` (the main environment keeps its own pyarrow; Arrow's IPC format is the
same across these versions). The job imports plantwatch from this installation (PYTHONPATH),
never from a second copy. The connector jars come from Maven Central through the same
mechanism as the Kafka broker's (``services/_tools.fetch_libs``). Both are made once, under a
file lock, with a marker written last: an interrupted or outdated install is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import plantwatch
from plantwatch.core.errors import PlantwatchError
from plantwatch.services._proc import locked
from plantwatch.services._tools import MARKER, fetch_libs, find_java, jars_ready

FLINK_VERSION = "2.2.1"
CONNECTOR_VERSION = "5.0.0-2.2"


class FlinkSetupError(PlantwatchError):
    """The Flink environment could not be made (pip or Maven failed)."""


@dataclass(frozen=True, slots=True)
class FlinkEnv:
    python: Path  # the virtualenv's python: runs the job's driver and its Python workers
    flink: Path  # the Flink command line shipped with PyFlink (``flink run`` to a cluster)
    jars: tuple[Path, ...]
    source: Path  # the folder holding the ``plantwatch`` package, for PYTHONPATH

    def environ(self, log_dir: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.source), *filter(None, [env.get("PYTHONPATH")])]
        )
        env.setdefault("JAVA_HOME", str(find_java().parents[1]))
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            env["FLINK_LOG_DIR"] = str(log_dir)
        return env


def requirements() -> str:
    return resources.files("plantwatch.stream.flink").joinpath("requirements.txt").read_text()


def ensure(cache_dir: Path, *, progress: bool = True) -> FlinkEnv:
    """The Flink virtualenv and jars under ``cache_dir``, made when missing (minutes, once)."""
    root = cache_dir.resolve() / "flink" / FLINK_VERSION
    venv = root / "venv"
    reqs = requirements()
    digest = hashlib.sha256(f"{sys.version_info[:2]}\n{reqs}".encode()).hexdigest()
    if not jars_ready(venv, digest):
        with locked(root / ".venv.lock"):
            if not jars_ready(venv, digest):
                _make_venv(venv, reqs, digest, progress=progress)
    libs = fetch_libs(
        cache_dir=cache_dir,
        service="flink",
        version=FLINK_VERSION,
        properties={"connector.version": CONNECTOR_VERSION},
        expect=f"flink-sql-connector-kafka-{CONNECTOR_VERSION}.jar",
        what="the Flink Kafka connector",
    )
    python = venv / "bin" / "python"
    flink = next(venv.glob("lib/python*/site-packages/pyflink/bin/flink"))
    return FlinkEnv(
        python=python,
        flink=flink,
        jars=tuple(sorted(libs.glob("*.jar"))),
        source=Path(plantwatch.__file__).resolve().parents[1],
    )


def _make_venv(venv: Path, reqs: str, digest: str, *, progress: bool) -> None:
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        print(
            f"plantwatch: making the Flink environment (apache-flink {FLINK_VERSION}) in {venv}; "
            "once, about a minute",
            file=sys.stderr,
            flush=True,
        )
    req_file = venv.parent / "requirements.txt"
    req_file.write_text(reqs, encoding="utf-8")
    for command in (
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(req_file)],
    ):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise FlinkSetupError(
                f"{' '.join(command)} failed (exit {done.returncode}):\n{tail}\n"
                "pip needs to reach PyPI (or a mirror set with PIP_INDEX_URL)."
            )
    marker = {"digest": digest, "flink": FLINK_VERSION, "made": time.time()}
    (venv / MARKER).write_text(json.dumps(marker), encoding="utf-8")
