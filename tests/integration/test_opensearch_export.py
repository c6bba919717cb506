"""The Elasticsearch export path against a real OpenSearch node: the shipped ingest pipeline and
index template (deploy/elastic/), point-in-time + search_after paging, incremental state."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from plantwatch.batch import layout
from plantwatch.batch.sources.elastic import ElasticSource
from plantwatch.services.opensearch import OpenSearchNode

from opensearch_support import bulk_index, call, ecs_lines

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "elastic"
START = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)


def _install(url: str, name: str) -> str:
    """PUT the shipped pipeline and template under test-unique names; the pipeline's name."""
    pipeline = json.loads((DEPLOY / "ingest-pipeline.json").read_text())
    template = json.loads((DEPLOY / "index-template.json").read_text())
    call(url, "PUT", f"/_ingest/pipeline/{name}", pipeline)
    template["index_patterns"] = [f"plantwatch-logs-{name}-*"]
    template["template"]["settings"]["index"]["default_pipeline"] = name
    call(url, "PUT", f"/_index_template/{name}", template)
    return name


def _export(
    src: ElasticSource, state: dict[str, Any] | None, max_rows: int, **kw: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], int]:
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    chunks = 0
    for chunk in src.chunks(state, kw.get("since"), kw.get("until"), max_rows):
        assert chunk.table.schema == layout.schema("logs")
        assert chunk.table.num_rows <= max_rows
        rows.extend(chunk.table.to_pylist())
        rejects.extend(chunk.rejects)
        state = chunk.state
        chunks += 1
    assert state is not None
    return rows, rejects, state, chunks


@pytest.fixture
def name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def test_a_second_handle_on_the_folder_finds_the_running_node(opensearch: OpenSearchNode) -> None:
    """What `services opensearch status|stop` relies on: the pid file, checked through /proc."""
    pid = opensearch.pid()
    assert pid is not None
    again = OpenSearchNode(opensearch.config)  # no child of its own: pid file + cmdline
    assert again.pid() == pid
    assert again.health() is not None
    # a pid file naming that java process is not enough for a node in another folder
    elsewhere = OpenSearchNode(replace(opensearch.config, dir=opensearch.config.dir / "other"))
    elsewhere.config.dir.mkdir()
    elsewhere.pid_path.write_text(f"{pid}\n")
    assert elsewhere.pid() is None


def test_pipeline_processors_on_formatter_lines(opensearch: OpenSearchNode, name: str) -> None:
    pipeline = json.loads((DEPLOY / "ingest-pipeline.json").read_text())
    lines = ecs_lines(3, start=START)
    shouting = json.loads(lines[1])
    shouting["log.level"] = "WARNING"
    broken = json.loads(lines[2])
    broken["@timestamp"] = "05/12/2026 06:00"
    docs = [json.loads(lines[0]), shouting, broken]
    answer = call(
        opensearch.url,
        "POST",
        "/_ingest/pipeline/_simulate",
        {
            "pipeline": pipeline,
            "docs": [{"_index": "plantwatch-logs-x", "_source": d} for d in docs],
        },
    )
    first, second, failed = (d["doc"] for d in answer["docs"])
    src = first["_source"]
    # dot_expander: flat keys became objects; the date processor kept the instant (UTC, ms)
    assert src["log"]["level"] == "info" and "log.level" not in src
    assert src["service"]["name"] == "plantwatch-run" and src["host"]["name"] == "gw-1"
    assert src["machine"]["id"] == "m-000" and src["event"]["code"] == "sdk.reading.rejected"
    assert src["@timestamp"] == "2026-12-05T06:00:00.000Z"
    assert src["event"]["dataset"] == "plantwatch.log" and src["event"]["module"] == "plantwatch"
    # mustache templates ran: event.ingested is the ingest time, _id is the line's fingerprint
    ingested = datetime.fromisoformat(src["event"]["ingested"].replace("Z", "+00:00"))
    assert abs(ingested - datetime.now(UTC)) < timedelta(minutes=5)
    assert src["event"]["hash"] and first["_id"] == src["event"]["hash"]
    assert second["_source"]["log"]["level"] == "warning"  # lowercase processor
    assert second["_id"] != first["_id"]
    # a timestamp the date processor cannot read goes to the failure index with the reason
    assert failed["_index"] == "failed-plantwatch-logs"
    assert failed["_source"]["event"]["kind"] == "pipeline_error"
    assert "date" in failed["_source"]["event"]["reason"]
    assert "plantwatch_pipeline_error" in failed["_source"]["tags"]


def test_export_pages_through_everything_once(opensearch: OpenSearchNode, name: str) -> None:
    _install(opensearch.url, name)
    lines = ecs_lines(5000, start=START)
    day1, day2 = f"plantwatch-logs-{name}-2026.12.05", f"plantwatch-logs-{name}-2026.12.06"
    loaded: set[str] = set()
    for index, part in ((day1, lines[:3000]), (day2, lines[3000:])):
        answer = bulk_index(opensearch.url, index, part)
        loaded |= {f"{index}/{it['index']['_id']}" for it in answer["items"]}
    assert len(loaded) == 5000  # the pipeline's fingerprint ids are unique per line

    src = ElasticSource.from_url(
        f"elasticsearch://{opensearch.url[7:]}/plantwatch-logs-{name}-*", settle_s=0
    )
    began = time.perf_counter()
    rows, rejects, state, chunks = _export(src, None, 700)
    took = time.perf_counter() - began
    print(f"\nexported {len(rows)} rows in {took:.2f}s: {len(rows) / took:,.0f} rows/s")
    assert rejects == []
    assert chunks >= 8
    origins = [r["origin"] for r in rows]
    assert len(origins) == len(set(origins)) == 5000
    assert set(origins) == loaded
    expected = {json.loads(x)["message"] for x in lines}
    assert {r["message"] for r in rows} == expected
    assert state["cursor_field"] == "event.ingested"
    # the columns: one sensor event, as the formatter wrote it
    row = next(r for r in rows if r["message"] == "reading 3 of m")
    assert row["timestamp"] == START + 3 * timedelta(milliseconds=7)
    assert (row["level"], row["service"], row["host"]) == ("debug", "plantwatch-run", "gw-1")
    assert (row["logger"], row["machine_id"], row["sensor_id"]) == (
        "plantwatch.edge.client",
        "m-003",
        "m-003-t1",
    )
    assert row["event_code"] == "sdk.reading.rejected"
    fields = json.loads(row["fields"])
    assert fields["event.dataset"] == "plantwatch.log" and fields["process.thread.name"]
    assert list(fields) == sorted(fields)
    # --since/--until select on @timestamp: since inclusive, until exclusive
    since, until = START + timedelta(seconds=7), START + timedelta(seconds=14)
    part, _, _, _ = _export(src, None, 10_000, since=since, until=until)
    assert len(part) == 1000 and min(r["timestamp"] for r in part) == since
    assert max(r["timestamp"] for r in part) < until


@pytest.mark.parametrize("cursor_field", ["event.ingested", "@timestamp"])
def test_second_run_takes_exactly_the_new_documents(
    opensearch: OpenSearchNode, name: str, cursor_field: str
) -> None:
    index = f"plantwatch-logs-{name}-2026.12.05"
    _install(opensearch.url, name)
    base = f"elasticsearch://{opensearch.url[7:]}/{index}"
    src = ElasticSource.from_url(base, cursor_field=cursor_field, settle_s=0)
    lines = ecs_lines(300, start=START)
    bulk_index(opensearch.url, index, lines)
    first, _, state, _ = _export(src, None, 64)
    assert len(first) == 300 and state["cursor_field"] == cursor_field
    last_ts = max(r["timestamp"] for r in first)

    # new lines: two at the very instant of the last exported one, then later ones, and a late
    # line with an old @timestamp
    same = ecs_lines(2, start=last_ts, step=timedelta(0), host="gw-2")
    later = ecs_lines(5, start=last_ts + timedelta(seconds=1), host="gw-3")
    late = ecs_lines(1, start=START - timedelta(hours=1), host="gw-4")
    new = bulk_index(opensearch.url, index, same + later + late)
    new_ids = {f"{index}/{it['index']['_id']}" for it in new["items"]}
    second, rejects, state2, _ = _export(src, state, 3)
    got = {r["origin"] for r in second}
    assert rejects == [] and len(got) == len(second)
    late_id = f"{index}/{new['items'][-1]['index']['_id']}"
    if cursor_field == "event.ingested":  # the late line is caught: it was ingested later
        assert got == new_ids
    else:  # documented: on @timestamp a late line older than the cursor is left for --since
        assert got == new_ids - {late_id}
    assert not got & {r["origin"] for r in first}
    third, _, state3, _ = _export(src, state2, 3)
    assert third == [] and state3 == state2


def test_malformed_documents_become_rejects(opensearch: OpenSearchNode, name: str) -> None:
    index = f"raw-{name}"  # no template, no pipeline: what a foreign shipper might write
    mapping = {"properties": {"@timestamp": {"type": "date", "ignore_malformed": True}}}
    call(opensearch.url, "PUT", f"/{index}", {"mappings": mapping})
    good = json.loads(ecs_lines(1, start=START)[0])
    docs = [good, {"message": "no time at all"}, {"@timestamp": "yesterday", "message": "bad"}]
    bulk_index(opensearch.url, index, docs, ids=["good", "missing", "garbled"])
    src = ElasticSource.from_url(f"elasticsearch://{opensearch.url[7:]}/{index}", settle_s=0)
    rows, rejects, state, _ = _export(src, None, 10, since=START - timedelta(days=1))
    assert [r["origin"] for r in rows] == [f"{index}/good"]
    by_origin = {r["origin"]: r for r in rejects}
    assert set(by_origin) == {f"{index}/missing", f"{index}/garbled"}
    assert by_origin[f"{index}/missing"]["reason"] == "missing @timestamp"
    assert "yesterday" in by_origin[f"{index}/garbled"]["reason"]
    assert json.loads(by_origin[f"{index}/garbled"]["raw"])["message"] == "bad"
    assert state["cursor_field"] == "@timestamp"  # no event.ingested in this index
    # the next run reports them no more
    again, rejects2, _, _ = _export(src, state, 10)
    assert again == [] and rejects2 == []


def test_unknown_index_pattern_gives_an_empty_chunk(opensearch: OpenSearchNode, name: str) -> None:
    src = ElasticSource.from_url(f"elasticsearch://{opensearch.url[7:]}/nothing-{name}*")
    rows, rejects, state, chunks = _export(src, None, 10)
    assert (rows, rejects, chunks) == ([], [], 1)
    assert state["cursor"] is None


def test_the_export_command_reads_an_index_into_the_archive(
    opensearch: OpenSearchNode, name: str, tmp_path: Path
) -> None:
    """`plantwatch export --from elasticsearch://…` as a user runs it, twice."""
    from plantwatch.batch.archive import Archive

    from plantwatch_cli import plantwatch

    _install(opensearch.url, name)
    lines = ecs_lines(1200, start=START)
    bulk_index(opensearch.url, f"plantwatch-logs-{name}-2026.12.05", lines)
    root, report = tmp_path / "archive", tmp_path / "report.json"
    args = (
        "export",
        "--from",
        f"elasticsearch://{opensearch.url.removeprefix('http://')}/plantwatch-logs-{name}-*",
        "--to",
        str(root),
        "--format",
        "csv",
        "--settle-s",
        "0",
        "--json",
        str(report),
    )
    plantwatch(*args)
    assert json.loads(report.read_text())["rows"] == 1200
    archive = Archive.open(str(root))
    messages = [
        m
        for p in archive.partitions("logs")
        for m in archive.read_partition(p).column("message").to_pylist()
    ]
    assert sorted(messages) == sorted(json.loads(x)["message"] for x in lines)
    plantwatch(*args)  # the checkpoint: nothing new, nothing twice
    assert json.loads(report.read_text())["rows"] == 0
