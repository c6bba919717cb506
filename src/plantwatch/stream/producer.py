"""The simulated plant's devices: simulator → edge SDK → a transport.

:class:`PlantProducer` is what ``plantwatch run`` and ``plantwatch simulate`` share: the plant,
its faults, the simulator, the SDK's spool and client, and the loop that feeds them at the
chosen speed. Where the readings go is the transport's business (in-process bus or Kafka).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from plantwatch.core.clock import SimulatedClock
from plantwatch.core.errors import ConfigError
from plantwatch.core.settings import Settings
from plantwatch.edge import Batching, EdgeClient, Spool, SpoolLimits
from plantwatch.edge.transport import Transport
from plantwatch.sim import (
    Fault,
    FaultKind,
    FaultPlan,
    Plant,
    Simulator,
    parse_fault_spec,
    schedule_faults,
)

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
    bus_url: str | None = None  # None: in-process bus; kafka://host:port: Apache Kafka
    log_alerts: bool = False

    def sim_horizon_s(self) -> float:
        """Simulated seconds the run covers (one hour when it runs until stopped)."""
        if self.duration_s is None:
            return 3600.0
        return self.duration_s if self.speed is None else self.duration_s * self.speed


@dataclass(slots=True)
class Produced:
    generated: int = 0
    sdk: int = 0
    forwarded: int = 0
    duplicates_sent: int = 0
    issues: dict[str, int] = field(default_factory=dict)
    sim_time: float = 0.0


def read_plant_clock(path: Path) -> float:
    try:
        return float(json.loads(path.read_text())["t"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def write_plant_clock(path: Path, t: float) -> None:
    """Remember how far the simulated plant got, so a restart never re-uses plant time."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"t": t}))
    os.replace(tmp, path)


def schedule_run_faults(plant: Plant, options: RunOptions, start: float) -> list[Fault]:
    """The faults of a run. A run without --duration gets the spec once per simulated hour,
    for a day. An explicit spec that does not fit is an error; the default one shrinks to what
    fits the run (one of each kind, then none) and says so."""
    if options.duration_s is not None:
        return _schedule_window(plant, options, start, options.sim_horizon_s(), options.seed)
    out: list[Fault] = []
    for hour in range(24):
        out += _schedule_window(plant, options, start + 3600.0 * hour, 3600.0, options.seed + hour)
    return out


def _schedule_window(
    plant: Plant, o: RunOptions, start: float, horizon: float, seed: int
) -> list[Fault]:
    plan = parse_fault_spec(o.faults)
    try:
        return schedule_faults(plant, plan, start=start, horizon_s=horizon, seed=seed)
    except ConfigError:
        if not plan.use_default:
            raise
    smaller = FaultPlan(counts=tuple((k, 1) for k in FaultKind))
    try:
        faults = schedule_faults(plant, smaller, start=start, horizon_s=horizon, seed=seed)
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


class PlantProducer:
    """The plant's devices, feeding ``transport`` through the edge SDK's spool."""

    def __init__(
        self,
        *,
        plant: Plant,
        options: RunOptions,
        settings: Settings,
        data_dir: Path,
        transport: Transport,
        clock: SimulatedClock,
        start: float,
    ) -> None:
        self.plant, self.options, self.settings = plant, options, settings
        self.clock, self.start = clock, start
        self.clock_file = data_dir / "plant-clock.json"
        self.faults = schedule_run_faults(plant, options, start)
        self.sim = Simulator(
            plant, start=start, rate_hz=options.rate_hz, faults=self.faults, seed=options.seed
        )
        sp = settings.spool
        self.spool = Spool(
            data_dir / "spool",
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
            transport=transport,
            clock=clock,
            batching=Batching(
                max_readings=settings.batching.max_readings,
                max_delay_s=settings.batching.max_delay_s,
            ),
        )
        self.produced = Produced(sim_time=start)

    def chunk_s(self) -> float:
        """Simulated seconds per step: about 0.1 s of wall time (as fast as possible: about
        20,000 readings, at most a simulated minute)."""
        o = self.options
        sensors = max(1, self.plant.sensor_count)
        chunk = min(20_000 / (sensors * o.rate_hz), 60.0) if o.speed is None else 0.1 * o.speed
        return max(chunk, 1.0 / o.rate_hz)

    def run(self, stop: threading.Event) -> None:
        """Produce until the run's duration is reached or ``stop`` is set."""
        o = self.options
        chunk_s = self.chunk_s()
        end = self.start + o.sim_horizon_s() if o.duration_s is not None else math.inf
        t = self.start
        p = self.produced
        while not stop.is_set() and t < end:
            nxt = min(t + chunk_s, end)
            if not self.clock.sleep_until(nxt, stop):
                break
            write_plant_clock(self.clock_file, nxt)  # before any of the chunk is accepted
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

    def drain(self, timeout: float) -> bool:
        """Flush the SDK and wait until its spool is fully acknowledged."""
        self.client.flush()
        drained = self.client.drain(timeout)
        if not drained:
            log.error(
                "the spool did not drain in %.0f s; pending readings stay in %s and are sent on "
                "the next start",
                timeout,
                self.spool_dir,
            )
        return drained

    @property
    def spool_dir(self) -> Path:
        return self.clock_file.parent / "spool"

    def close(self) -> None:
        self.client.close()
