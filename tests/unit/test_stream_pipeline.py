"""The pipeline end to end on crafted batches: accounting, units, quality, detection, alerts,
lateness, and the same result however the input is cut into batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from plantwatch.core.reading import READING_SCHEMA
from plantwatch.stream import Output, Pipeline, PipelineConfig
from plantwatch.stream.outputs import AlertEvent

from batches import T0_MS, readings

PUMP = {"p1": "centrifugal_pump"}


def plant_batch(
    seconds: int, *, start_s: int = 0, vib: float = 2.0, temp_f: float = 100.0, seed: int = 0
) -> pa.Table:
    """A pump with a vibration sensor (mm/s) and a temperature sensor reporting in °F, 1 Hz."""
    rng = np.random.default_rng(seed + start_s)
    t = T0_MS + 1000 * np.arange(start_s, start_s + seconds)
    seq = np.arange(start_s + 1, start_s + seconds + 1)
    vib_t = readings(
        machine="p1",
        sensor="vib",
        kind="vibration",
        values=vib + rng.normal(0, 0.05, seconds),
        ts_ms=t,
        seq=seq,
    )
    tmp_t = readings(
        machine="p1",
        sensor="tmp",
        kind="temperature",
        unit="°F",
        values=temp_f + rng.normal(0, 0.2, seconds),
        ts_ms=t,
        seq=seq,
    )
    return pa.concat_tables([vib_t, tmp_t])


def feed(p: Pipeline, tables: list[pa.Table], *, flush: bool = True) -> list[Output]:
    outs = []
    for t in tables:
        now = int(pc.max(t.column("ts")).value) + 1000 if t.num_rows else T0_MS
        outs.append(p.process(t, now_ms=now))
    if flush:
        outs.append(p.flush(now_ms=T0_MS + 10**8))
    return outs


def cat(outs: list[Output], attr: str) -> pa.Table:
    return pa.concat_tables([getattr(o, attr) for o in outs])


def test_accounting_identity_on_a_messy_mix() -> None:
    rng = np.random.default_rng(11)
    n = 3000
    values = rng.normal(3, 1, n)
    values[rng.random(n) < 0.02] = np.nan
    units = np.where(rng.random(n) < 0.02, "g", "mm/s")
    seq = rng.integers(1, 2000, n)  # plenty of repeats
    ts = T0_MS + rng.integers(0, 600_000, n)
    ts[rng.random(n) < 0.01] += 10**9  # far future
    table = readings(
        machine="m",
        sensor=[f"s{i % 7}" for i in range(n)],
        values=values,
        unit=units.tolist(),
        ts_ms=ts,
        seq=seq.tolist(),
    )
    p = Pipeline()
    total = {"received": 0, "stored": 0, "dup": 0, "dead": 0}
    for chunk in range(0, n, 700):
        out = p.process(table.slice(chunk, 700), now_ms=T0_MS + 700_000)
        c = out.counts
        assert c.received == c.stored + c.duplicates + sum(c.dead.values())
        assert out.readings.num_rows == c.stored
        assert out.dead_letters.num_rows == sum(c.dead.values())
        total["received"] += c.received
        total["stored"] += c.stored
        total["dup"] += c.duplicates
        total["dead"] += sum(c.dead.values())
    assert total["received"] == n
    assert total["dup"] > 0 and total["dead"] > 0
    uniq = len({(f"s{i % 7}", int(q)) for i, q in enumerate(seq)})
    assert total["stored"] + total["dead"] == uniq  # every distinct key exactly once


def test_units_are_normalized_and_raw_values_kept() -> None:
    p = Pipeline(machine_types=PUMP)
    out = p.process(
        readings(machine="p1", sensor="tmp", kind="temperature", unit="°F", values=[212.0]),
        now_ms=T0_MS + 1000,
    )
    row = out.readings.to_pylist()[0]
    assert row["value"] == pytest.approx(100.0)
    assert row["unit"] == "°C"
    assert (row["raw_value"], row["raw_unit"]) == (212.0, "°F")
    assert row["machine_type"] == "centrifugal_pump"


def test_out_of_range_is_stored_bad_left_out_of_features_and_alerted() -> None:
    p = Pipeline(machine_types=PUMP)
    batch = plant_batch(120)
    rows = batch.to_pylist()
    rows[50]["value"] = -9999.0  # vibration glitch at t=50 s
    outs = feed(p, [pa.Table.from_pylist(rows, schema=READING_SCHEMA)])
    stored = cat(outs, "readings").to_pylist()
    glitch = [r for r in stored if r["raw_value"] == -9999.0]
    assert len(glitch) == 1 and glitch[0]["quality"] == "bad"
    feats = cat(outs, "features").to_pylist()
    assert min(f["min"] for f in feats if f["sensor_id"] == "vib") > 0  # not in the statistics
    alerts = [a for o in outs for a in o.alerts]
    assert any(
        a.rule == "sensor_out_of_range" and a.state == "firing" and a.sensor_id == "vib"
        for a in alerts
    )


def test_a_vibration_step_fires_limit_and_baseline_alerts_after_their_for_duration() -> None:
    p = Pipeline(machine_types=PUMP)
    outs = feed(
        p, [plant_batch(300), plant_batch(120, start_s=300, vib=9.0), plant_batch(300, start_s=420)]
    )
    alerts = [a for o in outs for a in o.alerts if a.sensor_id == "vib"]
    fired: dict[str, AlertEvent] = {}
    for a in alerts:
        if a.state == "firing":
            fired.setdefault(a.rule, a)
    assert set(fired) == {"vibration_zone", "baseline_deviation"}
    step_ms = T0_MS + 300_000
    # limit rule: for 20 s, so it fires at the end of the second 10 s window of the step
    assert fired["vibration_zone"].ts_ms == step_ms + 20_000
    assert fired["vibration_zone"].severity == "critical"  # 9 mm/s > 7.1 (ISO zone D)
    assert fired["vibration_zone"].labels["machine_type"] == "centrifugal_pump"
    assert fired["vibration_zone"].annotations["runbook_url"].startswith("https://")
    assert fired["baseline_deviation"].ts_ms >= step_ms + 30_000
    pending = [a for a in alerts if a.rule == "vibration_zone" and a.state == "pending"]
    assert pending[0].ts_ms == step_ms + 10_000  # pending from the first window over the limit
    assert {a.rule for a in alerts if a.state == "resolved"} >= {"vibration_zone"}
    assert not [
        a for o in outs for a in o.alerts if a.sensor_id == "tmp"
    ]  # the other sensor is calm


def test_stopped_sensor_raises_no_data_and_resolves_when_it_returns() -> None:
    p = Pipeline(machine_types=PUMP, config=PipelineConfig(no_data_after_s=60))
    quiet = plant_batch(180, start_s=200).filter(
        pc.equal(plant_batch(180, start_s=200).column("sensor_id"), "vib")
    )
    outs = feed(p, [plant_batch(200), quiet, plant_batch(100, start_s=380)])
    alerts = [a for o in outs for a in o.alerts if a.rule == "sensor_no_data"]
    assert [(a.sensor_id, a.state) for a in alerts] == [("tmp", "firing"), ("tmp", "resolved")]
    assert alerts[0].ts_ms - (T0_MS + 199_000) > 60_000


def test_stuck_sensor_alerts() -> None:
    p = Pipeline(machine_types=PUMP)
    stuck = plant_batch(200, start_s=200)
    frozen = pc.if_else(pc.equal(stuck.column("sensor_id"), "vib"), 2.5, stuck.column("value"))
    stuck = stuck.set_column(stuck.schema.get_field_index("value"), "value", frozen)
    outs = feed(p, [plant_batch(200), stuck])
    fired = [a for o in outs for a in o.alerts if a.rule == "sensor_stuck" and a.state == "firing"]
    assert [a.sensor_id for a in fired] == ["vib"]


def test_late_readings_are_stored_flagged_and_counted() -> None:
    p = Pipeline(machine_types=PUMP)
    first = plant_batch(200)
    late = first.filter(
        pc.less(first.column("ts"), pa.scalar(T0_MS + 100_000, first.column("ts").type))
    )
    on_time = first.filter(
        pc.greater_equal(first.column("ts"), pa.scalar(T0_MS + 100_000, first.column("ts").type))
    )
    outs = feed(p, [on_time, late], flush=False)
    assert outs[1].counts.late == late.num_rows
    assert outs[1].readings.column("late").to_pylist() == [1] * late.num_rows
    assert outs[0].counts.late == 0


def test_same_records_whatever_the_batching() -> None:
    data = pa.concat_tables([plant_batch(400), plant_batch(50)])  # second part all duplicates

    def keyed(outs: list[Output]) -> tuple[set[tuple[object, ...]], int]:
        r = cat(outs, "readings").select(
            ["machine_id", "sensor_id", "seq", "value", "unit", "quality"]
        )
        return {tuple(row.values()) for row in r.to_pylist()}, sum(
            o.counts.duplicates for o in outs
        )

    whole = keyed(feed(Pipeline(machine_types=PUMP), [data]))
    pieces = keyed(
        feed(Pipeline(machine_types=PUMP), [data.slice(i, 97) for i in range(0, data.num_rows, 97)])
    )
    assert whole == pieces
    assert whole[1] == 100
