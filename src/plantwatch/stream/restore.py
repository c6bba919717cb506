"""Rebuild stream state from what the store holds, after a restart.

De-duplication (which seqs of each sensor are stored, readings and keyed dead letters alike),
and for a full pipeline also the watermark, each sensor's baseline and when it was last seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from plantwatch.alert.rules import SEVERITY_RANK
from plantwatch.alert.state import Instance
from plantwatch.detect import RobustBaseline
from plantwatch.store import queries
from plantwatch.store.client import Store
from plantwatch.stream.dedupe import Deduper
from plantwatch.stream.pipeline import Pipeline
from plantwatch.stream.registry import SensorRegistry


@dataclass(frozen=True, slots=True)
class Restored:
    sensors: int
    gappy_sensors: int
    max_event_ms: int | None
    baselines: int
    alerts: int = 0  # alert instances pending, firing or recovering when the store was left


def restore_dedupe(
    store: Store, registry: SensorRegistry, deduper: Deduper
) -> tuple[list[queries.SensorHistory], int]:
    """Seen seqs per sensor, as the live state would hold them. Returns (histories, gappy)."""
    gappy = 0
    horizon = deduper.horizon
    histories = queries.sensor_histories(store)
    for h in histories:
        idx = registry.add(h.machine_id, h.sensor_id, h.kind)
        # As the live state would be: seqs start at 1 (or 0); a history that starts higher
        # and spans more than the horizon was cut below its oldest seq.
        floor = min(h.first - 1, 0) if h.first <= 1 or h.last <= horizon else h.first - 1
        if h.contiguous and floor == h.first - 1:
            deduper.restore(idx, floor=floor, contig=h.last, seen_above=[])
            continue
        gappy += 1
        floor = max(floor, h.last - horizon - 1)
        seen = queries.seqs_above(store, h.machine_id, h.sensor_id, floor)
        deduper.restore(idx, floor=floor, contig=floor, seen_above=seen)
    return histories, gappy


def restore_pipeline(store: Store, pipeline: Pipeline) -> Restored:
    """Everything a pipeline needs to carry on where the stored data ends."""
    p = pipeline
    p.register_machines(queries.machine_rows(store))
    histories, gappy = restore_dedupe(store, p.registry, p.deduper)
    for h in histories:
        if h.last_ts_ms >= 0:
            idx = p.registry.find(h.machine_id, h.sensor_id)
            if idx is not None:
                p.windows.restore_last_seen(idx, h.last_ts_ms)
    max_ms = queries.max_event_ms(store)
    if max_ms is not None:
        p.windows.restore_watermark(max_ms)
    baselines = 0
    scorer = next((d for d in p.detectors if isinstance(d, RobustBaseline)), None)
    if scorer is not None:
        for machine, sensor, means in queries.recent_window_means(store, scorer.history):
            found = p.registry.find(machine, sensor)
            if found is not None:
                scorer.restore(found, int(p.registry.kinds[found]), means)
                baselines += 1
    return Restored(len(histories), gappy, max_ms, baselines, restore_alerts(store, p))


def restore_alerts(store: Store, p: Pipeline) -> int:
    """Alert instances as the stored events left them: a restart neither forgets a firing
    alert nor fires it (and notifies) again."""
    window_ms = round(p.config.window_s * 1000)
    found = []
    for a in queries.open_alerts(store):
        idx = p.registry.find(a.machine_id, a.sensor_id)
        if idx is None:
            idx = p.registry.add(a.machine_id, a.sensor_id, a.kind)
        found.append(
            Instance(
                rule=a.rule,
                sensor=idx,
                state=a.state,
                active_since_ms=a.active_since_ms,
                # a recovering event is stamped at the end of the first clear window
                clear_since_ms=a.ts_ms - window_ms,
                level=SEVERITY_RANK.get(a.severity, 1),
            )
        )
    return p.alerts.restore(found)
