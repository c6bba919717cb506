"""Grafana as code without a store: the plugin's macros, the dashboards' round trip through the
SDK's models, the compiled alert rules, secrets, and the checked-in provisioning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from plantwatch.grafana.alerting import template
from plantwatch.grafana.export import Connection, build, differences, rules_for_grafana, write
from plantwatch.grafana.macros import MacroError, QueryContext, expand, interval_for
from plantwatch.grafana.model import ClickHouseQuery, load_dashboard

REPO = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000_123  # 2027-01-15T08:00:00.123Z


def ctx(**variables: list[str]) -> QueryContext:
    return QueryContext(T0, T0 + 3_600_000, 20_000, variables)


# -- macros (expected strings written from the plugin's pkg/macros/macros.go) -----------------


def test_time_macros_expand_as_the_plugin_does() -> None:
    c = ctx()
    assert expand("$__timeFilter(ts)", c) == (
        "ts >= toDateTime(1800000000) AND ts <= toDateTime(1800003600)"
    )
    assert expand("$__timeFilter_ms(ts)", c) == (
        "ts >= fromUnixTimestamp64Milli(1800000000123)"
        " AND ts <= fromUnixTimestamp64Milli(1800003600123)"
    )
    assert expand("$__fromTime, $__toTime_ms", c) == (
        "toDateTime(1800000000), fromUnixTimestamp64Milli(1800003600123)"
    )
    assert expand("$__timeInterval(ts) / $__interval_s", c) == (
        "toStartOfInterval(toDateTime(ts), INTERVAL 20 second) / 20"
    )
    assert expand("$__timeInterval_ms(ts)", c) == (
        "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 20000 millisecond)"
    )
    assert (
        expand("$__dateFilter(d)", c) == "d >= toDate('2027-01-15') AND d <= toDate('2027-01-15')"
    )
    # an interval under a second is one second, as in the plugin
    assert expand("$__interval_s", QueryContext(0, 1, 50)) == "1"


def test_template_variables_are_quoted_and_unknown_names_fail() -> None:
    c = ctx(machine=["L1-PUMP-01", "it's"], kind=["vibration"])
    assert expand("IN (${machine:singlequote})", c) == "IN ('L1-PUMP-01','it\\'s')"
    assert expand("= '$kind' OR '${kind}'", c) == "= 'vibration' OR 'vibration'"
    assert expand("${machine:csv}", c) == "L1-PUMP-01,it's"
    with pytest.raises(MacroError, match=r"\$line has no value"):
        expand("line IN (${line:singlequote})", c)
    with pytest.raises(MacroError, match="not a macro"):
        expand("$__timeFiltre(ts)", c)
    with pytest.raises(MacroError, match="one column"):
        expand("$__timeFilter(a, b)", c)


def test_interval_grows_with_the_range_in_nice_steps() -> None:
    assert interval_for(0, 3_600_000) == 5_000  # 1 h over 1000 points: 3.6 s -> 5 s
    assert interval_for(0, 30 * 86_400_000) == 3_600_000
    assert interval_for(0, 1000, min_ms=10_000) == 10_000


# -- dashboards ---------------------------------------------------------------------------------


def test_dashboards_load_back_into_the_sdk_models_without_loss() -> None:
    export = build(rules_for_grafana(None), Connection())
    boards = {k: v for k, v in export.files.items() if k.endswith(".json")}
    assert len(boards) == 4
    for name, text in boards.items():
        data = json.loads(text)
        board = load_dashboard(data)
        assert json.loads(json.dumps(board, cls=JSONEncoder)) == data, name
        for panel in board.panels or []:
            for target in getattr(panel, "targets", None) or []:
                assert isinstance(target, ClickHouseQuery), (name, panel)


def test_panels_fit_the_24_column_grid_without_overlapping() -> None:
    export = build(rules_for_grafana(None), Connection())
    for name, text in export.files.items():
        if not name.endswith(".json"):
            continue
        cells: set[tuple[int, int]] = set()
        for p in json.loads(text)["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, (name, p["title"])
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not mine & cells, (name, p["title"])
            cells |= mine


def test_every_panel_query_is_in_a_dashboard_and_names_its_columns() -> None:
    export = build(rules_for_grafana(None), Connection(database="plantdb"))
    sql_in_files = "\n".join(export.files.values())
    for q in export.queries:
        assert q.columns, q
        assert "plantdb." in q.sql and "plantwatch." not in q.sql, q
        assert json.dumps(q.sql)[1:-1] in sql_in_files, q.panel
    titles = {json.loads(t)["title"] for k, t in export.files.items() if k.endswith(".json")}
    assert titles == {"Plant overview", "Machine detail", "Sensor health", "Pipeline"}


def test_the_checked_in_provisioning_is_up_to_date() -> None:
    export = build(rules_for_grafana(None), Connection())
    out = REPO / "deploy" / "grafana"
    assert list(differences(export, out)) == [], "run: make grafana"


# -- alert rules, contact points, policies ----------------------------------------------------

RULES = """
version: 1
rules:
  - name: hot
    select: { machine_type: centrifugal_pump, kind: temperature, machine: "L1-*" }
    when:
      mean: { above: { major: 70, critical: 85 }, hysteresis: 2 }
    for: 30s
    keep_firing_for: 1m
    annotations:
      summary: "{value:.1f} {unit} beyond {limit:.0f} on {machine}/{sensor} ({rule})"
  - name: by_label
    select: { labels: { area: north } }
    when: { max: { above: 1 } }
notifications:
  receivers:
    - name: team-slack
      slack: { url: "${SLACK_WEBHOOK_URL}", channel: "#maint" }
    - name: lead-email
      email:
        host: smtp.example.com
        from: plantwatch@example.com
        to: [lead@example.com]
        password: "${SMTP_PASSWORD}"
  route:
    receiver: log
    group_by: [alertname, machine_id]
    routes:
      - matchers: ['severity=~"major|critical"']
        receiver: team-slack
        group_wait: 5s
        continue: true
"""


def test_rules_compile_per_level_with_durations_one_window_shorter() -> None:
    export = build(rules_for_grafana(RULES), Connection(database="db"), window_s=10)
    groups = yaml.safe_load(export.files["alerting/rules.yaml"])["groups"]
    assert groups[0]["interval"] == "10s"
    rules = {r["title"]: r for r in groups[0]["rules"]}
    assert set(rules) == {"hot (major)", "hot (critical)"}
    major = rules["hot (major)"]
    assert major["for"] == "20s" and major["keepFiringFor"] == "50s"
    assert major["labels"] == {
        "rule": "hot",
        "severity": "major",
        "category": "machine",
        "source": "plantwatch",
    }
    cond = major["data"][1]["model"]["conditions"][0]
    assert cond["evaluator"] == {"type": "gt", "params": [70.0]}
    assert cond["unloadEvaluator"] == {"type": "lt", "params": [68.0]}
    sql = major["data"][0]["model"]["rawSql"]
    assert "match(f.machine_id, '^L1\\\\-.*$')" in sql and "db.features" in sql
    assert major["data"][0]["relativeTimeRange"] == {"from": 25, "to": 15}
    assert major["annotations"]["summary"] == (
        '{{ printf "%.1f" $values.A.Value }} {{ $labels.unit }} beyond 70 on '
        "{{ $labels.machine_id }}/{{ $labels.sensor_id }} (hot)"
    )
    assert [(s.rule, "labels" in s.reason) for s in export.skipped] == [
        ("by_label", True),
        ("log", False),
    ]


def test_secrets_stay_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.example/T000/SECRET-HOOK")
    monkeypatch.setenv("SMTP_PASSWORD", "SECRET-PASSWORD")
    monkeypatch.setenv("PLANTWATCH_CLICKHOUSE_PASSWORD", "SECRET-CH")
    export = build(rules_for_grafana(RULES), Connection(database="db"))
    everything = "\n".join(export.files.values())
    assert "SECRET" not in everything
    points = yaml.safe_load(export.files["alerting/contact-points.yaml"])["contactPoints"]
    slack = next(p for p in points if p["name"] == "team-slack")["receivers"][0]
    assert slack["type"] == "slack"
    assert slack["settings"] == {"url": "${SLACK_WEBHOOK_URL}", "recipient": "#maint"}
    ds = yaml.safe_load(export.files["datasources/plantwatch.yaml"])["datasources"][0]
    assert ds["secureJsonData"] == {"password": "$PLANTWATCH_CLICKHOUSE_PASSWORD"}
    assert (
        ds["type"] == "grafana-clickhouse-datasource" and ds["jsonData"]["defaultDatabase"] == "db"
    )


def test_policies_follow_the_route_and_log_goes_to_the_default_contact() -> None:
    export = build(rules_for_grafana(RULES), Connection())
    root = yaml.safe_load(export.files["alerting/policies.yaml"])["policies"][0]
    assert root["receiver"] == "plantwatch-default"
    assert root["group_by"] == ["alertname", "machine_id"]
    assert root["routes"] == [
        {
            "receiver": "team-slack",
            "object_matchers": [["severity", "=~", "major|critical"]],
            "group_wait": "5s",
            "continue": True,
        }
    ]
    names = {
        p["name"]
        for p in yaml.safe_load(export.files["alerting/contact-points.yaml"])["contactPoints"]
    }
    assert names == {"team-slack", "lead-email", "plantwatch-default"}


def test_connection_from_the_store_url() -> None:
    c = Connection.from_url("https://ch.example:8443", database="p", username="grafana")
    assert (c.host, c.port, c.protocol, c.secure) == ("ch.example", 8443, "http", True)
    assert Connection.from_url("chdb:///data/clickhouse", database="p", username="u").host == (
        "clickhouse"
    )


def test_annotation_templates_keep_unknown_fields_and_escape_braces() -> None:
    assert template("{machine} {nope} {limit:.1f}", {"limit": 4.5}) == (
        "{{ $labels.machine_id }} {nope} 4.5"
    )


def test_write_replaces_dashboards_no_longer_produced(tmp_path: Path) -> None:
    export = build(rules_for_grafana(None), Connection())
    stale = tmp_path / "dashboards" / "json" / "old.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    write(export, tmp_path)
    assert not stale.exists()
    assert list(differences(export, tmp_path)) == []
