"""Run what Grafana would run against a store: every dashboard query, and the alert rules over
the stored history compared with what the stream's alert engine fired."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import yaml

from plantwatch.grafana.export import Export
from plantwatch.grafana.macros import MacroError, QueryContext, expand, interval_for
from plantwatch.grafana.model import PanelQuery
from plantwatch.grafana.replay import Replay, replay
from plantwatch.store.client import ClickHouseStore
from plantwatch.store.errors import StoreError


@dataclass(frozen=True, slots=True)
class QueryResult:
    query: PanelQuery
    variables: Mapping[str, Sequence[str]]
    columns: tuple[str, ...]
    rows: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.columns == self.query.columns


def run_queries(
    store: ClickHouseStore, queries: Sequence[PanelQuery], from_ms: int, to_ms: int
) -> list[QueryResult]:
    """Every query of every dashboard over ``[from_ms, to_ms]``. Template variables take the
    values their own queries return (all of them; the first machine where one is chosen); a
    repeated panel runs once per value of its variable."""
    out: list[QueryResult] = []
    ctx = QueryContext(from_ms, to_ms, interval_for(from_ms, to_ms))
    by_board: dict[str, list[PanelQuery]] = {}
    for q in queries:
        by_board.setdefault(q.dashboard, []).append(q)
    for qs in by_board.values():
        single = any(q.panel == "variable: kind" for q in qs)
        variables: dict[str, list[str]] = {}
        for q in qs:
            if not q.panel.startswith("variable: "):
                continue
            res, table = _run(store, q, ctx, variables)
            out.append(res)
            values = [str(v) for v in table.column(0).to_pylist()] if table else []
            variables[q.ref_id] = values[:1] if single and q.ref_id == "machine" else values
        for q in qs:
            if q.panel.startswith("variable: "):
                continue
            runs = (
                [variables]
                if not q.repeat
                else [{**variables, q.repeat: [v]} for v in variables.get(q.repeat, [])]
            )
            for v in runs:
                out.append(_run(store, q, ctx, v)[0])
    return out


def _run(
    store: ClickHouseStore, q: PanelQuery, ctx: QueryContext, variables: Mapping[str, list[str]]
) -> tuple[QueryResult, pa.Table | None]:
    c = QueryContext(ctx.from_ms, ctx.to_ms, ctx.interval_ms, variables)
    try:
        table = store.query_arrow(expand(q.sql, c), read_only=True)
    except (MacroError, StoreError) as exc:  # reported per query
        return QueryResult(q, dict(variables), (), 0, f"{type(exc).__name__}: {exc}"), None
    return QueryResult(q, dict(variables), tuple(table.column_names), table.num_rows), table


@dataclass(frozen=True, slots=True)
class RuleComparison:
    grafana: set[tuple[str, str, str]]
    stream: set[tuple[str, str, str]]
    replay: Replay

    @property
    def same(self) -> bool:
        return self.grafana == self.stream


def stream_fired(store: ClickHouseStore) -> set[tuple[str, str, str]]:
    db = store.database
    rows = store.query_rows(
        f"SELECT DISTINCT rule, machine_id, sensor_id FROM {db}.alert_events WHERE state = 'firing'"
    )
    return {(str(r), str(m), str(s)) for r, m, s in rows}


def compare_rules(store: ClickHouseStore, export: Export) -> RuleComparison:
    """Replay the exported Grafana rules over every stored window (plus the rules' delay) and
    compare the (rule, machine, sensor) instances that fired with the stream's."""
    db = store.database
    lo, hi = store.query_rows(
        f"SELECT toUnixTimestamp64Milli(min(window_start)), toUnixTimestamp64Milli(max(window_end))"
        f" FROM {db}.features"
    )[0]
    rule_file = yaml.safe_load(export.files["alerting/rules.yaml"])
    delay_ms = max(cr.range_s[1] for cr in export.compiled) * 1000 if export.compiled else 0
    r = replay(store, rule_file, start_ms=int(lo) + delay_ms, end_ms=int(hi) + delay_ms)
    return RuleComparison(r.fired, stream_fired(store), r)
