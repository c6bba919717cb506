"""deploy/elastic/: every file parses, the index template maps every field the formatter writes,
Filebeat's glob matches the live and rotated file names, and the ingest pipeline only uses
processors (and options) that OpenSearch 2.19's ingest-common module has, without scripts."""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantwatch.alert.alarms import Alarm, AlarmEvent
from plantwatch.alert.service import log_alarm_events
from plantwatch.core.logs import (
    BASE_FIELDS,
    EVENT_FIELDS,
    EcsFileHandler,
    EcsFormatter,
    sensor_event,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "elastic"

#: the processors of OpenSearch 2.19's ingest-common module, without ``script`` (painless is a
#: separate module, and the pipeline must run without it)
OPENSEARCH_INGEST_COMMON = {
    "append",
    "bytes",
    "community_id",
    "convert",
    "copy",
    "csv",
    "date",
    "date_index_name",
    "dissect",
    "dot_expander",
    "drop",
    "fail",
    "fingerprint",
    "foreach",
    "grok",
    "gsub",
    "html_strip",
    "join",
    "json",
    "kv",
    "lowercase",
    "pipeline",
    "remove",
    "remove_by_pattern",
    "rename",
    "set",
    "sort",
    "split",
    "trim",
    "uppercase",
    "urldecode",
}
#: options that both Elasticsearch 8 and OpenSearch 2.19 accept, for the processors used here
COMMON_OPTIONS = {"tag", "description", "ignore_failure", "on_failure"}
OPTIONS = {
    "dot_expander": {"field", "path"},
    "date": {"field", "target_field", "formats", "timezone", "locale"},
    "lowercase": {"field", "target_field", "ignore_missing"},
    "convert": {"field", "target_field", "type", "ignore_missing"},
    "set": {"field", "value", "override", "ignore_empty_value"},
    "append": {"field", "value"},
    "fingerprint": {"fields", "target_field", "ignore_missing"},
}


def load_json(name: str) -> Any:
    return json.loads((DEPLOY / name).read_text("utf-8"))


@pytest.fixture
def sample_lines(tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    """Real lines: a plain record, an exception, a sensor event carrying every plantwatch.*
    field, and the alarm events the alert service logs."""
    lg = logging.getLogger("plantwatch.test.deploy")
    lg.setLevel(logging.DEBUG)
    alarms = logging.getLogger("plantwatch.alert.service")
    h = EcsFileHandler(tmp_path, "plantwatch-run")
    h.setFormatter(EcsFormatter(service="plantwatch-run"))
    lg.addHandler(h)
    alarms.addHandler(h)
    level = alarms.level
    alarms.setLevel(logging.INFO)
    try:
        lg.info("plain")
        try:
            raise ValueError("boom")
        except ValueError:
            lg.exception("failed")
        lg.warning("stack", stack_info=True)
        values = {"long": 3, "double": 1.5, "keyword": "x"}
        fields = {k.removeprefix("plantwatch."): values[t] for k, t in EVENT_FIELDS.items()}
        sensor_event(
            lg,
            logging.WARNING,
            "sdk.reading.rejected",
            "every field",
            machine_id="m-1",
            sensor_id="m-1-t1",
            **{"event.action": "rejected"},
            **fields,
        )
        a = Alarm("A1", "f", "rule", "m-1", "m-1-t1", "temperature", "critical", 0, message="hot")
        log_alarm_events(
            [AlarmEvent("A1", 0, "created", a), AlarmEvent("A1", 1, "assigned", a, user="u")]
        )
        yield [json.loads(x) for x in h.path.read_text("utf-8").splitlines()]
    finally:
        lg.removeHandler(h)
        alarms.removeHandler(h)
        alarms.setLevel(level)
        h.close()


def mapping_of(props: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    """Walk ``a.b.c`` through nested ``properties``."""
    node: dict[str, Any] | None = {"properties": props}
    for part in dotted.split("."):
        if node is None or part not in node.get("properties", {}):
            return None
        node = node["properties"][part]
    return node


def test_every_file_parses() -> None:
    assert isinstance(yaml.safe_load((DEPLOY / "filebeat.yml").read_text("utf-8")), dict)
    for name in ("index-template.json", "ingest-pipeline.json"):
        assert isinstance(load_json(name), dict)
    lines = (DEPLOY / "kibana-data-view.ndjson").read_text("utf-8").splitlines()
    assert lines and all(isinstance(json.loads(x), dict) for x in lines)
    assert "OpenSearch" in (DEPLOY / "README.md").read_text("utf-8")


def test_every_field_of_real_lines_is_mapped(sample_lines: list[dict[str, Any]]) -> None:
    props = load_json("index-template.json")["template"]["mappings"]["properties"]
    keys = {k for line in sample_lines for k in line}
    assert {"error.stack_trace", "event.code", "plantwatch.alarm_id", "event.action"} <= keys
    assert keys >= BASE_FIELDS
    kinds = {int: {"long", "integer"}, float: {"double", "float"}, str: {"keyword", "text"}}
    for line in sample_lines:
        for key, value in line.items():
            m = mapping_of(props, key)
            assert m is not None and "type" in m, f"{key} has no mapping in the index template"
            if key == "@timestamp":
                assert m["type"] == "date"
            elif type(value) in kinds:
                assert m["type"] in kinds[type(value)], (key, value, m)


def test_event_fields_have_their_declared_types() -> None:
    props = load_json("index-template.json")["template"]["mappings"]["properties"]
    for key, typ in EVENT_FIELDS.items():
        m = mapping_of(props, key)
        assert m is not None and m["type"] == typ, key
    for key in ("log.level", "service.name", "host.name", "machine.id", "sensor.id", "event.code"):
        assert mapping_of(props, key) == {"type": "keyword", "ignore_above": 1024}, key
    assert mapping_of(props, "message") == {"type": "text"}
    assert mapping_of(props, "event.ingested") == {"type": "date"}
    assert mapping_of(props, "event.hash") is not None  # the pipeline's fingerprint


def test_the_index_template_is_a_plain_composable_template() -> None:
    t = load_json("index-template.json")
    assert set(t) <= {"index_patterns", "priority", "version", "_meta", "template", "composed_of"}
    assert "data_stream" not in t and set(t["template"]) == {"settings", "mappings"}
    text = json.dumps(t)
    assert "lifecycle" not in text and "default_pipeline" not in text
    assert fnmatch.fnmatch("plantwatch-logs-2026.12.05", t["index_patterns"][0])


def filebeat_input() -> dict[str, Any]:
    fb = yaml.safe_load((DEPLOY / "filebeat.yml").read_text("utf-8"))
    (inp,) = fb["filebeat.inputs"]
    assert inp["type"] == "filestream" and inp["id"]
    return dict(inp)


def test_filebeat_glob_matches_live_and_rotated_files_only(tmp_path: Path) -> None:
    inp = filebeat_input()
    (pattern,) = inp["paths"]
    m = re.fullmatch(r"\$\{PLANTWATCH_LOG_DIR:[^}]+\}/(.+)", pattern)
    assert m, pattern
    clock_t = [datetime(2026, 12, 5, 23, 0, tzinfo=UTC)]
    made: list[Path] = []
    lg = logging.getLogger("plantwatch.test.glob")
    lg.propagate = False
    lg.setLevel(logging.INFO)
    for service, instance in (("plantwatch-run", None), ("plantwatch-process", "w1")):
        h = EcsFileHandler(
            tmp_path, service, instance=instance, max_bytes=64 * 1024, clock=lambda: clock_t[0]
        )
        h.setFormatter(EcsFormatter(service=service))
        lg.addHandler(h)
        lg.info("day one")
        clock_t[0] = datetime(2026, 12, 6, 0, 0, 5, tzinfo=UTC)
        lg.info("day two")  # rotates
        clock_t[0] = datetime(2026, 12, 5, 23, 0, tzinfo=UTC)
        made += [h.path, *h.rotated_files()]
        lg.removeHandler(h)
        h.close()
    names = sorted(p.name for p in made)
    assert names == [
        "plantwatch-process-w1-20261206T000005Z-1.ndjson",
        "plantwatch-process-w1.ndjson",
        "plantwatch-run-20261206T000005Z-1.ndjson",
        "plantwatch-run.ndjson",
    ]
    assert len(list(tmp_path.glob("*.lock"))) == 2  # lock files exist...
    found = sorted(Path(p).name for p in glob.glob(str(tmp_path / m.group(1))))
    assert found == names  # ...and are not shipped
    assert "file_identity.native" in inp  # inode identity: a renamed file is not read again
    nd = inp["parsers"][0]["ndjson"]
    assert nd["target"] == "" and nd["expand_keys"] is True and nd["add_error_key"] is True


def test_filebeat_sends_through_the_pipeline_to_the_templated_indices() -> None:
    fb = yaml.safe_load((DEPLOY / "filebeat.yml").read_text("utf-8"))
    out = fb["output.elasticsearch"]
    assert out["pipeline"] == "plantwatch-logs"
    day_index = out["index"].replace("%{+yyyy.MM.dd}", "2026.12.05")
    assert fnmatch.fnmatch(day_index, load_json("index-template.json")["index_patterns"][0])
    view = json.loads((DEPLOY / "kibana-data-view.ndjson").read_text("utf-8").splitlines()[0])
    assert view["type"] == "index-pattern"
    assert view["attributes"]["timeFieldName"] == "@timestamp"
    assert fnmatch.fnmatch(day_index, view["attributes"]["title"])
    assert fb["setup.template.enabled"] is False


def processors(pipeline: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for p in [*pipeline["processors"], *pipeline.get("on_failure", [])]:
        ((kind, options),) = p.items()
        yield kind, options
        for nested in options.get("on_failure", []):
            yield from processors({"processors": [nested]})


def test_the_pipeline_uses_only_opensearch_ingest_common_processors() -> None:
    pipeline = load_json("ingest-pipeline.json")
    used = [kind for kind, _ in processors(pipeline)]
    assert "script" not in used
    assert set(used) <= OPENSEARCH_INGEST_COMMON, set(used) - OPENSEARCH_INGEST_COMMON
    for kind, options in processors(pipeline):
        assert "if" not in options, f"{kind}: conditions are painless scripts"
        allowed = OPTIONS.get(kind)
        assert allowed is not None, f"{kind}: add its common options to OPTIONS after checking"
        assert set(options) <= allowed | COMMON_OPTIONS, (kind, set(options) - allowed)
    fp = next(o for k, o in processors(pipeline) if k == "fingerprint")
    assert fp["target_field"] == "event.hash"
    assert {"@timestamp", "service.name", "host.name", "process.pid", "event.sequence"} <= set(
        fp["fields"]
    )
    sets = {o["field"]: o["value"] for k, o in processors(pipeline) if k == "set"}
    assert sets["_id"] == "{{{event.hash}}}"
    assert sets["event.ingested"] == "{{{_ingest.timestamp}}}"


def test_the_pipeline_expands_every_dotted_key_the_formatter_writes() -> None:
    pipeline = load_json("ingest-pipeline.json")
    expanded = {o["field"] for k, o in processors(pipeline) if k == "dot_expander"}
    dotted = {k for k in BASE_FIELDS if "." in k} | set(EVENT_FIELDS)
    dotted |= {"machine.id", "sensor.id", "event.code", "event.action"}
    assert dotted <= expanded, dotted - expanded
    kinds = [k for k, _ in processors(pipeline)]
    # expansion comes before anything reads the fields
    assert max(i for i, k in enumerate(kinds) if k == "dot_expander") < kinds.index("date")
    date = next(o for k, o in processors(pipeline) if k == "date")
    assert date["field"] == "@timestamp" and date["timezone"] == "UTC"
    assert "ISO8601" not in date["formats"]  # strict formats only
