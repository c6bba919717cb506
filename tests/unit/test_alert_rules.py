"""Rules and their evaluation on closed windows: selectors, conditions, severities, labels."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import pytest

from plantwatch.alert import Health, Level, Rule, Selector, Threshold
from plantwatch.alert.evaluate import MachineInfo, RuleEvaluator, Targets, render
from plantwatch.alert.rules import RuleError
from plantwatch.core.kinds import KIND_NAMES
from plantwatch.detect import Finding, Windows

T0 = 1_800_000_000_000
W = 10_000
VIB, TMP = KIND_NAMES.index("vibration"), KIND_NAMES.index("temperature")

# four sensors: two pumps (line L1, L2) with vibration and temperature
TARGETS = Targets(
    machine=np.array(["L1-PUMP-01", "L1-PUMP-01", "L2-PUMP-01", "L2-PUMP-01"], dtype=object),
    sensor=np.array(["vib", "tmp", "vib", "tmp"], dtype=object),
    kind=np.array([VIB, TMP, VIB, TMP], np.int8),
    machine_type=np.array(["centrifugal_pump"] * 4, dtype=object),
    info={
        "L1-PUMP-01": MachineInfo(line="L1", site="north", labels={"area": "a"}),
        "L2-PUMP-01": MachineInfo(line="L2", site="north", labels={"area": "b"}),
    },
)


def window(i: int, **cols: Any) -> Windows:
    """Window ``i`` for the four sensors; columns default to calm values."""
    n = 4
    start = np.full(n, T0 + i * W, np.int64)
    base: dict[str, Any] = {
        "count": np.full(n, 10, np.int64),
        "mean": np.array([2.0, 40.0, 2.0, 40.0]),
        "std": np.full(n, 0.1),
        "last": np.array([2.0, 40.0, 2.0, 40.0]),
        "last_seen_ms": start + W - 100,
        "out_of_range": np.zeros(n, np.int64),
    }
    base.update({k: np.asarray(v) for k, v in cols.items()})
    mean = base["mean"]
    return Windows(
        sensor=np.arange(n, dtype=np.int64),
        kind=TARGETS.kind,
        machine_type=TARGETS.machine_type,
        start_ms=start,
        end_ms=start + W,
        count=base["count"],
        mean=mean,
        std=base["std"],
        min=base.get("min", mean - 0.5),
        max=base.get("max", mean + 0.5),
        last=base["last"],
        last_seen_ms=base["last_seen_ms"],
        out_of_range=base["out_of_range"],
    )


def fire(rule: Rule, windows: list[Windows], findings: dict[str, Finding] | None = None):  # type: ignore[no-untyped-def]
    ev = RuleEvaluator([rule], lambda: TARGETS)
    out = []
    for i, w in enumerate(windows):
        rms = np.sqrt(w.mean**2 + w.std**2)
        for f in ev.evaluate(w, rms, findings or {}):
            out.append((i, f.transition.sensor, f.transition.state, f.severity))
    return out


def above(stat: str, **levels: float) -> Threshold:
    return Threshold(stat, tuple(Level(s, high=v) for s, v in levels.items()))  # type: ignore[arg-type]


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"for_s": -1.0}, "for must be finite and >= 0"),
        ({"for_s": math.nan}, "for must be finite and >= 0"),
        ({"keep_firing_for_s": math.inf}, "keep_firing_for must be finite"),
        ({"severity": "urgent"}, "severity 'urgent' is not one of"),
        ({"condition": Threshold("mean", ())}, "needs at least one limit"),
        ({"condition": Threshold("mean", (Level("major", 5.0, 4.0),))}, "low < high"),
        ({"condition": Threshold("mean", (Level("major"),))}, "has no limit"),
        ({"condition": Threshold("score", (Level("major", high=1),))}, "needs a detector"),
        ({"condition": Threshold("median", (Level("major", high=1),))}, "source 'median'"),  # type: ignore[arg-type]
        ({"condition": Health("stuck", after_s=0.0)}, "after must be > 0"),
        ({"name": "has space"}, "letters, digits"),
    ],
)
def test_invalid_rules_say_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"name": "r", "condition": above("mean", major=1.0), **kwargs}
    with pytest.raises(RuleError, match=message):
        Rule(**args)


def test_rules_are_frozen_and_categorised() -> None:
    r = Rule("r", Health("stuck"))
    assert r.category == "sensor"
    assert Rule("m", above("mean", major=1.0)).category == "machine"
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.for_s = 5.0  # type: ignore[misc]


# -- thresholds ----------------------------------------------------------------------------------


def test_levels_give_the_severity_and_sensors_fire_independently() -> None:
    r = Rule("vib", above("mean", major=4.5, critical=7.1), select=Selector(kind=("vibration",)))
    got = fire(r, [window(0, mean=[5.0, 40.0, 8.0, 40.0])])
    assert got == [(0, 0, "firing", "major"), (0, 2, "firing", "critical")]


def test_value_means_any_single_reading() -> None:
    # mean 2 but one reading reached 9: above checks the window max, below the window min
    hi = Rule("hi", above("value", critical=7.1), select=Selector(kind=("vibration",)))
    assert fire(hi, [window(0, max=[9.0, 40.5, 2.5, 40.5])]) == [(0, 0, "firing", "critical")]
    lo = Rule(
        "lo", Threshold("value", (Level("minor", low=1.0),)), select=Selector(kind=("vibration",))
    )
    assert fire(lo, [window(0, min=[1.5, 39.5, 0.5, 39.5])]) == [(0, 2, "firing", "minor")]


def test_outside_a_band() -> None:
    band = Threshold("mean", (Level("major", low=30.0, high=50.0),))
    r = Rule("band", band, select=Selector(kind=("temperature",)))
    assert fire(r, [window(0, mean=[2.0, 25.0, 2.0, 55.0])]) == [
        (0, 1, "firing", "major"),
        (0, 3, "firing", "major"),
    ]


def test_hysteresis_keeps_firing_until_the_value_leaves_the_band() -> None:
    cond = Threshold("mean", (Level("major", high=4.5),), hysteresis=0.5)
    r = Rule("h", cond, select=Selector(machine=("L1-*",), kind=("vibration",)))
    means = [4.6, 4.2, 4.4, 3.9]  # over, inside the band (held), held, out
    ws = [window(i, mean=[m, 40.0, 2.0, 40.0]) for i, m in enumerate(means)]
    assert fire(r, ws) == [(0, 0, "firing", "major"), (3, 0, "resolved", "major")]
    # without hysteresis the dip at window 1 resolves it
    plain = Rule(
        "p", above("mean", major=4.5), select=Selector(machine=("L1-*",), kind=("vibration",))
    )
    assert [x[2] for x in fire(plain, ws)] == ["firing", "resolved"]


def test_rate_of_change_of_the_window_mean() -> None:
    # temperature mean +3 per 10 s window = +18 per minute; needs adjacent windows
    r = Rule(
        "fast",
        Threshold("rate", (Level("warning", high=10.0),)),
        select=Selector(kind=("temperature",)),
    )
    ws = [window(i, mean=[2.0, 40.0 + 3 * i, 2.0, 40.0]) for i in range(3)]
    assert fire(r, ws) == [(1, 1, "firing", "warning")]  # window 0 has no previous one
    gap = [window(0, mean=[2.0, 40.0, 2.0, 40.0]), window(2, mean=[2.0, 46.0, 2.0, 40.0])]
    assert fire(r, gap) == []  # not adjacent: no rate


def test_anomaly_score_of_a_detector(caplog: pytest.LogCaptureFixture) -> None:
    r = Rule("dev", Threshold("score", (Level("major", high=6.0),), detector="baseline"))
    score = np.array([1.0, 7.5, np.nan, 2.0])
    f = Finding(np.zeros(4, np.int8), score, score.copy(), np.full(4, 6.0))
    assert fire(r, [window(0)], {"baseline": f}) == [(0, 1, "firing", "major")]
    with caplog.at_level(logging.WARNING):
        assert fire(r, [window(0), window(1)], {}) == []
    assert sum("detector 'baseline' is not running" in m for m in caplog.messages) == 1


# -- sensor health ------------------------------------------------------------------------------


def test_no_data_after_its_own_duration() -> None:
    r = Rule("silent", Health("no_data", after_s=25.0), select=Selector(sensor=("tmp",)))
    # L1's tmp was last seen at 9.9 s; the others report in every window
    ws = []
    for i in range(5):
        recent = T0 + (i + 1) * W - 100
        seen = np.array([recent, T0 + 9_900, recent, recent], np.int64)
        ws.append(window(i, count=[10, 10 if i == 0 else 0, 10, 10], last_seen_ms=seen))
    # silent 20.1 s at the end of window 2, 30.1 s (> 25 s) at the end of window 3
    assert fire(r, ws) == [(3, 1, "firing", "warning")]
    never = [window(0, count=[10, 0, 10, 10], last_seen_ms=np.array([T0, -1, T0, T0]))]
    assert fire(r, never * 1) == []  # a sensor never seen is not "silent"


def test_out_of_range_and_stuck() -> None:
    oor = Rule("oor", Health("out_of_range"), severity="minor")
    assert fire(oor, [window(0, out_of_range=[0, 0, 3, 0])]) == [(0, 2, "firing", "minor")]
    stuck = Rule("stuck", Health("stuck"))
    flat = window(0, min=[2.0, 39.5, 2.0, 39.5], max=[2.0, 40.5, 2.0, 40.5])
    assert fire(stuck, [flat]) == [(0, 0, "firing", "warning"), (0, 2, "firing", "warning")]


# -- selectors, labels, annotations -------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "sensors"),
    [
        (Selector(), [0, 1, 2, 3]),
        (Selector(kind=("vibration",)), [0, 2]),
        (Selector(machine=("L2-*",)), [2, 3]),
        (Selector(line=("L1",), sensor=("tmp",)), [1]),
        (Selector(site=("south",)), []),
        (Selector(labels={"area": "b"}), [2, 3]),
        (Selector(machine_type=("motor_fan",)), []),
    ],
)
def test_selectors(selector: Selector, sensors: list[int]) -> None:
    r = Rule("any", Threshold("count", (Level("info", high=5.0),)), select=selector)
    assert [s for _, s, _, _ in fire(r, [window(0)])] == sensors


def test_labels_and_rendered_annotations() -> None:
    r = Rule(
        "vib",
        above("mean", major=4.5, critical=7.1),
        select=Selector(kind=("vibration",)),
        labels={"team": "maintenance"},
        annotations={
            "summary": "{kind} {value:.1f} {unit} over {limit} on {machine}/{sensor} ({line})",
            "runbook_url": "https://runbooks.example/{rule}",
            "odd": "{nope} stays",
        },
    )
    ev = RuleEvaluator([r], lambda: TARGETS)
    (f,) = ev.evaluate(window(0, mean=[5.25, 40.0, 2.0, 40.0]), np.zeros(4), {})
    assert f.labels == {
        "area": "a",
        "team": "maintenance",
        "alertname": "vib",
        "severity": "major",
        "machine_id": "L1-PUMP-01",
        "sensor_id": "vib",
        "kind": "vibration",
        "machine_type": "centrifugal_pump",
        "line": "L1",
        "site": "north",
    }
    assert f.annotations["summary"] == "vibration 5.2 mm/s over 4.5 on L1-PUMP-01/vib (L1)"
    assert f.annotations["runbook_url"] == "https://runbooks.example/vib"
    assert f.annotations["odd"] == "{nope} stays"
    assert f.summary == f.annotations["summary"]


def test_render_never_raises() -> None:
    assert render("{value:.2f}", {"value": "text"}) == "{value:.2f}"
    assert render("{0}", {}) == "{0}"


def test_the_readme_example_is_a_valid_rules_file() -> None:
    from pathlib import Path

    from plantwatch.alert.rulefile import parse_rules

    readme = (Path(__file__).parents[2] / "README.md").read_text("utf-8")
    start = readme.index("```yaml\nversion: 1\n")
    text = readme[start + len("```yaml\n") : readme.index("```", start + 8)]
    rs = parse_rules(
        text, "README.md", env={"SLACK_WEBHOOK_URL": "https://x", "SMTP_PASSWORD": "p"}
    )
    (rule,) = rs.rules
    assert rule.name == "vibration_zone" and rule.condition.hysteresis == 0.2  # type: ignore[union-attr]
    assert [s.receiver for s in rs.notifications.route.escalate] == ["shift-lead"]
    # what the README says the routes do: major and critical to Alertmanager and Slack, the rest
    # to Slack; the lead hears once of an alarm nobody acknowledged for 15 minutes
    from plantwatch.alert.notify.model import AlertInstance
    from plantwatch.alert.notify.router import Router, routes_for

    def labels(severity: str) -> dict[str, str]:
        return {"alertname": "vibration_zone", "severity": severity, "machine_id": "M1"}

    route = rs.notifications.route
    assert [r.receiver for r in routes_for(route, labels("critical"))] == [
        "alertmanager",
        "maintenance-slack",
    ]
    assert [r.receiver for r in routes_for(route, labels("minor"))] == ["maintenance-slack"]
    router = Router(rs.notifications)
    a = AlertInstance(
        "f", "vibration_zone", "firing", "critical", labels("critical"), {}, 0, None, 8.0
    )
    router.observe(a, 0)
    sent = router.tick(0) + router.tick(15 * 60_000)
    assert sorted(n.receiver for n in sent) == ["alertmanager", "maintenance-slack", "shift-lead"]


def test_receivers_from_a_rules_file_are_built_with_the_documented_option_names() -> None:
    from plantwatch.alert.notify.errors import ReceiverConfigError
    from plantwatch.alert.notify.receivers import EmailReceiver, build_receiver
    from plantwatch.alert.rulefile import parse_rules

    text = """
version: 1
rules: []
notifications:
  receivers:
    - name: lead
      email: {host: smtp.example, port: 587, from: pw@example, to: [a@example],
              username: pw, password: "${PW}", starttls: true, ssl: false, timeout: 5}
    - name: hook
      webhook: {url: "https://example/hook", secret: s, timeout: 2.5}
"""
    rs = parse_rules(text, env={"PW": "x"})
    built = {r.name: build_receiver(r.name, r.kind, r.options) for r in rs.notifications.receivers}
    assert isinstance(built["lead"], EmailReceiver)
    assert set(built) == {"lead", "hook", "log"}
    with pytest.raises(
        ReceiverConfigError, match=r"receiver 'lead' \(email\): unknown option\(s\) pasword"
    ):
        build_receiver("lead", "email", {"host": "h", "from": "a@b", "to": ["c@d"], "pasword": "x"})
