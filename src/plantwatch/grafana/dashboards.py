"""The four plant dashboards, built with grafana-foundation-sdk.

Every query is a :class:`~plantwatch.grafana.model.PanelQuery` first (SQL and the columns its
panel reads), so the tests run exactly what the dashboards hold. Time series read raw rows for
ranges up to :data:`RAW_MAX_S`, the 1-minute rollup up to :data:`MINUTE_MAX_S` and the 1-hour
rollup beyond: one query with three branches, of which ClickHouse runs the one whose range
condition holds (the others are constant-false and read nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from grafana_foundation_sdk.builders import bargauge, dashboard, stat, table, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from plantwatch.alert.rules import SEVERITIES, Rule, Threshold
from plantwatch.grafana.model import DATASOURCE, PanelQuery, Query

RAW_MAX_S = 6 * 3600
MINUTE_MAX_S = 14 * 86400
_SPAN = "dateDiff('second', $__fromTime, $__toTime)"
RAW = f"{_SPAN} <= {RAW_MAX_S}"
MINUTE = f"{_SPAN} > {RAW_MAX_S} AND {_SPAN} <= {MINUTE_MAX_S}"
HOUR = f"{_SPAN} > {MINUTE_MAX_S}"
_SEV = "[" + ", ".join(f"'{s}'" for s in SEVERITIES) + "]"
MACHINES = (
    "machine_id IN (SELECT machine_id FROM {db}.machines FINAL WHERE site IN (${site:singlequote})"
    " AND line IN (${line:singlequote}) AND machine_id IN (${machine:singlequote}))"
)
LIMIT_SOURCES = ("value", "mean", "min", "max", "last", "rms")

UIDS = {
    "overview": "plantwatch-overview",
    "machine": "plantwatch-machine",
    "sensors": "plantwatch-sensor-health",
    "pipeline": "plantwatch-pipeline",
}


def _sql(text: str, db: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines()).replace("{db}", db)


def limits_values(rules: Sequence[Rule]) -> str:
    """The static limits of threshold rules on window values, per machine type and kind, as a
    ClickHouse ``VALUES`` table (``*``: any machine type). Rules that select by machine, sensor,
    line, site or labels are left out: a panel per machine cannot say which of its sensors
    they cover."""
    rows = []
    for r in rules:
        c, s = r.condition, r.select
        if not isinstance(c, Threshold) or c.source not in LIMIT_SOURCES or not s.kind:
            continue
        if s.machine or s.sensor or s.line or s.site or s.labels:
            continue
        for mt in s.machine_type or ("*",):
            for kind in s.kind:
                for lv in c.levels:
                    for bound in (lv.low, lv.high):
                        if abs(bound) != float("inf"):
                            rows.append(
                                f"('{r.name}', '{mt}', '{kind}', '{lv.severity}', {bound!r})"
                            )
    if not rows:
        rows.append("('', '', '', '', 0)")
    return (
        "VALUES('rule String, machine_type String, kind String, severity String, "
        "limit Float64', " + ", ".join(rows) + ")"
    )


# -- variables --------------------------------------------------------------------------------


def variable_queries(uid: str, db: str, *, machine_multi: bool) -> list[PanelQuery]:
    q = [
        ("site", "SELECT DISTINCT site FROM {db}.machines FINAL ORDER BY site", ("site",)),
        (
            "line",
            "SELECT DISTINCT line FROM {db}.machines FINAL WHERE site IN (${site:singlequote})"
            " ORDER BY line",
            ("line",),
        ),
        (
            "machine",
            "SELECT machine_id FROM {db}.machines FINAL WHERE site IN (${site:singlequote})"
            " AND line IN (${line:singlequote}) ORDER BY machine_id",
            ("machine_id",),
        ),
    ]
    return [PanelQuery(uid, f"variable: {n}", n, _sql(s, db), "table", c) for n, s, c in q] + (
        []
        if machine_multi
        else [
            PanelQuery(
                uid,
                "variable: kind",
                "kind",
                _sql(
                    "SELECT DISTINCT kind FROM {db}.readings_1h"
                    " WHERE machine_id = '${machine}' ORDER BY kind",
                    db,
                ),
                "table",
                ("kind",),
            )
        ]
    )


def _variables(
    b: dashboard.Dashboard, queries: list[PanelQuery], *, machine_multi: bool
) -> dashboard.Dashboard:
    for q in queries:
        name = q.ref_id
        multi = name != "machine" or machine_multi
        v = (
            dashboard.QueryVariable(name)
            .label(name.capitalize())
            .datasource(DATASOURCE)
            .query(q.sql)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(multi)
            .include_all(multi)
        )
        if multi:  # everything selected until someone narrows it (a repeat shows every kind)
            v = v.current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
        if name == "kind":
            v = v.hide(dm.VariableHide.HIDE_VARIABLE)
        b = b.with_variable(v)
    return b


def _base(
    bd: _Board,
    title: str,
    description: str,
    *,
    machine_multi: bool | None = None,
) -> dashboard.Dashboard:
    """A plantwatch dashboard; with ``machine_multi`` set, also the site, line and machine
    variables (and kind, for one machine), their queries first in ``bd.queries``."""
    b = (
        dashboard.Dashboard(title)
        .uid(bd.uid)
        .description(description)
        .tags(["plantwatch"])
        .editable()
        .timezone("browser")
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
    )
    if machine_multi is None:
        return b
    queries = variable_queries(bd.uid, bd.db, machine_multi=machine_multi)
    bd.queries[:0] = queries
    return _variables(b, queries, machine_multi=machine_multi)


def _ts(title: str, q: PanelQuery, *, unit: str = "", w: int = 12, h: int = 8) -> timeseries.Panel:
    p = (
        timeseries.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(Query(q.ref_id, q.sql, q.kind))
        .span(w)
        .height(h)
        .fill_opacity(8)
        .show_points(common.VisibilityMode.NEVER)
    )
    return p.unit(unit) if unit else p


def _table(title: str, q: PanelQuery, *, w: int = 12, h: int = 8) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(Query(q.ref_id, q.sql, q.kind))
        .span(w)
        .height(h)
    )


class _Board:
    """Collects a dashboard's panels and their queries."""

    def __init__(self, uid: str, db: str) -> None:
        self.uid, self.db = uid, db
        self.queries: list[PanelQuery] = []

    def q(
        self, panel: str, sql: str, columns: Iterable[str], kind: str = "table", repeat: str = ""
    ) -> PanelQuery:
        pq = PanelQuery(
            self.uid, panel, "A", _sql(sql, self.db), cast(Any, kind), tuple(columns), repeat
        )
        self.queries.append(pq)
        return pq


def _tiered(where: str, group: str, raw: str, rollup: str, *, raw_time: str = "ts") -> str:
    """One SELECT per resolution, joined by UNION ALL: raw readings (time column ``raw_time``)
    up to :data:`RAW_MAX_S` of range, the 1-minute rollup up to :data:`MINUTE_MAX_S`, the
    1-hour rollup beyond. Only the branch whose range condition holds reads anything. ``raw``
    and ``rollup`` are the select lists after ``time`` (``{bucket}`` in ``rollup``: the
    rollup's step in seconds); ``where`` and ``group`` apply to every branch."""
    branches = []
    for source, col, span, bucket in (
        ("readings", raw_time, RAW, 1),
        ("readings_1m", "minute", MINUTE, 60),
        ("readings_1h", "hour", HOUR, 3600),
    ):
        select = raw if bucket == 1 else rollup.format(bucket=bucket)
        branches.append(
            f"  SELECT $__timeInterval({col}) AS time, {select}\n"
            f"  FROM {{db}}.{source}\n"
            f"  WHERE $__timeFilter({col}) AND {where} AND {span}\n"
            f"  GROUP BY {group}"
        )
    return "\n  UNION ALL\n".join(branches)


def _stored_rate_sql() -> str:
    tiers = _tiered(
        MACHINES,
        "time",
        "count() / $__interval_s AS readings_per_s",
        "sum(count) / greatest($__interval_s, {bucket}) AS readings_per_s",
        raw_time="ingested_at",
    )
    return f"SELECT time, readings_per_s FROM (\n{tiers}\n)\nORDER BY time"


def overview(db: str) -> tuple[dashboard.Dashboard, list[PanelQuery]]:
    bd = _Board(UIDS["overview"], db)
    machines = bd.q(
        "Machines",
        f"""
SELECT m.machine_id AS machine, m.line AS line, m.machine_type AS type,
       if(a.active = 0, 'ok', a.worst) AS health, a.active AS active_alarms,
       if(r.readings = 0, NULL, dateDiff('second', r.last_ts, $__toTime)) AS seconds_since_data
FROM (
  SELECT machine_id, line, machine_type FROM {{db}}.machines FINAL
  WHERE site IN (${{site:singlequote}}) AND line IN (${{line:singlequote}})
    AND machine_id IN (${{machine:singlequote}})
) AS m
LEFT JOIN (
  SELECT machine_id, count() AS active, {_SEV}[max(indexOf({_SEV}, severity))] AS worst
  FROM {{db}}.alarms WHERE status = 'ACTIVE' GROUP BY machine_id
) AS a ON a.machine_id = m.machine_id
LEFT JOIN (
  SELECT machine_id, max(ts) AS last_ts, count() AS readings FROM {{db}}.readings
  WHERE $__timeFilter(ts) GROUP BY machine_id
) AS r ON r.machine_id = m.machine_id
ORDER BY indexOf({_SEV}, health) DESC, machine""",
        ("machine", "line", "type", "health", "active_alarms", "seconds_since_data"),
    )
    by_sev = bd.q(
        "Active alarms by severity",
        f"""
SELECT severity, count() AS alarms FROM {{db}}.alarms
WHERE status = 'ACTIVE' AND {MACHINES}
GROUP BY severity ORDER BY indexOf({_SEV}, severity) DESC""",
        ("severity", "alarms"),
    )
    fresh = bd.q(
        "Data freshness: oldest last reading",
        f"""
SELECT max(age) AS seconds_since_data FROM (
  SELECT machine_id, dateDiff('second', max(ts), $__toTime) AS age FROM {{db}}.readings
  WHERE $__timeFilter(ts) AND {MACHINES} GROUP BY machine_id
)""",
        ("seconds_since_data",),
    )
    rate = bd.q("Ingest rate", _stored_rate_sql(), ("time", "readings_per_s"), "timeseries")
    events = bd.q(
        "Recent alert events",
        f"""
SELECT ts AS time, rule, state, severity, machine_id AS machine, sensor_id AS sensor, message
FROM {{db}}.alert_events
WHERE $__timeFilter(ts) AND {MACHINES}
ORDER BY ts DESC LIMIT 200""",
        ("time", "rule", "state", "severity", "machine", "sensor", "message"),
    )
    b = _base(
        bd,
        "Plant overview",
        "Every machine's health (its worst active alarm), active alarms by severity, data "
        "freshness and the ingest rate.",
        machine_multi=True,
    )
    b = b.with_panel(
        _table("Machines", machines, w=16, h=10).description(
            "health: the most severe active alarm (ok: none); seconds since data: to the end "
            "of the time range"
        )
    )
    b = b.with_panel(
        bargauge.Panel()
        .title("Active alarms by severity")
        .datasource(DATASOURCE)
        .with_target(Query(by_sev.ref_id, by_sev.sql, by_sev.kind))
        .span(8)
        .height(10)
    )
    b = b.with_panel(
        stat.Panel()
        .title("Data freshness: oldest last reading")
        .datasource(DATASOURCE)
        .with_target(Query(fresh.ref_id, fresh.sql, fresh.kind))
        .unit("s")
        .thresholds(
            dashboard.ThresholdsConfig()
            .mode(dm.ThresholdsMode.ABSOLUTE)
            .steps(
                [
                    dm.Threshold(value=None, color="green"),
                    dm.Threshold(value=60.0, color="orange"),
                    dm.Threshold(value=300.0, color="red"),
                ]
            )
        )
        .span(6)
        .height(8)
    )
    b = b.with_panel(_ts("Ingest rate (readings/s stored)", rate, unit="short", w=18))
    b = b.with_panel(_table("Recent alert events", events, w=24))
    return b, bd.queries


def machine_detail(db: str, rules: Sequence[Rule]) -> tuple[dashboard.Dashboard, list[PanelQuery]]:
    bd = _Board(UIDS["machine"], db)
    # each sensor's mean (good readings) and its anomaly score, from one scan per resolution
    tiers = _tiered(
        "machine_id = '${machine}' AND kind = '${kind}'",
        "time, sensor_id",
        "sensor_id, avgIf(value, quality != 'bad') AS v, toFloat64(max(anomaly_score)) AS sc",
        "sensor_id, sum(sum) / sum(count) AS v, toFloat64(max(anomaly_score_max)) AS sc",
    )
    series = bd.q(
        "${kind}",
        f"""
SELECT time, series, value FROM (
  SELECT time, s.1 AS series, s.2 AS value FROM (
{tiers}
  )
  ARRAY JOIN [(sensor_id, v), (concat(sensor_id, ' score'), sc)] AS s
  WHERE NOT isNaN(value)
  UNION ALL
  SELECT t AS time, concat('limit ', l.severity, ' (', l.rule, ')') AS series, l.limit AS value
  FROM (SELECT arrayJoin([$__fromTime, $__toTime]) AS t) AS edges
  CROSS JOIN (
    SELECT rule, severity, limit FROM {limits_values(rules)}
    WHERE kind = '${{kind}}' AND (machine_type = '*' OR machine_type IN (
      SELECT machine_type FROM {{db}}.machines FINAL WHERE machine_id = '${{machine}}'))
  ) AS l
)
ORDER BY time, series""",
        ("time", "series", "value"),
        "timeseries",
        repeat="kind",
    )
    alarms = bd.q(
        "Alarms",
        """
SELECT created_at AS time, rule, sensor_id AS sensor, severity, status, ack, assignee, message
FROM {db}.alarms
WHERE machine_id = '${machine}' AND (status = 'ACTIVE' OR cleared_at >= $__fromTime)
ORDER BY status = 'ACTIVE' DESC, created_at DESC LIMIT 200""",
        ("time", "rule", "sensor", "severity", "status", "ack", "assignee", "message"),
    )
    feats = bd.q(
        "Latest window features",
        """
SELECT sensor_id AS sensor, kind, max(window_start) AS latest_window,
       argMax(count, window_start) AS count, argMax(mean, window_start) AS mean,
       argMax(std, window_start) AS std, argMax(min, window_start) AS min,
       argMax(max, window_start) AS max, argMax(rms, window_start) AS rms
FROM {db}.features FINAL
WHERE machine_id = '${machine}' AND $__timeFilter(window_start)
GROUP BY sensor, kind ORDER BY kind, sensor""",
        ("sensor", "kind", "latest_window", "count", "mean", "std", "min", "max", "rms"),
    )
    models = bd.q(
        "Model anomalies",
        """
SELECT ts AS time, model_version, severity, sensor_id AS most_unusual, score, threshold, message
FROM {db}.anomalies FINAL
WHERE machine_id = '${machine}' AND startsWith(detector, 'model:') AND $__timeFilter(ts)
ORDER BY ts DESC LIMIT 200""",
        ("time", "model_version", "severity", "most_unusual", "score", "threshold", "message"),
    )
    note = bd.q(
        "annotation: Alarms",
        """
SELECT created_at AS time, if(status = 'CLEARED', cleared_at, $__toTime) AS timeEnd,
       concat(severity, ' ', rule, ' on ', sensor_id, ': ', message) AS text,
       concat(severity, ',', rule) AS tags
FROM {db}.alarms
WHERE machine_id = '${machine}' AND created_at <= $__toTime
  AND (status = 'ACTIVE' OR cleared_at >= $__fromTime)""",
        ("time", "timeEnd", "text", "tags"),
    )
    b = _base(
        bd,
        "Machine detail",
        "Every sensor of one machine by kind, with the rules' limits (dashed) and the anomaly "
        "score (right axis); alarms as annotations; the latest window features; what the "
        "pre-trained model of the machine's type flagged, with its version.",
        machine_multi=False,
    )
    b = b.annotation(
        dashboard.AnnotationQuery()
        .name("Alarms")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("red")
        # the SDK types the target as Grafana's built-in annotation target; the plugin reads
        # a query there
        .target(cast(Any, Query("Anno", note.sql, note.kind)))
    )
    limit_style = [
        dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
        dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"}),
    ]
    score_style = [
        dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
        dm.DynamicConfigValue(id_val="custom.drawStyle", value="bars"),
        dm.DynamicConfigValue(id_val="unit", value="none"),
    ]
    b = b.with_panel(
        _ts("${kind}", series, w=24, h=9)
        .repeat("kind")
        .repeat_direction("v")
        .override_by_regexp("/^limit /", limit_style)
        .override_by_regexp("/ score$/", score_style)
    )
    b = b.with_panel(_table("Alarms", alarms, w=12))
    b = b.with_panel(_table("Latest window features", feats, w=12))
    b = b.with_panel(_table("Model anomalies", models, w=24, h=7))
    return b, bd.queries


def sensor_health(db: str, no_data_after_s: float) -> tuple[dashboard.Dashboard, list[PanelQuery]]:
    bd = _Board(UIDS["sensors"], db)
    stuck = bd.q(
        "Stuck sensors",
        f"""
SELECT machine_id AS machine, sensor_id AS sensor, kind, count() AS stuck_windows,
       max(window_end) AS last_stuck, argMax(last, window_end) AS value
FROM {{db}}.features FINAL
WHERE $__timeFilter(window_start) AND {MACHINES} AND count >= 3 AND max = min
GROUP BY machine, sensor, kind ORDER BY stuck_windows DESC LIMIT 200""",
        ("machine", "sensor", "kind", "stuck_windows", "last_stuck", "value"),
    )
    silent = bd.q(
        "Silent sensors",
        f"""
SELECT machine_id AS machine, sensor_id AS sensor, kind, max(ts) AS last_reading,
       dateDiff('second', max(ts), $__toTime) AS silent_s
FROM {{db}}.readings
WHERE ts >= $__fromTime - INTERVAL 1 DAY AND ts <= $__toTime AND {MACHINES}
GROUP BY machine, sensor, kind
HAVING silent_s > {no_data_after_s:g}
ORDER BY silent_s DESC LIMIT 200""",
        ("machine", "sensor", "kind", "last_reading", "silent_s"),
    )
    oor = bd.q(
        "Out-of-range readings",
        f"""
SELECT $__timeInterval(ts) AS time, concat(machine_id, '/', sensor_id) AS series,
       count() AS readings
FROM {{db}}.readings
WHERE $__timeFilter(ts) AND {MACHINES} AND quality = 'bad'
GROUP BY time, series ORDER BY time""",
        ("time", "series", "readings"),
        "timeseries",
    )
    late = bd.q(
        "Late readings",
        f"""
SELECT $__timeInterval(ts) AS time, concat(machine_id, '/', sensor_id) AS series,
       count() AS readings
FROM {{db}}.readings
WHERE $__timeFilter(ts) AND {MACHINES} AND late = 1
GROUP BY time, series ORDER BY time""",
        ("time", "series", "readings"),
        "timeseries",
    )
    dead = bd.q(
        "Dead letters by reason",
        """
SELECT $__timeInterval(received_at) AS time, reason, count() AS letters
FROM {db}.dead_letters
WHERE $__timeFilter(received_at)
  AND (machine_id IN (${machine:singlequote}) OR machine_id NOT IN (
       SELECT machine_id FROM {db}.machines FINAL))
GROUP BY time, reason ORDER BY time""",
        ("time", "reason", "letters"),
        "timeseries",
    )
    active = bd.q(
        "Sensor alarms",
        f"""
SELECT created_at AS since, rule, machine_id AS machine, sensor_id AS sensor, severity, ack,
       message
FROM {{db}}.alarms
WHERE status = 'ACTIVE' AND {MACHINES}
  AND rule IN ('sensor_stuck', 'sensor_no_data', 'sensor_out_of_range')
ORDER BY created_at DESC LIMIT 200""",
        ("since", "rule", "machine", "sensor", "severity", "ack", "message"),
    )
    b = _base(
        bd,
        "Sensor health",
        "Sensors that cannot be trusted: stuck (identical readings), silent, out of physical "
        "range, late; dead letters by reason (readings of unknown machines count for every "
        "selection).",
        machine_multi=True,
    )
    b = b.with_panel(_table("Stuck sensors", stuck))
    b = b.with_panel(_table(f"Silent sensors (no reading for {no_data_after_s:g} s)", silent))
    b = b.with_panel(_ts("Out-of-range readings", oor, unit="short"))
    b = b.with_panel(_ts("Late readings", late, unit="short"))
    b = b.with_panel(_ts("Dead letters by reason", dead, unit="short"))
    b = b.with_panel(_table("Active sensor alarms", active))
    return b, bd.queries


def pipeline(db: str) -> tuple[dashboard.Dashboard, list[PanelQuery]]:
    bd = _Board(UIDS["pipeline"], db)
    flow = bd.q(
        "Readings/s received and stored",
        """
SELECT time, series, sum(n) / $__interval_s AS per_s FROM (
  SELECT $__timeInterval(ingested_at) AS time, 'stored' AS series, count() AS n
  FROM {db}.readings WHERE $__timeFilter(ingested_at) GROUP BY time
  UNION ALL
  SELECT $__timeInterval(ingested_at) AS time, 'received' AS series, count() AS n
  FROM {db}.readings WHERE $__timeFilter(ingested_at) GROUP BY time
  UNION ALL
  SELECT $__timeInterval(received_at) AS time, 'received' AS series, count() AS n
  FROM {db}.dead_letters WHERE $__timeFilter(received_at) GROUP BY time
)
GROUP BY time, series ORDER BY time""",
        ("time", "series", "per_s"),
        "timeseries",
    )
    dead = bd.q(
        "Dead letters by reason",
        """
SELECT $__timeInterval(received_at) AS time, reason, count() / $__interval_s AS per_s
FROM {db}.dead_letters WHERE $__timeFilter(received_at)
GROUP BY time, reason ORDER BY time""",
        ("time", "reason", "per_s"),
        "timeseries",
    )
    inserts = bd.q(
        "Store inserts",
        """
SELECT $__timeInterval(ingested_at) AS time,
       uniqExact(ingested_at) / $__interval_s AS inserts_per_s,
       count() / greatest(uniqExact(ingested_at), 1) AS rows_per_insert
FROM {db}.readings WHERE $__timeFilter(ingested_at)
GROUP BY time ORDER BY time""",
        ("time", "inserts_per_s", "rows_per_insert"),
        "timeseries",
    )
    delay = bd.q(
        "Reading to stored delay",
        """
SELECT $__timeInterval(ingested_at) AS time,
       quantile(0.5)(dateDiff('millisecond', ts, ingested_at) / 1000) AS p50_s,
       quantile(0.99)(dateDiff('millisecond', ts, ingested_at) / 1000) AS p99_s
FROM {db}.readings WHERE $__timeFilter(ingested_at) AND late = 0
GROUP BY time ORDER BY time""",
        ("time", "p50_s", "p99_s"),
        "timeseries",
    )
    lag = bd.q(
        "Consumer lag",
        """
SELECT time, series, sum(lag) AS messages FROM (
  SELECT $__timeInterval(ts) AS time, concat(component, ' ', consumer_group) AS series,
         member, argMax(lag, ts) AS lag
  FROM {db}.pipeline_metrics WHERE $__timeFilter(ts)
  GROUP BY time, series, member
)
GROUP BY time, series ORDER BY time""",
        ("time", "series", "messages"),
        "timeseries",
    )
    notes = bd.q(
        "Notification deliveries",
        """
SELECT receiver, countIf(ok = 1) AS sent, countIf(ok = 0) AS failed,
       quantileIf(0.95)(latency_ms, ok = 1) AS p95_latency_ms
FROM {db}.notifications WHERE $__timeFilter(ts)
GROUP BY receiver ORDER BY receiver""",
        ("receiver", "sent", "failed", "p95_latency_ms"),
    )
    b = _base(
        bd,
        "Pipeline",
        "The data path itself: readings in and stored, dead letters by reason, store inserts, "
        "how long a reading takes from its timestamp to the store, consumer lag, notification "
        "deliveries.",
    )
    b = b.with_panel(_ts("Readings/s received and stored", flow, unit="short"))
    b = b.with_panel(_ts("Dead letters/s by reason", dead, unit="short"))
    b = b.with_panel(_ts("Store inserts/s and rows per insert", inserts, unit="short"))
    b = b.with_panel(
        _ts("Reading to stored delay (p50, p99)", delay, unit="s").description(
            "From the reading's own timestamp to its insert: grows when a consumer falls behind."
        )
    )
    b = b.with_panel(
        _ts("Consumer lag (messages not read yet)", lag, unit="short").description(
            "Per consumer group, summed over its members: the embedded runner's queue, or with "
            "Kafka the stream workers' and the sink's lag (sampled every 10 s)."
        )
    )
    b = b.with_panel(_table("Notification deliveries", notes))
    return b, bd.queries


def build_all(
    db: str, rules: Sequence[Rule], *, no_data_after_s: float = 60.0
) -> list[tuple[dashboard.Dashboard, list[PanelQuery]]]:
    return [
        overview(db),
        machine_detail(db, rules),
        sensor_health(db, no_data_after_s),
        pipeline(db),
    ]
