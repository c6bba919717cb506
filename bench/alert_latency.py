"""Time from the reading that makes an alert fire to its notification leaving the process.

    .venv/bin/python bench/alert_latency.py [--machines 50] [--speed 60] [--seconds 60]

Runs ``plantwatch run`` (the embedded plant with its default faults) with the shipped rules and
one webhook receiver — a local HTTP server in this script — routed with ``group_wait: 0s``, so
the figure is the pipeline's, not a grouping delay someone chose. Latency per notification
(new, update, resolved) = the wall time its POST left − the wall time of the event time that
completed the alert's condition (the end of the window that fired it: its last reading). It
includes waiting for the watermark (5 s of event time), the window, the detectors, the store
write and the delivery queue. Prints JSON; numbers are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from plantwatch.alert.rulefile import default_rules_path

ROUTE = """
notifications:
  receivers:
    - name: bench
      webhook: {url: "http://127.0.0.1:%d/hook"}
  route:
    receiver: bench
    group_by: [alertname, machine_id, sensor_id]
    group_wait: 0s
    group_interval: 1s
    repeat_interval: 24h
"""


class _Hook(BaseHTTPRequestHandler):
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with _Hook.lock:
            _Hook.received += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--machines", type=int, default=50)
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--seconds", type=float, default=60.0, help="wall seconds to run")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(
            default_rules_path().read_text("utf-8") + ROUTE % server.server_address[1], "utf-8"
        )
        summary = Path(tmp) / "summary.json"
        done = subprocess.run(
            [
                sys.executable, "-m", "plantwatch.cli", "run", "--no-live",
                "--data-dir", f"{tmp}/data", "--machines", str(args.machines),
                "--speed", str(args.speed), "--duration", str(args.seconds),
                "--rules", str(rules), "--summary-json", str(summary),
            ],
            capture_output=True,
            text=True,
            env=os.environ,
        )  # fmt: skip
        if not summary.exists():
            raise SystemExit(f"plantwatch run failed:\n{done.stderr[-3000:]}")
        s = json.loads(summary.read_text())
    server.shutdown()
    a = s["alarms"]
    print(
        json.dumps(
            {
                "what": "alert notification latency: firing reading -> webhook POST left",
                "machines": args.machines,
                "speed": args.speed,
                "wall_seconds": s["run"]["wall_seconds"],
                "alerts_fired": s["alerts_fired"],
                "notifications_sent": a["notifications_sent"],
                "notifications_received": _Hook.received,
                "notifications_failed": a["notifications_failed"],
                "latency_ms": a["notification_latency_ms"],
                "readings_event_to_stored_ms": s["latency_ms"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
