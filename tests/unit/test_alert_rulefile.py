"""The rules file: the shipped defaults reproduce the built-in limits; a complete file parses into
the expected objects; every kind of mistake is reported with its exact line and field."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import pytest

from plantwatch.alert.notify.config import (
    ROOT_DEFAULTS,
    EscalationStep,
    Matcher,
    ReceiverConfig,
    Route,
)
from plantwatch.alert.rulefile import (
    RuleSet,
    RulesFileError,
    default_rule_set,
    default_rules_path,
    load_rules,
    parse_rules,
)
from plantwatch.alert.rules import Health, Level, Rule, RuleError, Selector, Threshold
from plantwatch.core.errors import ConfigError
from plantwatch.core.kinds import KIND_NAMES
from plantwatch.detect.baseline import RobustBaseline
from plantwatch.detect.limits import DEFAULT_LIMITS, Limit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"


def parse(text: str, env: dict[str, str] | None = None) -> RuleSet:
    return parse_rules(textwrap.dedent(text), source="rules.yaml", env=env or {})


def errors_of(text: str, env: dict[str, str] | None = None) -> list[tuple[int, str, str]]:
    with pytest.raises(RulesFileError) as info:
        parse(text, env)
    return info.value.errors


def one_error(text: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    errors = errors_of(text, env)
    assert len(errors) == 1, errors
    return errors[0]


# --- the shipped defaults -------------------------------------------------------------------------


def _selects(rule: Rule, machine_type: str, kind: str) -> bool:
    s = rule.select
    return (not s.machine_type or machine_type in s.machine_type) and (not s.kind or kind in s.kind)


def _as_limit(rule: Rule) -> Limit:
    """The rule's levels written as a ``detect.limits.Limit`` (major = warn, critical = crit)."""
    c = rule.condition
    assert isinstance(c, Threshold)
    by = {lv.severity: lv for lv in c.levels}
    assert set(by) <= {"major", "critical"}, rule.name
    major, crit = by.get("major", Level("major")), by.get("critical", Level("critical"))
    return Limit(
        c.source,  # type: ignore[arg-type]
        warn_high=major.high,
        crit_high=crit.high,
        warn_low=major.low,
        crit_low=crit.low,
    )


def test_shipped_file_is_packaged_and_loads() -> None:
    path = default_rules_path()
    assert path.name == "default_rules.yaml" and path.is_file()
    rs = load_rules(path)
    assert rs == default_rule_set()
    assert default_rule_set() is default_rule_set()  # cached
    assert rs.notifications.route == ROOT_DEFAULTS
    assert rs.notifications.receivers == (ReceiverConfig("log", "log"),)


@pytest.mark.parametrize(("machine_type", "kind"), sorted(DEFAULT_LIMITS))
def test_shipped_threshold_rules_reproduce_default_limits(machine_type: str, kind: str) -> None:
    rules = [
        r
        for r in default_rule_set().rules
        if isinstance(r.condition, Threshold)
        and r.condition.source in ("mean", "max", "min")
        and _selects(r, machine_type, kind)
    ]
    assert len(rules) == 1, [r.name for r in rules]
    rule = rules[0]
    assert _as_limit(rule) == DEFAULT_LIMITS[(machine_type, kind)]
    assert isinstance(rule.condition, Threshold) and rule.condition.hysteresis == 0.0
    assert (rule.for_s, rule.keep_firing_for_s) == (20.0, 60.0)
    assert rule.labels["category"] == "machine" and rule.category == "machine"
    assert rule.annotations["runbook_url"] == "https://plantwatch.example/runbooks/{rule}"
    summary = rule.annotations["summary"]
    for name in ("value", "limit", "unit", "machine", "sensor"):
        assert f"{{{name}" in summary, (rule.name, name)


def test_shipped_threshold_rules_select_only_limited_pairs() -> None:
    for r in default_rule_set().rules:
        if isinstance(r.condition, Threshold) and r.condition.source in ("mean", "max", "min"):
            assert r.select.machine_type and r.select.kind, r.name
            for mtype in r.select.machine_type:
                for kind in r.select.kind:
                    assert (mtype, kind) in DEFAULT_LIMITS, (r.name, mtype, kind)


def test_shipped_vibration_zones_are_one_rule() -> None:
    rule = next(r for r in default_rule_set().rules if r.name == "vibration_zone")
    assert set(rule.select.machine_type) == {"centrifugal_pump", "motor_fan", "air_compressor"}
    assert rule.condition == Threshold(
        "mean", (Level("major", high=4.5), Level("critical", high=7.1))
    )


def test_shipped_other_rules() -> None:
    rules = {r.name: r for r in default_rule_set().rules}
    base = rules["baseline_deviation"]
    assert base.condition == Threshold(
        "score", (Level("major", high=RobustBaseline().crit_z),), detector="baseline"
    )
    assert (base.severity, base.for_s, base.keep_firing_for_s) == ("major", 30.0, 60.0)
    expected = {
        "sensor_stuck": (Health("stuck"), 60.0, 30.0),
        "sensor_no_data": (Health("no_data", after_s=60.0), 0.0, 0.0),
        "sensor_out_of_range": (Health("out_of_range"), 0.0, 60.0),
    }
    for name, (cond, for_s, keep_s) in expected.items():
        r = rules[name]
        assert (r.condition, r.for_s, r.keep_firing_for_s) == (cond, for_s, keep_s), name
        assert (r.severity, r.labels["category"], r.category) == ("warning", "sensor", "sensor")
        assert r.select == Selector()
    rise = rules["temperature_rising_fast"]
    assert rise.condition == Threshold("rate", (Level("warning", high=10.0),), per_s=60.0)
    assert rise.select == Selector(kind=("temperature",))
    assert (rise.severity, rise.for_s, rise.keep_firing_for_s) == ("warning", 30.0, 60.0)
    assert set(default_rule_set().machine_rules) == set(rules) - set(expected)


def test_shipped_annotations_render() -> None:
    fields = {
        "value": 8.0,
        "limit": 7.1,
        "score": 6.5,
        "machine": "L1-PUMP-01",
        "sensor": "vib-de",
        "kind": "vibration",
        "unit": "mm/s",
        "machine_type": "centrifugal_pump",
        "line": "L1",
        "site": "plant",
        "rule": "vibration_zone",
        "severity": "critical",
        "detector": "static_limit",
    }
    for r in default_rule_set().rules:
        assert "L1-PUMP-01" in r.annotations["summary"].format(**fields), r.name
        assert r.annotations["description"].format(**fields), r.name


# --- a complete file ------------------------------------------------------------------------------

COMPLETE = """\
version: 1
defaults:
  for: 20s
  severity: minor
  labels: {team: maintenance, area: north}
  annotations: {runbook_url: "https://runbooks.example/{rule}"}
rules:
  - name: vibration_zone
    select:
      site: plant-a
      line: [L1, L2]
      machine_type: [centrifugal_pump, motor_fan]
      machine: "L1-*"
      kind: vibration
      sensor: ["vib-*"]
      labels: {criticality: high}
    when:
      mean: {above: {major: 4.5, critical: 7.1}, hysteresis: 0.2}
    keep_firing_for: 1m
    labels: {area: south}
    annotations:
      summary: "{kind} {value:.2f} {unit} > {limit:.1f} on {machine}/{sensor}"
  - name: oil_band
    when:
      value: {outside: {warning: [10, 80], critical: [5, 90]}}
    for: 1h30m
    severity: warning
  - name: pressure_band
    when:
      min: {above: 9, below: {minor: 2, major: 1}}
    for: 500ms
  - name: heating
    select: {kind: [temperature]}
    when: {rate: {above: 5, below: -5, per: 30s}}
  - name: odd
    when: {anomaly: {detector: baseline, above: {major: 4, critical: 6}}}
    for: 0
  - name: silent
    when: {health: {check: no_data, after: 2m}}
    labels: {category: sensor}
  - name: stuck
    when: {health: stuck}
    severity: info
notifications:
  external_url: http://plantwatch.example
  receivers:
    - name: maintenance-slack
      slack: {url: "${SLACK_WEBHOOK_URL}", channel: "#maintenance"}
    - name: shift-lead-email
      email:
        host: smtp.example.com
        port: ${SMTP_PORT:-587}
        from: plantwatch@example.com
        to: [lead@example.com]
        password: "${SMTP_PASSWORD}"
        starttls: true
    - name: hook
      webhook: {url: "https://hooks.example/x", headers: {X-Token: "${TOKEN:-none}"}}
  route:
    receiver: maintenance-slack
    group_by: [alertname, machine_id]
    group_wait: 30s
    routes:
      - matchers: ['severity=~"major|critical"', 'line=L1']
        receiver: shift-lead-email
        continue: true
        group_interval: 5m
        escalate: [{after: 15m, receiver: hook}, {after: 1h, receiver: log}]
        routes:
          - matchers: [machine_type!=motor_fan]
            repeat_interval: 1d
"""
ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.example/T0/B0", "SMTP_PASSWORD": "s3cret"}


def test_complete_example_parses_into_the_expected_objects() -> None:
    rs = parse(COMPLETE, ENV)
    assert rs.source == "rules.yaml"
    r = {x.name: x for x in rs.rules}
    assert list(r) == [
        "vibration_zone",
        "oil_band",
        "pressure_band",
        "heating",
        "odd",
        "silent",
        "stuck",
    ]
    vib = r["vibration_zone"]
    assert vib == Rule(
        "vibration_zone",
        Threshold("mean", (Level("major", high=4.5), Level("critical", high=7.1)), hysteresis=0.2),
        Selector(
            site=("plant-a",),
            line=("L1", "L2"),
            machine_type=("centrifugal_pump", "motor_fan"),
            machine=("L1-*",),
            kind=("vibration",),
            sensor=("vib-*",),
            labels={"criticality": "high"},
        ),
        for_s=20.0,
        keep_firing_for_s=60.0,
        severity="minor",
        labels={"team": "maintenance", "area": "south"},  # merged, the rule wins
        annotations={
            "runbook_url": "https://runbooks.example/{rule}",
            "summary": "{kind} {value:.2f} {unit} > {limit:.1f} on {machine}/{sensor}",
        },
    )
    assert r["oil_band"].condition == Threshold(
        "value", (Level("warning", 10.0, 80.0), Level("critical", 5.0, 90.0))
    )
    assert r["oil_band"].for_s == 5400.0
    # a bare number takes the rule's severity (minor, from defaults); above+below merge
    assert r["pressure_band"].condition == Threshold(
        "min", (Level("minor", 2.0, 9.0), Level("major", low=1.0))
    )
    assert r["pressure_band"].for_s == 0.5
    assert r["heating"].condition == Threshold("rate", (Level("minor", -5.0, 5.0),), per_s=30.0)
    assert r["odd"].condition == Threshold(
        "score", (Level("major", high=4.0), Level("critical", high=6.0)), detector="baseline"
    )
    assert r["odd"].for_s == 0.0
    assert r["silent"].condition == Health("no_data", after_s=120.0)
    assert r["silent"].category == "sensor" and r["silent"].labels["category"] == "sensor"
    assert r["stuck"].severity == "info"
    assert rs.machine_rules == ("vibration_zone", "oil_band", "pressure_band", "heating", "odd")

    n = rs.notifications
    assert n.external_url == "http://plantwatch.example"
    assert n.receivers == (
        ReceiverConfig("log", "log"),
        ReceiverConfig(
            "maintenance-slack",
            "slack",
            {"url": "https://hooks.slack.example/T0/B0", "channel": "#maintenance"},
        ),
        ReceiverConfig(
            "shift-lead-email",
            "email",
            {
                "host": "smtp.example.com",
                "port": 587,  # an unquoted ${…} is typed as YAML would type the result
                "from": "plantwatch@example.com",
                "to": ["lead@example.com"],
                "password": "s3cret",
                "starttls": True,
            },
        ),
        ReceiverConfig(
            "hook", "webhook", {"url": "https://hooks.example/x", "headers": {"X-Token": "none"}}
        ),
    )
    assert n.route == Route(
        receiver="maintenance-slack",
        group_by=("alertname", "machine_id"),
        group_wait_s=30.0,
        group_interval_s=ROOT_DEFAULTS.group_interval_s,  # root: missing fields from defaults
        repeat_interval_s=ROOT_DEFAULTS.repeat_interval_s,
        routes=(
            Route(
                receiver="shift-lead-email",
                matchers=(Matcher("severity", "=~", "major|critical"), Matcher("line", "=", "L1")),
                group_interval_s=300.0,
                continue_=True,
                escalate=(EscalationStep(900.0, "hook"), EscalationStep(3600.0, "log")),
                routes=(
                    # a child keeps None and "" to inherit
                    Route(
                        matchers=(Matcher("machine_type", "!=", "motor_fan"),),
                        repeat_interval_s=86400.0,
                    ),
                ),
            ),
        ),
    )


def test_minimal_file_and_defaults() -> None:
    rs = parse("version: 1\nrules:\n  - {name: a, when: {max: {above: 1}}}\n")
    (rule,) = rs.rules
    assert rule == Rule("a", Threshold("max", (Level("warning", high=1.0),)))
    assert rs.notifications.route == ROOT_DEFAULTS
    assert parse("version: 1\nrules: []\n").rules == ()


def test_a_receiver_named_log_replaces_the_builtin_one_and_no_route_means_root_defaults() -> None:
    rs = parse("""\
        version: 1
        rules: []
        notifications:
          receivers:
            - {name: log, log: {level: warning}}
    """)
    assert rs.notifications.receivers == (ReceiverConfig("log", "log", {"level": "warning"}),)
    assert rs.notifications.route == ROOT_DEFAULTS


def test_docs_complete_example_parses() -> None:
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    complete = [b for b in blocks if b.startswith("version: 1")]
    assert complete, "docs/alerts.md has no complete example (a yaml block starting version: 1)"
    for block in complete:
        rs = parse_rules(block, source="docs", env=ENV | {"SMTP_PASSWORD": "x", "TEAMS_URL": "y"})
        assert rs.rules


def test_docs_show_a_real_error_message() -> None:
    text = DOCS.read_text(encoding="utf-8")
    m = re.search(r"```yaml\n(# rules\.yaml\n.*?)```\n+.*?```text\n(.*?)```", text, re.S)
    assert m, "docs/alerts.md: the validation example (```yaml # rules.yaml, then ```text)"
    with pytest.raises(RulesFileError) as info:
        parse_rules(m.group(1), source="rules.yaml", env={})
    assert str(info.value) == m.group(2).strip()


# --- durations and variables ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("20", 20.0),
        ("2.5", 2.5),
        ('"20"', 20.0),
        ("500ms", 0.5),
        ("20s", 20.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("1.5m", 90.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    (rule,) = parse(
        f"version: 1\nrules: [{{name: a, for: {text}, when: {{max: {{above: 1}}}}}}]"
    ).rules
    assert math.isclose(rule.for_s, seconds)


@pytest.mark.parametrize(
    "text", ["-5s", "-1", "5x", "1m1h", "1m30m", "soon", ".inf", "true", "[1]"]
)
def test_bad_durations_name_line_and_field(text: str) -> None:
    line, field, message = one_error(f"""\
        version: 1
        rules:
          - name: a
            when: {{max: {{above: 1}}}}
            keep_firing_for: {text}
    """)
    assert (line, field) == (5, "rules[0].keep_firing_for")
    assert "duration" in message


def test_env_default_and_expansion() -> None:
    text = """\
        version: 1
        rules:
          - name: a
            when:
              max:
                above: ${LIMIT:-4.5}
            for: ${FOR:-20s}
            labels: {team: "${TEAM:-maintenance}", site: "${SITE}", literal: "$${NOT_A_VAR}"}
    """
    (rule,) = parse(text, {"SITE": "plant-a", "TEAM": ""}).rules  # empty: the default too
    assert rule.condition == Threshold("max", (Level("warning", high=4.5),))
    assert rule.for_s == 20.0
    assert dict(rule.labels) == {
        "team": "maintenance",
        "site": "plant-a",
        "literal": "${NOT_A_VAR}",
    }
    (rule,) = parse(text, {"SITE": "b", "TEAM": "ops", "LIMIT": "7", "FOR": "1m"}).rules
    assert rule.condition == Threshold("max", (Level("warning", high=7.0),))
    assert (rule.for_s, rule.labels["team"]) == (60.0, "ops")


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_TEST_TEAM", "night-shift")
    rs = parse_rules(
        "version: 1\nrules: [{name: a, when: {health: stuck}, "
        "labels: {team: '${PLANTWATCH_TEST_TEAM}'}}]"
    )
    assert rs.rules[0].labels["team"] == "night-shift"


# --- mistakes: exact line and field ---------------------------------------------------------------


def test_unknown_key_with_suggestion() -> None:
    line, field, message = one_error("""\
        version: 1
        rules:
          - name: a
            when: {max: {above: 1}}
            keep_firing_fro: 1m
    """)
    assert (line, field) == (5, "rules[0].keep_firing_fro")
    assert message == "unknown key 'keep_firing_fro'; did you mean 'keep_firing_for'?"


def test_unknown_key_without_a_close_match_lists_the_keys() -> None:
    line, field, message = one_error("version: 1\nrules: []\nxyz: 1\n")
    assert (line, field) == (3, "xyz")
    assert "defaults, rules, notifications" in message


def test_bad_severity() -> None:
    line, field, message = one_error("""\
        version: 1
        rules:
          - name: a
            when:
              mean:
                above:
                  major: 4.5
                  critcal: 7.1
    """)
    assert (line, field) == (8, "rules[0].when.mean.above.critcal")
    assert "did you mean 'critical'" in message
    line, field, message = one_error("""\
        version: 1
        rules:
          - name: a
            when: {health: stuck}
            severity: urgent
    """)
    assert (line, field) == (5, "rules[0].severity")
    assert "info, warning, minor, major, critical" in message


def test_two_when_keys() -> None:
    line, field, message = one_error("""\
        version: 1
        rules:
          - name: a
            when:
              mean: {above: 4.5}
              max: {above: 9}
    """)
    assert (line, field) == (6, "rules[0].when.max")
    assert "exactly one condition" in message and "mean (line 5)" in message


def test_missing_env_var() -> None:
    line, field, message = one_error("""\
        version: 1
        rules: []
        notifications:
          receivers:
            - name: slack
              slack:
                url: "${SLACK_WEBHOOK_URL}"
    """)
    assert (line, field) == (7, "notifications.receivers[0].slack.url")
    assert "SLACK_WEBHOOK_URL is not set" in message and "${SLACK_WEBHOOK_URL:-" in message


def test_bad_matcher() -> None:
    line, field, message = one_error("""\
        version: 1
        rules: []
        notifications:
          route:
            routes:
              - receiver: log
                matchers:
                  - severity=critical
                  - 'severity=~"(major"'
    """)
    assert (line, field) == (9, "notifications.route.routes[0].matchers[1]")
    assert "severity" in message


def test_unknown_receiver_in_route_and_escalation() -> None:
    errors = errors_of("""\
        version: 1
        rules: []
        notifications:
          receivers:
            - {name: ops-slack, slack: {url: "https://x"}}
          route:
            receiver: ops-slak
            routes:
              - matchers: [line=L1]
                escalate:
                  - {after: 5m, receiver: pager}
    """)
    assert [(line, field) for line, field, _ in errors] == [
        (7, "notifications.route.receiver"),
        (11, "notifications.route.routes[0].escalate[0].receiver"),
    ]
    assert "did you mean 'ops-slack'" in errors[0][2]
    assert "unknown receiver 'pager'" in errors[1][2]


def test_receiver_needs_its_options_and_one_kind() -> None:
    errors = errors_of("""\
        version: 1
        rules: []
        notifications:
          receivers:
            - name: mail
              email: {host: smtp.example.com, to: [a@example.com]}
            - name: both
              slack: {url: "https://x"}
              teams: {url: "https://y"}
            - name: mail
              log:
    """)
    assert [(line, field) for line, field, _ in errors] == [
        (6, "notifications.receivers[0].email"),
        (7, "notifications.receivers[1]"),
        (10, "notifications.receivers[2].name"),
    ]
    assert errors[0][2] == "email needs from"
    assert "already defined at line 5" in errors[2][2]


def test_duplicate_rule_names_name_both_lines() -> None:
    line, field, message = one_error("""\
        version: 1
        rules:
          - name: a
            when: {health: stuck}
          - name: b
            when: {health: stuck}
          - name: a
            when: {health: no_data}
    """)
    assert (line, field) == (7, "rules[2].name")
    assert "already used at line 3" in message


def test_bad_template_field_and_spec() -> None:
    errors = errors_of("""\
        version: 1
        rules:
          - name: a
            when: {health: stuck}
            annotations:
              summary: "{machine} at {valeu:.2f}"
              description: "{kind:.2f}"
              ok: "{{literal}} {value!r:>10}"
    """)
    assert [(line, field) for line, field, _ in errors] == [
        (6, "rules[0].annotations.summary"),
        (7, "rules[0].annotations.description"),
    ]
    assert "unknown template field {valeu}; did you mean 'value'?" in errors[0][2]
    assert "bad template" in errors[1][2]


def test_yaml_syntax_error() -> None:
    line, field, message = one_error("""\
        version: 1
        rules:
          - name: a
            when: {max: {above: 1}
          - name: b
    """)
    assert (line, field) == (5, "yaml")
    assert "expected ',' or '}'" in message


def test_low_must_be_below_high() -> None:
    errors = errors_of("""\
        version: 1
        rules:
          - name: a
            when:
              value: {outside: [80, 10]}
          - name: b
            when:
              mean:
                above: 5
                below: 10
          - name: c
            when:
              mean: {above: {major: 7.1, critical: 4.5}}
    """)
    assert [(line, field) for line, field, _ in errors] == [
        (5, "rules[0].when.value.outside"),
        (10, "rules[1].when.mean.below"),
        (13, "rules[2].when.mean.above.critical"),
    ]
    assert "low < high" in errors[0][2]


def test_other_condition_mistakes() -> None:
    errors = errors_of("""\
        version: 1
        rules:
          - name: a
            when: {anomaly: {above: 6}}
          - name: b
            when: {mean: {hysteresis: 1}}
          - name: c
            when: {health: {check: stuck, after: 1m}}
          - name: d
            when: {mean: {above: [1, 2]}}
          - name: e
            when: {health: stuk}
          - name: f
            when: {mean: {above: 1, hysteresis: -1}}
          - name: "g h"
            when: {health: stuck}
          - name: i
            select: {kind: vibraton, labels: {bad-name: x}}
            when: {health: stuck}
          - name: j
    """)
    assert [(line, field) for line, field, _ in errors] == [
        (4, "rules[0].when.anomaly.detector"),
        (6, "rules[1].when.mean"),
        (8, "rules[2].when.health.after"),
        (10, "rules[3].when.mean.above"),
        (12, "rules[4].when.health"),
        (14, "rules[5].when.mean.hysteresis"),
        (15, "rules[6].name"),
        (18, "rules[7].select.kind"),
        (18, "rules[7].select.labels.bad-name"),
        (20, "rules[8].when"),
    ]
    assert "did you mean 'vibration'" in errors[7][2]
    assert set(KIND_NAMES) <= set(
        re.split(
            r"[ ,;:']+",
            one_error(
                "version: 1\nrules: [{name: a, select: {kind: xyzzy}, when: {health: stuck}}]"
            )[2],
        )
    )


def test_several_errors_are_reported_together() -> None:
    with pytest.raises(RulesFileError) as info:
        parse("""\
            version: 2
            rules:
              - name: a
                for: 5x
                when: {max: {above: 1}}
                severity: high
        """)
    e = info.value
    assert e.errors == [
        (1, "version", "must be 1, got 2"),
        (4, "rules[0].for", e.errors[1][2]),
        (6, "rules[0].severity", e.errors[2][2]),
    ]
    assert (e.source, e.line, e.field, e.message) == (
        "rules.yaml",
        1,
        "version",
        "must be 1, got 2",
    )
    lines = str(e).splitlines()
    assert lines[0] == "rules.yaml:1: version: must be 1, got 2"
    assert lines[1].startswith("rules.yaml:4: rules[0].for: '5x' is not a duration")
    assert lines[2].startswith("rules.yaml:6: rules[0].severity: unknown severity 'high'")
    assert isinstance(e, ConfigError)


def test_root_route_takes_no_matchers_and_escalation_is_ordered() -> None:
    errors = errors_of("""\
        version: 1
        rules: []
        notifications:
          route:
            matchers: [severity=critical]
            group_interval: 0s
            routes:
              - escalate:
                  - {after: 15m, receiver: log}
                  - {after: 5m, receiver: log}
    """)
    assert [(line, field) for line, field, _ in errors] == [
        (5, "notifications.route.matchers"),
        (6, "notifications.route.group_interval"),
        (10, "notifications.route.routes[0].escalate[1].after"),
    ]


def test_repeated_key_and_empty_file() -> None:
    line, field, message = one_error("version: 1\nrules: []\nrules: []\n")
    assert (line, field, message) == (3, "rules", "repeated key (first at line 2)")
    assert one_error("")[1:] == (
        "version",
        "the file is empty; it needs at least `version: 1` and `rules:`",
    )
    assert one_error("version: 1\n")[:2] == (1, "rules")


def test_merge_keys_are_supported() -> None:
    rs = parse("""\
        version: 1
        rules:
          - &base {name: a, when: {health: stuck}, for: 1m}
          - <<: *base
            name: b
    """)
    assert [(r.name, r.for_s) for r in rs.rules] == [("a", 60.0), ("b", 60.0)]


def test_load_rules_puts_the_path_in_the_message(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nrules:\n  - name: a\n    when: {max: {abov: 1}}\n", encoding="utf-8"
    )
    with pytest.raises(RulesFileError) as info:
        load_rules(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}:4: rules[0].when.max.abov: unknown key 'abov'")
    with pytest.raises(RulesFileError, match="cannot read the rules file"):
        load_rules(tmp_path / "missing.yaml")


def test_rule_errors_from_rule_itself_name_the_line_and_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The loader checks everything Rule checks first; if Rule still refuses, its message is
    # reported at the field it names (or at the rule's line).
    def refuse(name: str, *args: object, **kwargs: object) -> Rule:
        raise RuleError(f"rule {name}: keep_firing_for must be finite and >= 0, got 5")

    monkeypatch.setattr("plantwatch.alert.rulefile.Rule", refuse)
    line, field, message = one_error("""\
        version: 1
        rules:
          - name: a
            when: {health: stuck}
            for: 1m
            keep_firing_for: 5s
    """)
    assert (line, field) == (6, "rules[0].keep_firing_for")
    assert message.startswith("rule a: keep_firing_for must be")
