"""Run the real ``plantwatch`` command in a subprocess (importable as ``plantwatch_cli``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def plantwatch(
    *args: str, timeout: float = 600, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "plantwatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"plantwatch {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def run_summary(
    data_dir: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> dict[str, Any]:
    out = data_dir.parent / f"{data_dir.name}-summary.json"
    plantwatch(
        "run",
        "--no-live",
        "--data-dir",
        str(data_dir),
        "--summary-json",
        str(out),
        *args,
        timeout=timeout,
        env=env,
    )
    return dict(json.loads(out.read_text()))


def start_role(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """A long-running ``plantwatch`` role (process, sink, simulate) writing to ``log``."""
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "plantwatch.cli", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )


def stop_role(proc: subprocess.Popen[str], *, timeout: float = 120) -> int:
    """SIGINT (finish cleanly) and wait; SIGKILL if it does not end in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{proc.args} did not stop within {timeout} s")


def stored_exactly_once(store_dir: Path, accepted: dict[tuple[str, str], int]) -> None:
    """Every seq 1..N the SDK accepted per sensor is in the store once (readings or keyed
    dead letters), and no reading row is there twice."""
    rows = query(
        store_dir,
        "SELECT machine_id, sensor_id, seq, count() AS n FROM ("
        " SELECT toString(machine_id) AS machine_id, toString(sensor_id) AS sensor_id, seq"
        " FROM plantwatch.readings"
        " UNION ALL SELECT machine_id, sensor_id, assumeNotNull(seq)"
        " FROM plantwatch.dead_letters FINAL WHERE seq IS NOT NULL"
        ") GROUP BY machine_id, sensor_id, seq",
    )
    stored: dict[tuple[str, str], set[int]] = {}
    twice = [r for r in rows if r["n"] != 1]
    assert not twice, f"stored more than once: {twice[:5]}"
    for r in rows:
        stored.setdefault((r["machine_id"], r["sensor_id"]), set()).add(r["seq"])
    missing = {
        key: [q for q in range(1, top + 1) if q not in stored.get(key, set())][:5]
        for key, top in accepted.items()
        if any(q not in stored.get(key, set()) for q in range(1, top + 1))
    }
    assert not missing, f"accepted by the SDK but not stored: {missing}"


def query(data_dir: Path, sql: str) -> list[dict[str, Any]]:
    proc = plantwatch("query", sql, "--format", "json", "--data-dir", str(data_dir))
    return list(json.loads(proc.stdout))
