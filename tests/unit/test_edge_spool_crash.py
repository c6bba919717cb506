"""A real crash: a child process appends with fsync and is killed with SIGKILL mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from plantwatch.edge import Spool, SpoolLimits, recover_sequences

CHILD = """
import sys
from plantwatch.edge import Spool, SpoolLimits

limits = SpoolLimits(fsync=True, segment_bytes=256 * 1024, max_bytes=1 << 30)
spool = Spool(sys.argv[1], limits=limits)
payload = bytes(range(256)) * 200  # 51,200 bytes: kills often land mid-write
seq = 0
while True:
    seq += 1
    entry_id = spool.append("application/octet-stream", payload, count=1, max_seq={("m", "s"): seq})
    print(entry_id, seq, flush=True)
"""


def test_every_append_that_returned_survives_kill_9(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, str(script), str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    returned: list[tuple[int, int]] = []
    deadline = time.monotonic() + 30
    while len(returned) < 40 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        entry_id, seq = map(int, line.split())
        returned.append((entry_id, seq))
    os.kill(child.pid, signal.SIGKILL)
    rest, err = child.communicate(timeout=10)
    returned += [(int(a), int(b)) for a, b in (line.split() for line in rest.splitlines())]
    assert child.returncode == -signal.SIGKILL
    assert len(returned) >= 40, err

    last_seq = returned[-1][1]
    assert recover_sequences(directory)[("m", "s")] >= last_seq  # read-only, before repair
    with Spool(directory, limits=SpoolLimits(fsync=True)) as spool:
        present = [entry.entry_id for entry in spool]
        # every id whose append returned is there; at most one more (written, not yet printed)
        assert present[: len(returned)] == [entry_id for entry_id, _ in returned]
        assert len(present) - len(returned) in (0, 1)
        assert all(len(entry.payload) == 51_200 for entry in spool)
        assert spool.max_seqs()[("m", "s")] in (last_seq, last_seq + 1)
        assert spool.append("x", b"after", count=1, max_seq={}) == present[-1] + 1
