"""`plantwatch run` with a rules file: notifications over a real webhook, alarms acknowledged
from the CLI while the plant runs, and a restart that neither forgets nor re-notifies."""

from __future__ import annotations

import json
import time
from pathlib import Path

from plantwatch.alert.rulefile import default_rules_path

from alertmanager_support import HttpCapture
from plantwatch_cli import plantwatch, query, run_summary, start_role, stop_role

NOTIFY = """
notifications:
  receivers:
    - name: oncall
      webhook: {url: "${HOOK}/oncall", secret: "${HOOK_SECRET}"}
  route:
    receiver: oncall
    group_by: [alertname, machine_id]
    group_wait: 0s
    group_interval: 30s
    repeat_interval: 4h
"""


def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(default_rules_path().read_text("utf-8") + NOTIFY, "utf-8")
    return path


def alarms(data: Path, *extra: str) -> list[dict]:
    out = plantwatch("alarms", "list", "--json", "--data-dir", str(data), *extra)
    return list(json.loads(out.stdout))


def test_alarms_notify_ack_and_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rules = rules_file(tmp_path)
    with HttpCapture() as hook:
        env = {"HOOK": hook.url, "HOOK_SECRET": "s3cret", "PLANTWATCH_RULES_FILE": str(rules)}
        log = tmp_path / "run.log"
        proc = start_role(
            "run", "--no-live", "--data-dir", str(data), "--machines", "20", "--speed", "60",
            "--duration", "50", "--summary-json", str(tmp_path / "s1.json"),
            env=env, log=log,
        )  # fmt: skip
        try:
            # an alarm becomes active; the CLI reads it from the running plant
            deadline = time.monotonic() + 120
            active: list[dict] = []
            while not active and time.monotonic() < deadline and proc.poll() is None:
                active = alarms(data, "--active")
                time.sleep(0.5)
            assert active, f"no alarm while the plant ran:\n{log.read_text()[-3000:]}"
            target = active[0]
            ack = plantwatch(
                "alarms", "ack", target["alarm_id"], "--user", "ana", "--comment", "on it",
                "--data-dir", str(data), env=env,
            )  # fmt: skip
            answer = json.loads(ack.stdout)
            assert answer["via"] == "running plant"
            assert answer["alarm"]["ack"] == "ACK" and answer["alarm"]["acknowledged_by"] == "ana"
            unknown = plantwatch(
                "alarms", "ack", "Anothere000", "--user", "ana", "--data-dir", str(data),
                check=False, env=env,
            )  # fmt: skip
            assert unknown.returncode == 2 and "no alarm 'Anothere000'" in unknown.stderr
        finally:
            assert stop_role(proc, timeout=180) == 0, log.read_text()[-3000:]
        first = json.loads((tmp_path / "s1.json").read_text())
        books = log.read_text()
        assert f"notifications sent {first['alarms']['notifications_sent']}, failed 0" in books

        # what the webhook received: signed, Alertmanager-shaped, one alarm id per alert
        posts = [r for r in hook.requests if r.path == "/oncall"]
        assert posts, "no notification reached the webhook"
        assert all(r.headers["x-plantwatch-signature"].startswith("sha256=") for r in posts)
        bodies = [r.json() for r in posts]
        assert {b["version"] for b in bodies} == {"4"}
        alerts = [a for b in bodies for a in b["alerts"]]
        assert all(a["labels"]["alertname"] and a["labels"]["machine_id"] for a in alerts)
        assert all(a["alarmId"].startswith("A") for a in alerts)
        assert first["alarms"]["notifications_sent"] == len(posts)
        assert first["alarms"]["notifications_failed"] == 0
        assert first["alarms"]["notification_latency_ms"]["n"] > 0

        # the acknowledgement is in the store
        (row,) = query(
            data,
            f"SELECT ack, acknowledged_by FROM plantwatch.alarms "
            f"WHERE alarm_id = '{target['alarm_id']}'",
        )
        assert (row["ack"], row["acknowledged_by"]) == ("ACK", "ana")

        # restart: alarms still active are neither created nor notified again
        still = {a["alarm_id"]: a for a in alarms(data, "--active")}
        before = len(hook.requests)
        run_summary(
            data, "--machines", "20", "--speed", "60", "--duration", "8", "--faults", "none",
            env=env,
        )  # fmt: skip
        fps = {f"{a['rule']}:{a['machine_id']}/{a['sensor_id']}" for a in still.values()}
        created_again = [
            r
            for r in query(
                data,
                "SELECT fingerprint, alarm_id FROM plantwatch.alarm_events WHERE event = 'created'",
            )
            if r["fingerprint"] in fps and r["alarm_id"] not in still
        ]
        assert created_again == []
        renotified = [
            a
            for r in hook.requests[before:]
            for a in r.json()["alerts"]
            if a["alarmId"] in still and a["status"] == "firing" and r.json()["reason"] == "new"
        ]
        assert renotified == []
