"""Run the real ``plantwatch`` command in a subprocess (importable as ``plantwatch_cli``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def plantwatch(
    *args: str, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "plantwatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"plantwatch {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def run_summary(data_dir: Path, *args: str, timeout: float = 600) -> dict[str, Any]:
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
    )
    return dict(json.loads(out.read_text()))


def query(data_dir: Path, sql: str) -> list[dict[str, Any]]:
    proc = plantwatch("query", sql, "--format", "json", "--data-dir", str(data_dir))
    return list(json.loads(proc.stdout))
