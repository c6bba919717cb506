"""The embedded plant: simulator → edge SDK → in-process bus → pipeline → chDB → alerts.

One process, four threads: the producer (simulator and SDK), the SDK's sender, the stream runner,
and the caller's (live view or log lines). Shutdown is ordered so nothing is lost: stop the
producer, let the SDK's spool drain (every reading stored and acknowledged), fire the open
windows, close the store. A crash at any point is covered by the spool and by de-duplication
against the store on the next start (see ``local.py``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

from plantwatch.alert.control import rule_set
from plantwatch.alert.service import AlertService, claim_store
from plantwatch.bus.kafka_config import parse_bus_url
from plantwatch.console.live import MachineRow, Snapshot
from plantwatch.core.clock import SimulatedClock, WallClock
from plantwatch.core.settings import Settings
from plantwatch.core.topics import Topics
from plantwatch.models.scoring import scorer_from_settings
from plantwatch.sim import build_plant
from plantwatch.sim.faults import SENSOR_FAULTS
from plantwatch.store import migrate, queries
from plantwatch.stream.backends import KafkaBackend, MemoryBackend
from plantwatch.stream.metrics import RunMetrics
from plantwatch.stream.outputs import AlertEvent
from plantwatch.stream.pipeline import Pipeline, PipelineConfig
from plantwatch.stream.producer import PlantProducer, RunOptions, read_plant_clock
from plantwatch.stream.summary import Truth, evaluate

log = logging.getLogger("plantwatch.run")


class EmbeddedPlant:
    def __init__(self, options: RunOptions, settings: Settings) -> None:
        self.options = options
        self.settings = settings
        data = settings.data_dir.resolve()
        data.mkdir(parents=True, exist_ok=True)
        self.topics = Topics(settings.topic_prefix)
        self.service_lock, self.store = claim_store(settings)
        try:
            self._setup(data)
        except BaseException:
            self.store.close()
            self.service_lock.release()
            raise

    def _setup(self, data: Path) -> None:
        o, s = self.options, self.settings
        migrate(self.store)
        self.plant = build_plant(o.machines, o.seed)
        queries.register_machines(self.store, self.plant.registry_rows())
        st = s.stream
        self.rules = rule_set(s)
        self.pipeline = Pipeline(
            PipelineConfig.from_settings(st),
            rules=self.rules.rules,
            models=scorer_from_settings(s),
        )
        self.metrics = RunMetrics()
        # The clock starts where stored data ends, so a restart continues the plant's time.
        start = o.start if o.start is not None else math.floor(WallClock().time())
        self.clock = SimulatedClock(start, o.speed)
        self.backend = self._backend()
        self.backend.announce(self.plant.registry_rows())
        restored = self.backend.restore()
        self.runner_restored = restored
        if o.start is None:
            # Continue the plant's time after whatever an earlier run produced or stored.
            after = [restored.max_event_ms / 1000 if restored.max_event_ms is not None else 0.0]
            after.append(read_plant_clock(data / "plant-clock.json"))
            start = max(start, math.floor(max(after)) + 1)
            self.clock = SimulatedClock(start, o.speed)
            self.backend.set_clock(self.clock)
        self.start = start
        self.alerts = AlertService(
            rules=self.rules,
            store=self.store,
            clock=self.clock,
            data_dir=data,
            lock=self.service_lock,
        )
        self.backend.on_alerts(self._on_alerts)
        self.producer = PlantProducer(
            plant=self.plant,
            options=o,
            settings=s,
            data_dir=data,
            transport=self.backend.transport,
            clock=self.clock,
            start=start,
        )
        self.faults = self.producer.faults
        self.replayed = self.producer.replayed
        self.produced = self.producer.produced
        self._stop = threading.Event()
        self._producer_done = threading.Event()
        self._runner_stop = threading.Event()
        self._errors: list[BaseException] = []
        self._finished = threading.Event()

    def _backend(self) -> MemoryBackend | KafkaBackend:
        o, s = self.options, self.settings
        if o.bus_url is None:
            return MemoryBackend(
                settings=s,
                store=self.store,
                pipeline=self.pipeline,
                clock=self.clock,
                metrics=self.metrics,
                topics=self.topics,
            )
        return KafkaBackend(
            bootstrap=parse_bus_url(o.bus_url),
            settings=s,
            store=self.store,
            pipeline=self.pipeline,
            clock=self.clock,
            metrics=self.metrics,
            topics=self.topics,
        )

    # -- threads -------------------------------------------------------------------------------

    def start_threads(self) -> None:
        self.wall_started = time.time()
        self.alerts.start()
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
        try:
            self.producer.run(self._stop)
        finally:
            self._producer_done.set()

    def _run_stream(self) -> None:
        self.backend.run(self._runner_stop)

    def _on_alerts(self, alerts: list[AlertEvent]) -> None:
        """Alert events of a stored batch: log lines (without the live view), then alarms and
        notifications."""
        if self.options.log_alerts:
            for e in alerts:
                what = {"firing": "FIRING", "resolved": "RESOLVED"}.get(e.state)
                if e.previous == "recovering":
                    continue  # it was firing all along
                if e.previous == "firing" and e.state == "firing":
                    what = "ESCALATED"
                if what:
                    log.warning("ALERT %s %s %s: %s", what, e.severity, e.rule, e.message)
        self.alerts.handle(alerts)

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
            drained = self.producer.drain(drain_timeout)
        self._runner_stop.set()
        self._runner_thread.join()
        if not self._errors:
            self.backend.finish()
        self.wall_finished = time.time()
        self.producer.close()
        self.backend.close()
        self.alerts.close()
        return drained

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            self.service_lock.release()

    @property
    def errors(self) -> list[BaseException]:
        return list(self._errors)

    # -- what people see -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        m = self.metrics
        types = {mm.machine_id: mm.machine_type for mm in self.plant.machines}
        alarms = self.alerts.active_alarms()  # the machines' states follow their alarms
        with m.lock:
            latest = dict(m.latest)
            counts = m.counts
            by_machine: dict[str, list[str]] = {}
            worst: dict[str, str] = {}
            rank = {"ALARM": 0, "WARN": 1, "SENSOR": 2, "OK": 3}
            sensor_rules = {r.name for r in self.rules.rules if r.category == "sensor"}
            for a in alarms:
                machine = a["machine_id"]
                by_machine.setdefault(machine, []).append(f"{a['rule']}:{a['sensor_id']}")
                state = (
                    "SENSOR"
                    if a["rule"] in sensor_rules
                    else ("ALARM" if a["severity"] in ("critical", "major") else "WARN")
                )
                if rank[state] < rank[worst.get(machine, "OK")]:
                    worst[machine] = state
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
                spool_pending=self.producer.spool.stats.pending_readings
                if not self._finished.is_set()
                else 0,
                machines=rows,
                recent_anomalies=list(m.recent_anomalies),
                recent_alerts=[
                    f"{e.state} {e.severity} {e.rule} {e.machine_id}/{e.sensor_id}"
                    for e in m.recent_alerts
                ],
                alarms=alarms,
                notifications=self._notifications_line(),
            )

    def _notifications_line(self) -> str:
        n = self.alerts.summary()
        return f"sent {n['notifications_sent']}, failed {n['notifications_failed']}"

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
            machine_rules=[r.name for r in self.rules.rules if r.category == "machine"],
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
            "alarms": self.alerts.summary(),
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
