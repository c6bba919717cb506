"""``plantwatch evaluate sim``: the whole product against the simulator's labelled faults.

1. **Train**: a plant of ``--machines`` runs ``--train-hours`` of simulated time with no fault
   (seed ``--seed``); ``plantwatch train`` fits one ``--model`` per machine type from that
   history and promotes it in a registry of this evaluation.
2. **Test**: the same plant runs on for ``--hours`` (its data folder continues the plant's
   time after the training history) with the default fault schedule, the stream scoring with
   the promoted models next to its built-in detectors and alert rules.
3. **Judge** (``stream/summary.py``, the ground truth the simulator labelled): a machine fault
   is detected when a machine detector — a static limit, the baseline or a pre-trained model —
   raised an anomaly on that machine inside the fault window, or a machine rule fired; a sensor
   fault when anything was raised on that sensor. The delay is from fault start to the first
   such event. An alert is false when it fired on a machine outside all of its fault windows
   (plus 5 minutes of settling).
4. **Remaining useful life**: the bearing-wear RUL model of ``evaluate/simrul.py``, its
   predicted time to failure per machine.

Each step is its own ``plantwatch`` process (chDB opens one data folder per process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plantwatch.core.errors import PlantwatchError
from plantwatch.evaluate.report import Report
from plantwatch.sim.faults import MACHINE_FAULTS

HELP = "train on a fault-free simulated history, then detect the faults of another one"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--machines", type=int, default=12, help="machines (default 12)")
    p.add_argument(
        "--train-hours",
        type=float,
        default=24.0,
        help="fault-free history (default 24: a model must see the whole daily load cycle)",
    )
    p.add_argument("--hours", type=float, default=12.0, help="test history (default 12)")
    p.add_argument(
        "--faults",
        default="default",
        metavar="SPEC",
        help="the test history's faults, as plantwatch run --faults (default: 'default')",
    )
    p.add_argument("--seed", type=int, default=1, help="plant seed (default 1)")
    p.add_argument("--model", default="pca", help="the algorithm trained (default pca)")
    p.add_argument("--no-rul", action="store_true", help="leave out the remaining-useful-life part")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the runs' data folders here (default: a temporary folder, removed)",
    )


def _plantwatch(*args: str, env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "plantwatch.cli", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PlantwatchError(
            f"{' '.join(cmd[2:])} failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )


def run(args: argparse.Namespace) -> Report:
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        return _run(args, args.work_dir)
    with tempfile.TemporaryDirectory(prefix="plantwatch-evaluate-sim-") as tmp:
        return _run(args, Path(tmp))


def _run(args: argparse.Namespace, work: Path) -> Report:
    registry = work / "models"
    env = {
        **os.environ,
        "PLANTWATCH_MODELS__REGISTRY": str(registry),
        "PLANTWATCH_LOG__ENABLED": "false",
    }
    plant = work / "plant"
    common = ["--machines", str(args.machines), "--speed", "max", "--no-live"]
    _plantwatch(
        "run",
        *common,
        "--duration",
        str(args.train_hours * 3600),
        "--faults",
        "none",
        "--seed",
        str(args.seed),
        "--data-dir",
        str(plant),
        env=env,
    )
    _plantwatch(
        "train",
        "--source",
        f"chdb://{plant}",
        "--model",
        args.model,
        "--promote",
        "--registry",
        str(registry),
        "--data-dir",
        str(plant),
        env=env,
    )
    summary_path = work / "test-summary.json"
    _plantwatch(
        "run",
        *common,
        "--duration",
        str(args.hours * 3600),
        "--faults",
        args.faults,
        "--seed",
        str(args.seed),
        "--data-dir",
        str(plant),
        "--summary-json",
        str(summary_path),
        env=env,
    )
    summary = json.loads(summary_path.read_text())
    report = judge(summary, args)
    if not args.no_rul:
        from plantwatch.evaluate.simrul import simulator_rul

        rul = simulator_rul(seed=args.seed)
        report.sections.append(rul)
        report.summary.update({f"rul_{k}": v for k, v in rul.summary.items()})
    return report


def judge(summary: dict[str, Any], args: argparse.Namespace) -> Report:
    """The report of a test run's summary (``plantwatch run --summary-json``)."""
    d = summary["detection"]
    truths = summary.get("faults_injected", [])
    found = {
        (f["machine"], f["sensor"], f["kind"], f["start"]): f for f in summary["faults_detected"]
    }
    rows: list[Sequence[Any]] = []
    delays = []
    machine_kinds = {k.value for k in MACHINE_FAULTS}
    for t in truths:
        key = (t["machine"], t["sensor"], t["kind"], t["start"])
        f = found.get(key)
        first = None
        if f is not None:
            delays.append(f["detection_delay_s"])
            a, b = f.get("first_anomaly"), f.get("first_alert")
            first = (a or {}).get("detector") or (b or {}).get("rule")
            if a and b and b["delay_s"] < a["delay_s"]:
                first = b["rule"]
        rows.append(
            [
                t["machine"],
                t["kind"],
                "machine" if t["kind"] in machine_kinds else "sensor",
                t["start"],
                f is not None,
                None if f is None else f["detection_delay_s"],
                first,
            ]
        )
    n = len(rows)
    detected = sum(1 for r in rows if r[4])
    outside = sum(
        v for k, v in d.get("anomalies_outside_faults", {}).items() if k.startswith("model:")
    )
    model_first = sum(1 for r in rows if isinstance(r[6], str) and r[6].startswith("model:"))
    return Report(
        title=f"Simulator faults: {args.machines} machines, {args.hours:g} h test history "
        f"(models trained on {args.train_hours:g} fault-free hours, {args.model})",
        columns=["machine", "fault", "scope", "start", "detected", "delay s", "first by"],
        rows=rows,
        summary={
            "faults": n,
            "faults_detected": detected,
            "detection_rate": round(detected / n, 3) if n else None,
            "machine_fault_recall": d.get("machine_fault_recall"),
            "median_delay_s": statistics.median(delays) if delays else None,
            "false_alerts_per_machine_hour": d.get("false_alerts_per_machine_hour"),
            "faults_first_found_by_a_model": model_first,
            "model_anomalies_outside_faults": outside,
            "model_anomalies_outside_faults_per_machine_hour": round(
                outside / (args.machines * args.hours), 4
            ),
        },
        details={"detection": d, "anomalies_by_detector": summary.get("anomalies_by_detector")},
    )
