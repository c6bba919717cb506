"""``plantwatch bench``: every shape measured in one run, side by side with a ceiling and a
reference, printed as a table and written as JSON.

Each measurement runs in a child process (:mod:`plantwatch.bench.child`) so its CPU seconds and
peak memory are its own. The embedded plant runs once more with the same seed to record the
tables it stores (outside the measured runs), and the ceiling and the reference then work on
exactly those rows. Ratios are taken within the run,
because this machine is shared and absolute times drift between runs.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import Any

from plantwatch.alert.rulefile import default_rules_path
from plantwatch.core.errors import PlantwatchError
from plantwatch.core.settings import Settings

log = logging.getLogger("plantwatch.bench")


class BenchError(PlantwatchError):
    """A measurement failed."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run measures, and how much of it."""

    mode: str
    machines: int  # the plant of the embedded, Kafka and reference shapes
    sim_seconds: float  # simulated seconds of that plant (1 reading per sensor per second)
    reference_limit: int  # readings the seed-style reference processes (its rate is per reading)
    loads: tuple[tuple[int, int, float], ...]  # (readings/s offered, machines, wall seconds)
    scaling_sensors: tuple[int, ...]
    scaling_rate: float  # readings per simulated second, whatever the sensor count
    scaling_readings: int
    batch_sizes: tuple[int, ...]
    batch_sim_seconds: float
    repeats: int = 1  # the embedded shape and the ceiling: the best of this many runs
    kafka: bool = True
    flink_parallelism: tuple[int, ...] = (1, 2)  # the Flink job's runs (empty: none)
    memory_bound_mb: float = 64.0  # growth allowed over the longest run, after its warm-up

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            mode="quick",
            machines=50,
            sim_seconds=300,
            reference_limit=20_000,
            loads=((10_000, 50, 12.0), (100_000, 500, 12.0)),
            scaling_sensors=(10, 100, 1_000, 10_000),
            scaling_rate=10_000,
            scaling_readings=60_000,
            batch_sizes=(1_000, 10_000, 50_000),
            batch_sim_seconds=300,
        )

    @classmethod
    def full(cls) -> Plan:
        return cls(
            mode="full",
            machines=50,
            sim_seconds=3600,
            reference_limit=200_000,
            loads=((10_000, 50, 60.0), (100_000, 500, 600.0)),
            scaling_sensors=(10, 100, 1_000, 10_000),
            scaling_rate=10_000,
            scaling_readings=600_000,
            batch_sizes=(1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000),
            batch_sim_seconds=1800,
            repeats=3,
        )


@dataclass(slots=True)
class Report:
    plan: Plan
    started_at: str = ""
    duration_s: float = 0.0
    command: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.plan.mode,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 1),
            "command": self.command,
            "machine": self.machine,
            "plan": asdict(self.plan),
            **self.sections,
            "ratios": ratios(self.sections),
            "goals": goals(self.sections, self.plan),
            "errors": self.errors,
        }


# -- the children -------------------------------------------------------------------------------


def measure(section: str, params: dict[str, Any], *, timeout_s: float = 3600) -> dict[str, Any]:
    """Run one measurement in a child process; its JSON result."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [sys.executable, "-m", "plantwatch.bench.child", section],
        input=json.dumps(params),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
    )
    if done.returncode != 0:
        raise BenchError(f"{section} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise BenchError(f"{section} printed no result:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


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


@contextmanager
def webhook() -> Iterator[int]:
    """A local webhook receiver (the notifications' destination); yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


#: The shipped rules, routed to one webhook with no grouping delay: the latency measured is the
#: pipeline's, not a group_wait someone chose.
_ROUTE = """
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


@contextmanager
def kafka_broker(cache_dir: Path) -> Iterator[str]:
    """A one-node Kafka broker on free loopback ports for the run; yields its bootstrap."""
    from plantwatch.services import KafkaCluster, KafkaConfig, free_port_block

    with tempfile.TemporaryDirectory(prefix="plantwatch-bench-kafka-") as tmp:
        cluster = KafkaCluster(
            KafkaConfig(dir=Path(tmp), cache_dir=cache_dir, brokers=1, port=free_port_block(1))
        )
        cluster.start()
        try:
            yield cluster.bootstrap
        finally:
            cluster.stop()


def best_of(n: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The fastest of ``n`` runs (readings/s), with every run's figure under ``trials``: on a
    shared machine the best run is the one least disturbed by others."""
    runs: list[dict[str, Any]] = [run() for _ in range(n)]

    def rate(r: dict[str, Any]) -> float:
        return float(r.get("readings_per_s") or 0)

    top = max(runs, key=rate)
    best = dict(top)
    best["trials"] = [r.get("readings_per_s") for r in runs]
    return best


def scaling_machines(sensors: int) -> tuple[int, int]:
    """The plant size whose sensor count is closest to ``sensors``: (machines, sensors)."""
    from plantwatch.sim import build_plant

    per = build_plant(10, 1).sensor_count / 10
    best = (1, build_plant(1, 1).sensor_count)
    guess = max(1, round(sensors / per))
    for m in range(max(1, guess - 3), guess + 4):
        n = build_plant(m, 1).sensor_count
        if abs(n - sensors) < abs(best[1] - sensors):
            best = (m, n)
    return best


# -- the run ------------------------------------------------------------------------------------


def run_bench(plan: Plan, *, settings: Settings | None = None, out: Any = sys.stderr) -> Report:
    settings = settings or Settings()
    report = Report(plan, started_at=datetime.now(UTC).isoformat(timespec="seconds"))
    report.command = " ".join(
        ["plantwatch", "bench", *(["--quick"] if plan.mode == "quick" else [])]
    )
    report.machine = machine_facts()
    t0 = time.monotonic()

    def step(name: str, fn: Any) -> Any:
        print(f"bench: {name} …", file=out, flush=True)
        s0 = time.monotonic()
        try:
            result = fn()
        except (BenchError, subprocess.TimeoutExpired, PlantwatchError, OSError) as exc:
            report.errors[name] = str(exc)
            print(f"bench: {name} FAILED: {exc}", file=out, flush=True)
            return None
        print(f"bench: {name} done in {time.monotonic() - s0:.1f} s", file=out, flush=True)
        return result

    cache = str(settings.cache_dir.resolve())
    with tempfile.TemporaryDirectory(prefix="plantwatch-bench-") as tmp:
        record = Path(tmp) / "recorded"
        base = {"machines": plan.machines, "sim_seconds": plan.sim_seconds, "cache_dir": cache}
        s = report.sections
        s["embedded"] = step(
            f"embedded, best of {plan.repeats}",
            lambda: best_of(plan.repeats, lambda: measure("plant", base)),
        )
        # The same plant again (same seed, same rows), keeping every table it stores for the
        # ceiling and the reference. Not measured: writing them out costs the run ~10 %.
        recorded = step(
            "embedded again, recording its tables",
            lambda: measure("plant", {**base, "record_dir": str(record)}),
        )
        if recorded is not None:
            s["recorded_readings"] = recorded["readings_stored"]
            s["ceiling"] = step(
                f"ceiling, best of {plan.repeats}",
                lambda: best_of(
                    plan.repeats, lambda: measure("ceiling", {"record_dir": str(record)})
                ),
            )
            s["reference"] = step(
                "reference",
                lambda: measure(
                    "reference", {"record_dir": str(record), "limit": plan.reference_limit}
                ),
            )
        with webhook() as port:
            rules = Path(tmp) / "rules.yaml"
            rules.write_text(default_rules_path().read_text("utf-8") + _ROUTE % port, "utf-8")
            s["latency"] = [
                step(
                    f"latency at {offered:,} readings/s for {wall:.0f} s",
                    lambda offered=offered, machines=machines, wall=wall: measure(
                        "plant",
                        {
                            "machines": machines,
                            "offered": offered,
                            "wall_seconds": wall,
                            "rules_file": str(rules),
                            "cache_dir": cache,
                        },
                    ),
                )
                for offered, machines, wall in plan.loads
            ]
        points = []
        for sensors in plan.scaling_sensors:
            machines, actual = scaling_machines(sensors)
            rate_hz = plan.scaling_rate / actual
            params = {
                "machines": machines,
                "rate_hz": rate_hz,
                "sim_seconds": plan.scaling_readings / plan.scaling_rate,
                "faults": "none",
                "cache_dir": cache,
            }
            points.append(
                step(f"scaling, {actual:,} sensors", lambda p=params: measure("plant", p))
            )
        batch = step(
            "batch sizes",
            lambda: measure(
                "batch_sizes",
                {
                    "machines": plan.machines,
                    "sim_seconds": plan.batch_sim_seconds,
                    "sizes": list(plan.batch_sizes),
                },
            ),
        )
        s["scaling"] = {"sensors": points, "batch": batch}
        if plan.kafka:
            try:
                with kafka_broker(settings.cache_dir.resolve()) as bootstrap:
                    s["kafka"] = step(
                        "Kafka shape",
                        lambda: measure("plant", {**base, "bus_url": f"kafka://{bootstrap}"}),
                    )
                    if plan.flink_parallelism:
                        s["flink"] = step(
                            "the stream stage three ways: embedded, Kafka worker, Flink job",
                            lambda: measure(
                                "stream_stage",
                                {
                                    **base,
                                    "bootstrap": bootstrap,
                                    "parallelism": list(plan.flink_parallelism),
                                },
                            ),
                        )
            except PlantwatchError as exc:
                report.errors["kafka broker"] = str(exc)
                s["kafka"] = None
    report.duration_s = time.monotonic() - t0
    return report


def machine_facts() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "chdb": version("chdb"),
        "pyarrow": version("pyarrow"),
        "plantwatch": version("plantwatch"),
    }


# -- what the figures say -----------------------------------------------------------------------


def _get(d: Any, *path: Any) -> Any:
    for k in path:
        if d is None:
            return None
        try:
            d = d[k]
        except (KeyError, IndexError, TypeError):
            return None
    return d


def _ratio(a: Any, b: Any) -> float | None:
    return (
        round(a / b, 3) if isinstance(a, int | float) and isinstance(b, int | float) and b else None
    )


def ratios(s: dict[str, Any]) -> dict[str, float | None]:
    emb = _get(s, "embedded", "readings_per_s")
    return {
        "pipeline_over_ceiling": _ratio(emb, _get(s, "ceiling", "readings_per_s")),
        "pipeline_over_reference": _ratio(emb, _get(s, "reference", "readings_per_s")),
        "kafka_over_embedded": _ratio(_get(s, "kafka", "readings_per_s"), emb),
        "flink_over_embedded": _ratio(
            _get(s, "flink", "flink", 0, "readings_per_s"),
            _get(s, "flink", "embedded", "readings_per_s"),
        ),
    }


def _at_load(s: dict[str, Any], offered: int) -> dict[str, Any] | None:
    for r in s.get("latency") or []:
        if r is not None and r.get("offered_readings_per_s") == offered:
            return dict(r)
    return None


def goals(s: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    r = ratios(s)
    hi = _at_load(s, 100_000)
    longest = max(
        (x for x in s.get("latency") or [] if x), key=lambda x: x["wall_seconds"], default=None
    )
    rows = [
        ("embedded readings/s", ">=", 1_000_000, _get(s, "embedded", "readings_per_s")),
        ("pipeline / ceiling", ">=", 0.4, r["pipeline_over_ceiling"]),
        ("pipeline / seed-style reference", ">=", 20, r["pipeline_over_reference"]),
        ("p99 reading -> stored at 100k/s (ms)", "<=", 250, _get(hi, "latency_ms", "p99")),
        (
            "p99 limit-breaking reading -> notification at 100k/s (ms)",
            "<=",
            250,
            _get(hi, "notification_latency_ms", "p99"),
        ),
        ("Kafka shape readings/s", ">=", 300_000, _get(s, "kafka", "readings_per_s")),
        (
            f"RSS growth over the longest run (MiB, {_get(longest, 'wall_seconds')} s)",
            "<=",
            plan.memory_bound_mb,
            _get(longest, "memory", "rss_growth_mb"),
        ),
    ]
    out = []
    for name, op, target, measured in rows:
        met = None
        if isinstance(measured, int | float):
            met = measured >= target if op == ">=" else measured <= target
        out.append({"goal": name, "target": f"{op} {target:,}", "measured": measured, "met": met})
    return out
