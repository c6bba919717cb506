"""The embedded plant: simulator → edge SDK → in-process bus → pipeline → chDB → alerts.

One process, four threads: the producer (simulator and SDK), the SDK's sender, the stream runner,
and the caller's (live view or log lines). Shutdown is ordered so nothing is lost: stop the
producer, let the SDK's spool drain (every reading stored and acknowledged), fire the open
windows, close the store. A crash at any point is covered by the spool and by de-duplication
against the store on the next start (see ``local.py``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plantwatch.bus.memory import MemoryBus
from plantwatch.console.live import MachineRow, Snapshot
from plantwatch.core.clock import SimulatedClock, WallClock
from plantwatch.core.errors import ConfigError
from plantwatch.core.settings import Settings
from plantwatch.core.topics import Topics
from plantwatch.edge import Batching, EdgeClient, InProcessTransport, Spool, SpoolLimits
from plantwatch.sim import (
    Fault,
    FaultKind,
    FaultPlan,
    Simulator,
    build_plant,
    parse_fault_spec,
    schedule_faults,
)
from plantwatch.sim.faults import SENSOR_FAULTS
from plantwatch.store import migrate, open_store, queries
from plantwatch.stream.local import LocalRunner
from plantwatch.stream.metrics import RunMetrics
from plantwatch.stream.outputs import Output
from plantwatch.stream.pipeline import Pipeline, PipelineConfig
from plantwatch.stream.summary import Truth, evaluate

log = logging.getLogger("plantwatch.run")


@dataclass(frozen=True, slots=True)
class RunOptions:
    machines: int = 12
    rate_hz: float = 1.0
    duration_s: float | None = None  # wall seconds; with speed=None (max): simulated seconds
    speed: float | None = 1.0  # simulated seconds per wall second; None: as fast as possible
    seed: int = 1
    faults: str = "default"
    start: float | None = None  # simulated start (epoch s); default: now, or after stored data
    log_alerts: bool = False

    def sim_horizon_s(self) -> float:
        """Simulated seconds the run covers (one hour when it runs until stopped)."""
        if self.duration_s is None:
            return 3600.0
        return self.duration_s if self.speed is None else self.duration_s * self.speed


@dataclass(slots=True)
class _Produced:
    generated: int = 0
    sdk: int = 0
    forwarded: int = 0
    duplicates_sent: int = 0
    issues: dict[str, int] = field(default_factory=dict)
    sim_time: float = 0.0


def _read_plant_clock(path: Path) -> float:
    try:
        return float(json.loads(path.read_text())["t"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _write_plant_clock(path: Path, t: float) -> None:
    """Remember how far the simulated plant got, so a restart never re-uses plant time."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"t": t}))
    os.replace(tmp, path)


class EmbeddedPlant:
    def __init__(self, options: RunOptions, settings: Settings) -> None:
        self.options = options
        self.settings = settings
        data = settings.data_dir.resolve()
        data.mkdir(parents=True, exist_ok=True)
        self.topics = Topics(settings.topic_prefix)
        self.store = open_store(
            settings.resolved_store_url(),
            database=settings.database,
            user=settings.clickhouse_user,
            password=settings.clickhouse_password.get_secret_value(),
        )
        try:
            self._setup(data)
        except BaseException:
            self.store.close()
            raise

    def _setup(self, data: Path) -> None:
        o, s = self.options, self.settings
        migrate(self.store)
        self._clock_file = data / "plant-clock.json"
        self.plant = build_plant(o.machines, o.seed)
        queries.register_machines(self.store, self.plant.registry_rows())
        st = s.stream
        self.pipeline = Pipeline(
            PipelineConfig(
                window_s=st.window_s,
                out_of_orderness_s=st.out_of_orderness_s,
                allowed_lateness_s=st.allowed_lateness_s,
                max_future_skew_s=st.max_future_skew_s,
                max_age_s=st.max_age_s,
                dedupe_horizon=st.dedupe_horizon,
                no_data_after_s=st.no_data_after_s,
                idle_source_s=st.idle_source_s,
            )
        )
        self.bus = MemoryBus(
            max_messages=s.bus.max_messages, publish_timeout=s.bus.publish_timeout_s
        )
        self.metrics = RunMetrics()
        # The clock starts where stored data ends, so a restart continues the plant's time.
        probe = WallClock()
        self.runner_restored = None
        start = o.start if o.start is not None else math.floor(probe.time())
        self.clock = SimulatedClock(start, o.speed)
        self.runner = LocalRunner(
            bus=self.bus,
            store=self.store,
            pipeline=self.pipeline,
            clock=self.clock,
            topics=self.topics,
            max_batch_rows=st.max_batch_rows,
            max_batch_wait_s=st.max_batch_wait_s,
            metrics=self.metrics,
            on_output=self._on_output if o.log_alerts else None,
        )
        restored = self.runner.restore()
        self.runner_restored = restored
        if o.start is None:
            # Continue the plant's time after whatever an earlier run produced or stored.
            after = [restored.max_event_ms / 1000 if restored.max_event_ms is not None else 0.0]
            after.append(_read_plant_clock(self._clock_file))
            start = max(start, math.floor(max(after)) + 1)
            self.clock = SimulatedClock(start, o.speed)
            self.runner.clock = self.clock
        self.start = start
        self.faults = self._schedule_faults(start)
        self.sim = Simulator(
            self.plant, start=start, rate_hz=o.rate_hz, faults=self.faults, seed=o.seed
        )
        sp = s.spool
        self.spool = Spool(
            data / "spool",
            limits=SpoolLimits(
                max_bytes=sp.max_bytes,
                segment_bytes=sp.segment_bytes,
                when_full=sp.when_full,
                block_timeout_s=sp.block_timeout_s,
                fsync=sp.fsync,
            ),
        )
        self.replayed = self.spool.stats.pending_readings
        self.client = EdgeClient(
            spool=self.spool,
            transport=InProcessTransport(self.bus, self.topics.raw),
            clock=self.clock,
            batching=Batching(
                max_readings=s.batching.max_readings, max_delay_s=s.batching.max_delay_s
            ),
        )
        self.produced = _Produced(sim_time=start)
        self._stop = threading.Event()
        self._producer_done = threading.Event()
        self._runner_stop = threading.Event()
        self._errors: list[BaseException] = []
        self._finished = threading.Event()

    def _schedule_faults(self, start: float) -> list[Fault]:
        """The faults of this run. A run without --duration gets the spec once per simulated
        hour, for a day. An explicit spec that does not fit is an error; the default one
        shrinks to what fits the run (one of each kind, then none) and says so."""
        o = self.options
        if o.duration_s is not None:
            return self._schedule_window(start, o.sim_horizon_s(), o.seed)
        out: list[Fault] = []
        for hour in range(24):
            out += self._schedule_window(start + 3600.0 * hour, 3600.0, o.seed + hour)
        return out

    def _schedule_window(self, start: float, horizon: float, seed: int) -> list[Fault]:
        o = self.options
        plan = parse_fault_spec(o.faults)
        try:
            return schedule_faults(self.plant, plan, start=start, horizon_s=horizon, seed=seed)
        except ConfigError:
            if not plan.use_default:
                raise
        smaller = FaultPlan(counts=tuple((k, 1) for k in FaultKind))
        try:
            faults = schedule_faults(self.plant, smaller, start=start, horizon_s=horizon, seed=seed)
        except ConfigError:
            log.warning(
                "no faults injected: %d machines and %.0f simulated seconds leave no room for "
                "the default set (give a longer --duration, or --faults none)",
                o.machines,
                horizon,
            )
            return []
        log.warning("a short run: injecting one fault of each kind instead of the default set")
        return faults

    # -- threads -------------------------------------------------------------------------------

    def start_threads(self) -> None:
        self.wall_started = time.time()
        self._producer = threading.Thread(
            target=self._guard(self._produce), name="producer", daemon=True
        )
        self._runner_thread = threading.Thread(
            target=self._guard(self._run_stream), name="stream", daemon=True
        )
        self._runner_thread.start()
        self._producer.start()

    def _guard(self, fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # surfaced by wait()/stop()
                log.exception("%s failed", threading.current_thread().name)
                self._errors.append(exc)
                self._stop.set()
                self._producer_done.set()

        return run

    def _produce(self) -> None:
        o = self.options
        sensors = max(1, self.plant.sensor_count)
        # Chunks stay well below the watermark's idle timeout, so the legacy gateway (sent after
        # the SDK machines of the same chunk) is never mistaken for an idle source.
        idle = self.settings.stream.idle_source_s
        if o.speed is None:
            chunk_s = min(20_000 / (sensors * o.rate_hz), idle / 3)
        else:
            chunk_s = min(0.1 * o.speed, idle / 3)
        chunk_s = max(chunk_s, 1.0 / o.rate_hz)
        end = math.inf
        if o.duration_s is not None:
            end = self.start + o.sim_horizon_s()
        t = self.start
        p = self.produced
        try:
            while not self._stop.is_set() and t < end:
                nxt = min(t + chunk_s, end)
                if not self.clock.sleep_until(nxt, self._stop):
                    break
                _write_plant_clock(self._clock_file, nxt)  # before any of the chunk is accepted
                chunk = self.sim.step(nxt)
                if chunk.table.num_rows:
                    self.client.send_batch(chunk.table)
                forwarded = self.client.forward(chunk.legacy) if chunk.legacy else []
                dups = self.sim.gateway.pick_duplicates(forwarded) if forwarded else []
                if dups:
                    self.client.forward(dups)
                p.sdk += chunk.table.num_rows
                p.forwarded += len(forwarded)
                p.duplicates_sent += len(dups)
                p.generated += chunk.table.num_rows + len(forwarded) + len(dups)
                for k, v in chunk.issue_counts.items():
                    p.issues[k] = p.issues.get(k, 0) + v
                p.sim_time = nxt
                t = nxt
        finally:
            self._producer_done.set()

    def _run_stream(self) -> None:
        while not self._runner_stop.is_set():
            self.runner.step(timeout=0.1)
        # drain whatever is still on the bus
        while self.runner.step(timeout=0.05):
            pass

    def _on_output(self, out: Output) -> None:
        for e in out.alerts:
            log.warning("ALERT %s %s %s: %s", e.state.upper(), e.severity, e.rule, e.message)

    # -- control -------------------------------------------------------------------------------

    def wait(self, timeout: float) -> bool:
        """True once the producer finished (duration reached, stop requested, or a failure)."""
        return self._producer_done.wait(timeout)

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, *, drain_timeout: float = 120.0) -> bool:
        """Ordered shutdown; True when every accepted reading was stored and acknowledged."""
        self._stop.set()
        self._producer.join()
        drained = False
        if not self._errors:
            self.client.flush()
            drained = self.client.drain(drain_timeout)
            if not drained:
                log.error(
                    "the spool did not drain in %.0f s; pending readings stay in %s "
                    "and are sent on the next start",
                    drain_timeout,
                    self.settings.data_dir / "spool",
                )
        self._runner_stop.set()
        self._runner_thread.join()
        if not self._errors:
            self.runner.finish()
        self.wall_finished = time.time()
        self.client.close()
        self.runner.close()
        self.bus.close()
        return drained

    def close(self) -> None:
        self.store.close()

    @property
    def errors(self) -> list[BaseException]:
        return list(self._errors)

    # -- what people see -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        m = self.metrics
        types = {mm.machine_id: mm.machine_type for mm in self.plant.machines}
        with m.lock:
            active = list(m.active_alerts.values())
            latest = dict(m.latest)
            counts = m.counts
            by_machine: dict[str, list[str]] = {}
            worst: dict[str, str] = {}
            rank = {"ALARM": 0, "WARN": 1, "SENSOR": 2, "OK": 3}
            for e in active:
                by_machine.setdefault(e.machine_id, []).append(f"{e.rule}:{e.sensor_id}")
                state = (
                    "SENSOR"
                    if e.rule.startswith("sensor_")
                    else ("ALARM" if e.severity == "critical" else "WARN")
                )
                if rank[state] < rank[worst.get(e.machine_id, "OK")]:
                    worst[e.machine_id] = state
            rows = []
            for mm in self.plant.machines:
                vals = [
                    (sp.sensor_id, *latest[(mm.machine_id, sp.sensor_id)])
                    for sp in mm.sensors
                    if (mm.machine_id, sp.sensor_id) in latest
                ]
                rows.append(
                    MachineRow(
                        mm.machine_id,
                        types[mm.machine_id],
                        worst.get(mm.machine_id, "OK"),
                        vals,
                        by_machine.get(mm.machine_id, []),
                    )
                )
            return Snapshot(
                sim_time=m.event_time_ms / 1000.0,
                wall_elapsed=time.time() - m.started,
                generated=self.produced.generated,
                stored=counts.stored,
                duplicates=counts.duplicates,
                dead_letters=dict(counts.dead),
                late=counts.late,
                anomalies=m.anomalies,
                alerts_fired=m.alerts_fired,
                alerts_resolved=m.alerts_resolved,
                rate=m.throughput(),
                latency_p50=m.latency.percentile(50),
                latency_p95=m.latency.percentile(95),
                spool_pending=self.spool.stats.pending_readings
                if not self._finished.is_set()
                else 0,
                machines=rows,
                recent_anomalies=list(m.recent_anomalies),
                recent_alerts=[
                    f"{e.state} {e.severity} {e.rule} {e.machine_id}/{e.sensor_id}"
                    for e in m.recent_alerts
                ],
            )

    def summary(self) -> dict[str, Any]:
        m = self.metrics
        o = self.options
        c = m.counts
        sim_seconds = self.produced.sim_time - self.start
        truths = [
            Truth(
                f.machine_id,
                f.sensor_id,
                f.kind.value,
                f.start,
                min(f.end, self.produced.sim_time),  # a run stopped early cuts the window
                "sensor" if f.kind in SENSOR_FAULTS else "machine",
            )
            for f in self.faults
            if f.start < self.produced.sim_time  # faults the run reached
        ]
        quality = evaluate(
            self.store,
            truths,
            since_ms=int(self.start * 1000),
            machines=o.machines,
            sim_seconds=sim_seconds,
        )
        totals = queries.table_counts(self.store)
        dead = dict(sorted(c.dead.items()))
        return {
            "readings_generated": self.produced.generated,
            "readings_replayed": self.replayed,
            "readings_stored": c.stored,
            "raw_stored": totals["raw_readings"],
            "duplicates_dropped": c.duplicates,
            "dead_letters": dead,
            "late": c.late,
            "late_beyond_lateness": c.late_beyond_lateness,
            "out_of_range": c.out_of_range,
            "anomalies": m.anomalies,
            "anomalies_by_detector": dict(sorted(m.anomalies_by_detector.items())),
            "alerts_fired": m.alerts_fired,
            "alerts_resolved": m.alerts_resolved,
            "faults_injected": [t.as_dict() for t in truths],
            "faults_detected": quality["faults_detected"],
            "false_alerts": quality["false_alerts"],
            "detection": quality["detection"],
            "throughput_readings_per_s": round(
                c.stored / max(1e-9, self.wall_finished - self.wall_started), 1
            ),
            "latency_ms": {
                "p50": m.latency.percentile(50),
                "p95": m.latency.percentile(95),
                "p99": m.latency.percentile(99),
            },
            "accounting_ok": self.produced.generated + self.replayed
            == c.stored + c.duplicates + sum(dead.values()),
            "run": {
                "machines": o.machines,
                "sensors": self.plant.sensor_count,
                "rate_hz": o.rate_hz,
                "speed": "max" if o.speed is None else o.speed,
                "seed": o.seed,
                "faults_spec": o.faults,
                "sim_start": Truth("", "", "", self.start, self.start, "").as_dict()["start"],
                "sim_seconds": round(sim_seconds, 3),
                "wall_seconds": round(self.wall_finished - self.wall_started, 3),
                "gateway_issues_injected": dict(sorted(self.produced.issues.items())),
                "duplicates_sent_by_gateway": self.produced.duplicates_sent,
                "batches": m.batches,
            },
            "store_totals": totals,
        }
