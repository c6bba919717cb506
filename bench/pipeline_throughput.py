"""Measure the pipeline alone and the store's insert path on one simulated plant hour.

    .venv/bin/python bench/pipeline_throughput.py [--machines 50] [--batch 50000]

Prints JSON: readings per second through ``Pipeline.process`` (validation, de-duplication,
normalisation, windows, detectors, rules) and through the chDB insert of the processed rows
(landing table fanned out to raw, processed and rollups). Numbers are wall-clock on this machine;
the full benchmark suite is issue 9.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.core.codec import ts_ms
from plantwatch.sim import Simulator, build_plant, parse_fault_spec, schedule_faults
from plantwatch.store import migrate, open_store
from plantwatch.stream import Pipeline


def plant_hour(machines: int) -> pa.Table:
    plant = build_plant(machines, 1)
    start = 1_800_000_000.0
    faults = schedule_faults(plant, parse_fault_spec("default"), start=start, horizon_s=3600, seed=1)
    table = Simulator(plant, start=start, rate_hz=1.0, faults=faults, seed=1).step(start + 3600).table
    key = pc.binary_join_element_wise(table["machine_id"], table["sensor_id"], "/")
    codes = np.asarray(pc.dictionary_encode(key).combine_chunks().indices)
    order = np.argsort(codes, kind="stable")
    _, first, count = np.unique(codes[order], return_index=True, return_counts=True)
    seq = np.empty(len(codes), np.int64)
    seq[order] = np.arange(len(codes)) - np.repeat(first, count) + 1
    table = table.set_column(table.schema.get_field_index("seq"), "seq", pa.array(seq, pa.uint64()))
    return table.take(pa.array(np.argsort(ts_ms(table), kind="stable")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--machines", type=int, default=50)
    ap.add_argument("--batch", type=int, default=50_000)
    args = ap.parse_args()
    table = plant_hour(args.machines)
    machine_types = {m.machine_id: m.machine_type for m in build_plant(args.machines, 1).machines}
    pipeline = Pipeline(machine_types=machine_types)
    now = int(pc.max(table["ts"]).value) + 1000
    outs = []
    t0 = time.perf_counter()
    for i in range(0, table.num_rows, args.batch):
        outs.append(pipeline.process(table.slice(i, args.batch), now_ms=now))
    outs.append(pipeline.flush(now_ms=now))
    pipe_s = time.perf_counter() - t0
    readings = [o.readings for o in outs if o.readings.num_rows]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"chdb://{tmp}/clickhouse")
        migrate(store)
        t0 = time.perf_counter()
        for r in readings:
            store.insert("readings_ingest", r)
        store_s = time.perf_counter() - t0
        store.close()
    print(
        json.dumps(
            {
                "readings": table.num_rows,
                "batch_rows": args.batch,
                "pipeline_readings_per_s": round(table.num_rows / pipe_s),
                "store_insert_readings_per_s": round(sum(r.num_rows for r in readings) / store_s),
                "anomalies": sum(o.anomalies.num_rows for o in outs),
                "alert_events": sum(len(o.alerts) for o in outs),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
