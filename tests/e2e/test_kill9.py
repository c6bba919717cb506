"""``kill -9`` of ``plantwatch run`` mid-run, then a restart on the same data folder: every
reading the SDK had accepted before the kill is stored exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from plantwatch.edge.spool import recover_sequences

from plantwatch_cli import query, run_summary


def wait_for_stored(data: Path, minimum: int, timeout: float) -> None:
    """Wait until the spool has seen acknowledgements (readings are being stored)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        acked = (
            sum(p.stat().st_size for p in (data / "spool").glob("*.ack")) // 8
            if (data / "spool").exists()
            else 0
        )
        if acked >= minimum:
            return
        time.sleep(0.2)
    pytest.fail(f"no readings were stored within {timeout} s")


@pytest.mark.parametrize("settle_s", [0.0, 1.3])
def test_kill_minus_nine_then_restart_stores_every_accepted_reading_once(
    tmp_path: Path, settle_s: float
) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plantwatch.cli",
            "run",
            "--no-live",
            "--machines",
            "20",
            "--speed",
            "max",
            "--duration",
            "100000",
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_stored(data, minimum=5, timeout=120)
        time.sleep(settle_s)
        proc.kill()  # SIGKILL: no flush, no cleanup
    finally:
        proc.wait(timeout=30)
    accepted = recover_sequences(data / "spool")  # what the SDK had made durable
    assert sum(accepted.values()) > 0

    after = run_summary(
        data, "--machines", "20", "--speed", "max", "--duration", "20", "--faults", "none"
    )
    assert after["readings_replayed"] > 0  # the spool held readings that were not stored yet
    assert after["accounting_ok"] is True

    rows = query(
        data,
        "SELECT machine_id, sensor_id, seq, count() AS n FROM ("
        " SELECT toString(machine_id) AS machine_id, toString(sensor_id) AS sensor_id, seq"
        " FROM plantwatch.readings"
        " UNION ALL SELECT machine_id, sensor_id, assumeNotNull(seq)"
        " FROM plantwatch.dead_letters FINAL"
        " WHERE seq IS NOT NULL) GROUP BY machine_id, sensor_id, seq",
    )
    stored: dict[tuple[str, str], set[int]] = {}
    for r in rows:
        assert r["n"] == 1, f"stored twice: {r}"
        stored.setdefault((r["machine_id"], r["sensor_id"]), set()).add(r["seq"])
    missing = {
        key: [q for q in range(1, top + 1) if q not in stored.get(key, set())][:5]
        for key, top in accepted.items()
        if any(q not in stored.get(key, set()) for q in range(1, top + 1))
    }
    assert not missing, f"accepted before the kill but not stored: {missing}"
    (raw,) = query(
        data,
        "SELECT count() AS n, uniqExact(machine_id, sensor_id, seq) AS k "
        "FROM plantwatch.raw_readings FINAL",
    )
    assert raw["n"] == raw["k"]


def test_ctrl_c_flushes_everything_and_exits_cleanly(tmp_path: Path) -> None:
    import json
    import signal

    from plantwatch.edge.spool import Spool

    data = tmp_path / "data"
    summary = tmp_path / "s.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plantwatch.cli",
            "run",
            "--no-live",
            "--machines",
            "10",
            "--speed",
            "20",
            "--data-dir",
            str(data),
            "--summary-json",
            str(summary),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_stored(data, minimum=5, timeout=120)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "[ok]" in out
    s = json.loads(summary.read_text())
    assert s["readings_generated"] == s["readings_stored"] + s["duplicates_dropped"] + sum(
        s["dead_letters"].values()
    )
    with Spool(data / "spool") as spool:
        assert spool.stats.pending_entries == 0  # every accepted reading was stored and acked
