"""A real OpenSearch node for tests (importable as ``opensearch_support``), and a tiny client.

The node runs from its own folder on free loopback ports; the jars are fetched once into the
repository's ``.cache/``, where ``plantwatch services opensearch`` caches them too. Java 17 and
Maven must be installed: if not, starting fails with the command that installs them.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from plantwatch.core.logs import EcsFormatter
from plantwatch.services import free_port_block
from plantwatch.services.opensearch import OpenSearchConfig, OpenSearchNode

REPO_CACHE = Path(__file__).resolve().parents[1] / ".cache"
HOW_TO = (
    "The OpenSearch node of the integration tests did not start. It needs Java 17+ "
    "(sudo apt-get install -y openjdk-17-jre-headless) and Maven (sudo apt-get install -y "
    "maven) with Maven Central reachable; try by hand: plantwatch services opensearch start"
)


@contextmanager
def running_opensearch(folder: Path) -> Iterator[OpenSearchNode]:
    node = OpenSearchNode(
        OpenSearchConfig(dir=folder, cache_dir=REPO_CACHE, http_port=free_port_block(1))
    )
    node.start()
    try:
        yield node
    finally:
        node.stop()


def call(url: str, method: str, path: str, body: Any = None, *, ndjson: str | None = None) -> Any:
    """One request to the node; the decoded answer (HTTP errors raise with the body)."""
    if ndjson is not None:
        data, kind = ndjson.encode(), "application/x-ndjson"
    else:
        data, kind = (None if body is None else json.dumps(body).encode()), "application/json"
    req = urllib.request.Request(f"{url}{path}", data=data, method=method)
    req.add_header("Content-Type", kind)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}") from exc


def bulk_index(
    url: str,
    index: str,
    docs: Sequence[dict[str, Any] | str],
    *,
    pipeline: str | None = None,
    ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Index ``docs`` (objects or JSON text) with one bulk request and refresh; fails on any
    item error."""
    lines = []
    for i, doc in enumerate(docs):
        action: dict[str, Any] = {"_index": index}
        if ids is not None:
            action["_id"] = ids[i]
        lines.append(json.dumps({"index": action}))
        lines.append(doc if isinstance(doc, str) else json.dumps(doc))
    query = "?refresh=true" + (f"&pipeline={pipeline}" if pipeline else "")
    answer: dict[str, Any] = call(url, "POST", f"/_bulk{query}", ndjson="\n".join(lines) + "\n")
    failed = [it for it in answer["items"] if "error" in it["index"]]
    assert not failed, f"{len(failed)} bulk items failed, first: {failed[0]}"
    return answer


def ecs_lines(
    count: int,
    *,
    start: datetime,
    step: timedelta = timedelta(milliseconds=7),
    service: str = "plantwatch-run",
    host: str = "gw-1",
) -> list[str]:
    """``count`` log lines as plantwatch.core.logs' formatter writes them, one every ``step``
    from ``start``; every 3rd is a sensor event with machine.id, sensor.id and event.code."""
    formatter = EcsFormatter(service=service, host=host)
    lines = []
    levels = (logging.INFO, logging.WARNING, logging.ERROR, logging.DEBUG)
    for i in range(count):
        record = logging.LogRecord(
            "plantwatch.edge.client", levels[i % 4], __file__, 1, "reading %d of %s", (i, "m"), None
        )
        created = (start + i * step).astimezone(UTC).timestamp()
        record.created = created
        record.msecs = round((created - int(created)) * 1000) % 1000
        if i % 3 == 0:
            record.__dict__.update(
                {
                    "machine.id": f"m-{i % 5:03d}",
                    "sensor.id": f"m-{i % 5:03d}-t{i % 2}",
                    "event.code": "sdk.reading.rejected",
                }
            )
        lines.append(formatter.format(record))
    return lines
