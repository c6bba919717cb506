"""One benchmark measurement in a process of its own: ``python -m plantwatch.bench.child SECTION``
reads its parameters as JSON on stdin and prints its result as one JSON line on stdout.

A process per measurement keeps the figures apart: peak RSS and CPU seconds are the
measurement's own, and one chDB folder per process is all chDB allows anyway.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from plantwatch.core.settings import KafkaSettings, Settings

if TYPE_CHECKING:
    from plantwatch.store import ClickHouseStore

log = logging.getLogger("plantwatch.bench")

_PAGE = 4096


def rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Sampler:
    """Samples ``fn()`` every ``every_s`` seconds in a thread: (seconds since start, value)."""

    def __init__(self, fn: Callable[[], float], every_s: float = 0.5) -> None:
        self.fn, self.every_s = fn, every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic() - self._t0, self.fn()))
            if self._stop.wait(self.every_s):
                return

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic() - self._t0, self.fn()))
        return self.samples


def memory_profile(samples: list[tuple[float, float]], warmup: float = 0.2) -> dict[str, Any]:
    """RSS over a run: after the first ``warmup`` share of it, where it started and ended."""
    if not samples:
        return {}
    end = samples[-1][0]
    steady = [v for t, v in samples if t >= warmup * end] or [samples[-1][1]]
    return {
        "rss_start_mb": round(steady[0], 1),
        "rss_end_mb": round(steady[-1], 1),
        "rss_max_mb": round(max(v for _, v in samples), 1),
        "rss_growth_mb": round(steady[-1] - steady[0], 1),
        "samples": len(samples),
    }


# -- the plant, as fast as it goes or at an offered load ------------------------------------------


class _Recorder:
    """Keeps every table the stream writes (Arrow IPC files), for the ceiling and the reference."""

    def __init__(self, folder: Path, insert: Callable[[str, pa.Table], None]) -> None:
        from plantwatch.stream.local import WRITE_ORDER

        self.folder, self._insert, self.tables = folder, insert, set(WRITE_ORDER)
        self.n = 0
        self.seconds = 0.0

    def __call__(self, table: str, data: pa.Table) -> None:
        if table in self.tables and data.num_rows:
            t0 = time.perf_counter()
            self.n += 1
            (self.folder / table).mkdir(parents=True, exist_ok=True)
            path = str(self.folder / table / f"{self.n:06d}.arrow")
            with pa.OSFile(path, "wb") as f, pa.ipc.new_file(f, data.schema) as w:
                w.write_table(data)
            self.seconds += time.perf_counter() - t0
        self._insert(table, data)


def plant_run(p: dict[str, Any]) -> dict[str, Any]:
    """``plantwatch run`` in this process: the embedded shape (``bus_url`` None) or through Kafka.

    Parameters: machines, rate_hz, sim_seconds (speed None) or wall_seconds and offered (readings
    per second: the speed follows), faults, rules_file, record_dir, max_batch_rows, bus_url.
    """
    from plantwatch.sim import build_plant
    from plantwatch.stream.embedded import EmbeddedPlant
    from plantwatch.stream.producer import RunOptions

    machines, rate, seed = int(p["machines"]), float(p.get("rate_hz", 1.0)), int(p.get("seed", 1))
    sensors = build_plant(machines, seed).sensor_count  # the plant the run builds
    speed = None if p.get("offered") is None else float(p["offered"]) / (sensors * rate)
    duration = float(p["sim_seconds"] if speed is None else p["wall_seconds"])
    with tempfile.TemporaryDirectory(prefix="plantwatch-bench-") as tmp:
        # The run's own store, rules and broker connection, whatever the environment says
        # (PLANTWATCH_STORE_URL or PLANTWATCH_RULES_FILE must not send simulated data or
        # notifications anywhere real); stream, SDK and spool settings apply as configured.
        update: dict[str, Any] = {
            "data_dir": Path(tmp) / "data",
            "store_url": None,
            "rules_file": Path(p["rules_file"]) if p.get("rules_file") else None,
            "kafka": KafkaSettings(),
        }
        if p.get("cache_dir"):
            update["cache_dir"] = Path(p["cache_dir"])
        settings = Settings().model_copy(update=update)
        if p.get("max_batch_rows"):
            stream = settings.stream.model_copy(update={"max_batch_rows": int(p["max_batch_rows"])})
            settings = settings.model_copy(update={"stream": stream})
        options = RunOptions(
            machines=machines,
            rate_hz=rate,
            duration_s=duration,
            speed=speed,
            seed=seed,
            faults=str(p.get("faults", "default")),
            bus_url=p.get("bus_url"),
        )
        plant = EmbeddedPlant(options, settings)
        recorder = None
        if p.get("record_dir"):
            recorder = _Recorder(Path(p["record_dir"]), plant.store.insert)
            plant.store.insert = recorder  # type: ignore[method-assign]
        try:
            m = plant.metrics

            def backlog() -> float:
                # readings the devices produced that are not yet accounted for downstream:
                # consumer lag, end to end, in readings
                c = m.counts
                return plant.produced.generated - c.stored - c.duplicates - sum(c.dead.values())

            rss = Sampler(rss_mb)
            lag = Sampler(backlog)
            cpu0 = time.process_time()
            plant.start_threads()
            while not plant.wait(0.5):
                pass
            drained = plant.stop()
            cpu = time.process_time() - cpu0
            lags, rsss = lag.stop(), rss.stop()
            if plant.errors:
                raise plant.errors[0]
            s = plant.summary()
        finally:
            plant.close()
    wall = s["run"]["wall_seconds"]
    stored = s["readings_stored"]
    return {
        "machines": machines,
        "sensors": sensors,
        "rate_hz": rate,
        "speed": "max" if speed is None else round(speed, 3),
        "offered_readings_per_s": p.get("offered"),
        "readings_generated": s["readings_generated"],
        "readings_stored": stored,
        "duplicates": s["duplicates_dropped"],
        "dead_letters": sum(s["dead_letters"].values()),
        "accounting_ok": s["accounting_ok"] and drained,
        "wall_seconds": wall,
        "readings_per_s": round(stored / wall) if wall else None,
        "cpu_seconds": round(cpu, 3),
        "cpu_s_per_million": round(cpu / max(1, s["readings_generated"]) * 1e6, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "memory": memory_profile(rsss),
        "backlog_readings": {
            "max": int(max(v for _, v in lags)),
            "mean": int(np.mean([v for _, v in lags])),
            "end": int(lags[-1][1]),
        },
        "latency_ms": s["latency_ms"],
        "notification_latency_ms": s["alarms"]["notification_latency_ms"],
        "notifications_sent": s["alarms"]["notifications_sent"],
        "alerts_fired": s["alerts_fired"],
        "faults_injected": len(s["faults_injected"]),
        "faults_detected": sum(
            f.get("detection_delay_s") is not None for f in s["faults_detected"]
        ),
        "recording_seconds": round(recorder.seconds, 3) if recorder else 0.0,
        "batches": s["run"]["batches"],
    }


# -- the ceiling and the reference, on the rows the plant stored ----------------------------------


@contextmanager
def fresh_store() -> Iterator[ClickHouseStore]:
    """A migrated chDB store in a temporary folder, removed afterwards."""
    from plantwatch.store import migrate, open_store

    with tempfile.TemporaryDirectory(prefix="plantwatch-bench-") as tmp:
        store = open_store(f"chdb://{tmp}/clickhouse")
        try:
            migrate(store)
            yield store
        finally:
            store.close()


def stored_readings(store: ClickHouseStore) -> int:
    return int(store.query_rows(f"SELECT count() FROM {store.database}.readings")[0][0])


def _recorded(folder: Path, table: str) -> pa.Table | None:
    files = sorted((folder / table).glob("*.arrow"))
    if not files:
        return None
    parts = [pa.ipc.open_file(pa.memory_map(str(f))).read_all() for f in files]
    return pa.concat_tables(parts, promote_options="permissive").combine_chunks()


def ceiling(p: dict[str, Any]) -> dict[str, Any]:
    """chDB ingesting the recorded tables straight from Arrow, in large inserts."""
    from plantwatch.stream.local import WRITE_ORDER

    folder, chunk = Path(p["record_dir"]), int(p.get("insert_rows", 1_000_000))
    tables = {t: _recorded(folder, t) for t in WRITE_ORDER}
    with fresh_store() as store:
        seconds: dict[str, float] = {}
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for name, t in tables.items():
            if t is None:
                continue
            s0 = time.perf_counter()
            for i in range(0, t.num_rows, chunk):
                store.insert(name, t.slice(i, chunk))
            seconds[name] = time.perf_counter() - s0
        total = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        stored = stored_readings(store)
    readings = tables["readings_ingest"]
    n = 0 if readings is None else readings.num_rows
    return {
        "readings": n,
        "rows_by_table": {k: (0 if v is None else v.num_rows) for k, v in tables.items()},
        "seconds": round(total, 3),
        "seconds_by_table": {k: round(v, 3) for k, v in seconds.items()},
        "readings_per_s": round(n / total) if total else None,
        "cpu_s_per_million": round(cpu / max(1, n) * 1e6, 3),
        "stored_check": int(stored),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def reference(p: dict[str, Any]) -> dict[str, Any]:
    """The seed-style path over the first ``limit`` recorded readings."""
    from plantwatch.bench.reference import device_records, run_reference

    readings = _recorded(Path(p["record_dir"]), "readings_ingest")
    if readings is None:
        raise SystemExit("no recorded readings: run the embedded measurement first")
    records = device_records(readings, p.get("limit"))
    with fresh_store() as store:
        cpu0 = time.process_time()
        r = run_reference(store, records, "readings_ingest")
        cpu = time.process_time() - cpu0
        stored = stored_readings(store)
    return {
        **{k: v for k, v in r.items() if k != "seconds"},
        "seconds": round(r["seconds"], 3),
        "readings_per_s": round(r["received"] / r["seconds"]) if r["seconds"] else None,
        "cpu_s_per_million": round(cpu / max(1, r["received"]) * 1e6, 3),
        "stored_check": int(stored),
    }


# -- batch size: the stream stage alone -----------------------------------------------------------


def batch_sizes(p: dict[str, Any]) -> dict[str, Any]:
    """Pipeline + chDB insert of one simulated table in batches of each size: readings/s."""
    from plantwatch.sim import Simulator, build_plant
    from plantwatch.stream import Pipeline
    from plantwatch.stream.local import write_output

    machines, sim_s = int(p["machines"]), float(p["sim_seconds"])
    plant = build_plant(machines, 1)
    start = 1_800_000_000.0
    table = Simulator(plant, start=start, rate_hz=1.0, faults=[], seed=1).step(start + sim_s).table
    seq = pa.array(np.arange(1, table.num_rows + 1), pa.uint64())  # unique per sensor too
    table = table.set_column(table.schema.get_field_index("seq"), "seq", seq)
    types = {m.machine_id: m.machine_type for m in plant.machines}
    now = int((start + sim_s) * 1000) + 1000
    points = []
    for size in p["sizes"]:
        with fresh_store() as store:
            pipeline = Pipeline(machine_types=types)
            t0 = time.perf_counter()
            for i in range(0, table.num_rows, size):
                write_output(store, pipeline.process(table.slice(i, size), now_ms=now))
            seconds = time.perf_counter() - t0
        points.append({"batch_rows": size, "readings_per_s": round(table.num_rows / seconds)})
    best = max(pt["readings_per_s"] for pt in points)
    saturates = next(pt["batch_rows"] for pt in points if pt["readings_per_s"] >= 0.9 * best)
    return {"readings": table.num_rows, "points": points, "saturates_at_batch_rows": saturates}


def _stream_stage(p: dict[str, Any]) -> dict[str, Any]:
    from plantwatch.bench.stages import stream_stage

    return stream_stage(p)


SECTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "plant": plant_run,
    "stream_stage": _stream_stage,
    "ceiling": ceiling,
    "reference": reference,
    "batch_sizes": batch_sizes,
}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    section = sys.argv[1]
    params = json.loads(sys.stdin.read() or "{}")
    result = SECTIONS[section](params)
    sys.stdout.write(json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main()
