"""Export source over Elasticsearch or OpenSearch (``elasticsearch://HOST:PORT[/INDEX_PATTERN]``).

URL forms: ``elasticsearch://host:9200/plantwatch-logs*`` (HTTP), ``elasticsearchs://…`` or
``https://…`` (TLS; the CA bundle is the system's, or ``SSL_CERT_FILE``), ``http://…``. The index
pattern defaults to ``plantwatch-logs*``; commas list several. Basic auth comes from
``user:password@`` in the URL or from ``PLANTWATCH_ELASTIC_USER`` / ``PLANTWATCH_ELASTIC_PASSWORD``
(:func:`credentials_from_env`; cli.py reads the environment). Only the standard library talks
HTTP.

Reading is one point-in-time (PIT) per run, paged with ``search_after``: the view does not move
while the run reads it, and no page is skipped or read twice. OpenSearch (``GET /`` says
``version.distribution: opensearch``) opens it with ``POST /<index>/_search/point_in_time`` and
sorts ``[cursor, _index, _id]``; Elasticsearch 7.10+ with ``POST /<index>/_pit`` and sorts
``[cursor, _shard_doc]``.

Incremental runs: the state is the cursor field, the last value of it exported (epoch ms) and
the ``index/_id`` of every document exported at exactly that value. The next run asks for
``cursor >= value`` and drops those ids: nothing lost or repeated when documents share a
timestamp, including across the end of a run. The cursor field is ``event.ingested`` (set by
the ingest pipeline, deploy/elastic/ingest-pipeline.json) when the indices map it, else
``@timestamp``; a state keeps the field it started with. On ``event.ingested`` a document that
arrives late with an old ``@timestamp`` is still exported by the next run. On ``@timestamp``
such a document is older than the cursor and only a run with an explicit ``--since`` and no
checkpoint picks it up. Documents indexed without the cursor field sort last and are exported
by the run that sees them first, never again.

Documents become searchable only at the next refresh, and concurrent bulk requests can make a
document visible after one with a later ``event.ingested``; so a run leaves out documents whose
cursor value lies within ``settle_s`` (default 30 s) of now: the next run takes them.

``--since``/``--until`` filter on ``@timestamp`` (since inclusive, until exclusive). Each
document becomes one row of the ``logs`` dataset; one without a parseable ``@timestamp`` is a
reject ``{"origin": "index/_id", "reason", "raw"}``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from plantwatch.batch.sources.base import Chunk
from plantwatch.batch.sources.logs import LogRows, flatten, parse_timestamp
from plantwatch.core.errors import PlantwatchError

DEFAULT_INDEX = "plantwatch-logs*"
DEFAULT_PORT = 9200
TIME_FIELD = "@timestamp"
INGESTED_FIELD = "event.ingested"
ENV_USER = "PLANTWATCH_ELASTIC_USER"
ENV_PASSWORD = "PLANTWATCH_ELASTIC_PASSWORD"
MAX_PAGE = 10_000  # index.max_result_window's default
_NO_VALUE = 2**62  # sort values beyond this are the "missing: _last" stand-ins (Long.MAX_VALUE)
_SCHEMES = {"elasticsearch": "http", "elasticsearchs": "https", "http": "http", "https": "https"}


class ElasticError(PlantwatchError):
    """Elasticsearch/OpenSearch refused a request or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(message)


def credentials_from_env(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``(user, password)`` from ``PLANTWATCH_ELASTIC_USER``/``_PASSWORD`` (None when unset)."""
    return environ.get(ENV_USER) or None, environ.get(ENV_PASSWORD) or None


@dataclass(frozen=True, slots=True)
class _Flavor:
    opensearch: bool
    version: str

    def open_path(self, index: str, keep_alive: str) -> str:
        quoted = urllib.parse.quote(index, safe="*,-_.")
        if self.opensearch:
            return f"/{quoted}/_search/point_in_time?keep_alive={keep_alive}"
        return f"/{quoted}/_pit?keep_alive={keep_alive}"

    def close_request(self, pit_id: str) -> tuple[str, dict[str, Any]]:
        if self.opensearch:
            return "/_search/point_in_time", {"pit_id": [pit_id]}
        return "/_pit", {"id": pit_id}

    def tiebreakers(self) -> list[dict[str, Any]]:
        if self.opensearch:  # OpenSearch 2.x has no _shard_doc
            return [{"_index": "asc"}, {"_id": "asc"}]
        return [{"_shard_doc": "asc"}]


class ElasticSource:
    """``elasticsearch://HOST:PORT[/INDEX_PATTERN]``: log documents as ``logs`` rows."""

    dataset = "logs"
    range_bound = True  # the cursor follows event.ingested (or @timestamp), not the range

    def __init__(
        self,
        base_url: str,
        index: str = DEFAULT_INDEX,
        *,
        user: str | None = None,
        password: str | None = None,
        cursor_field: str | None = None,  # None: event.ingested when mapped, else @timestamp
        keep_alive: str = "2m",
        timeout_s: float = 60.0,
        settle_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.index = index or DEFAULT_INDEX
        self.cursor_field = cursor_field
        self.keep_alive = keep_alive
        self.timeout_s = timeout_s
        self.settle_s = settle_s
        self._auth: str | None = None
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self._auth = f"Basic {token}"
        self._ssl = ssl.create_default_context() if self.base_url.startswith("https") else None

    @classmethod
    def from_url(
        cls, url: str, *, user: str | None = None, password: str | None = None, **options: Any
    ) -> ElasticSource:
        """Parse ``elasticsearch[s]://[user:pass@]HOST[:PORT][/INDEX]`` (also http/https)."""
        parts = urllib.parse.urlsplit(url)
        scheme = _SCHEMES.get(parts.scheme)
        if scheme is None or not parts.hostname:
            raise ElasticError(
                f"{url!r} is not an Elasticsearch URL: write elasticsearch://HOST:PORT[/INDEX] "
                "(elasticsearchs:// or https:// for TLS)"
            )
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ElasticError(f"{url!r}: the port is not a number") from None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        index = urllib.parse.unquote(parts.path.strip("/")) or DEFAULT_INDEX
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
        return cls(f"{scheme}://{host}:{port}", index, user=user, password=password, **options)

    def describe(self) -> str:
        scheme = "elasticsearchs" if self.base_url.startswith("https") else "elasticsearch"
        return f"{scheme}://{self.base_url.split('://', 1)[1]}/{self.index}"

    # -- HTTP ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request; the decoded answer. Raises :class:`ElasticError` on failure."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self._auth is not None:
            req.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=self._ssl) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            hint = " (check PLANTWATCH_ELASTIC_USER/_PASSWORD)" if exc.code in (401, 403) else ""
            raise ElasticError(
                f"{method} {self.base_url}{path} failed with HTTP {exc.code}{hint}: {text[:500]}",
                status=exc.code,
                body=text,
            ) from exc
        except (OSError, ValueError) as exc:  # URLError, timeouts, TLS errors, bad JSON
            raise ElasticError(
                f"{method} {self.base_url}{path} failed: {exc}; is the server running and "
                "the URL right?"
            ) from exc

    def flavor(self) -> _Flavor:
        info = self.request("GET", "/")
        version = info.get("version", {}) if isinstance(info, dict) else {}
        number = str(version.get("number", "?"))
        return _Flavor(opensearch=version.get("distribution") == "opensearch", version=number)

    def _inspect(self) -> tuple[bool, bool]:
        """(does the pattern match any index, does one of them map ``event.ingested``)."""
        quoted = urllib.parse.quote(self.index, safe="*,-_.")
        try:
            found = self.request("GET", f"/{quoted}/_mapping/field/{INGESTED_FIELD}")
        except ElasticError as exc:
            if exc.status == 404:
                return False, False
            raise
        found = found if isinstance(found, dict) else {}
        mapped = any(v.get("mappings") for v in found.values() if isinstance(v, dict))
        return bool(found), mapped

    # -- reading ------------------------------------------------------------------------------

    def chunks(
        self,
        state: dict[str, Any] | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        max_rows: int,
    ) -> Iterator[Chunk]:
        if max_rows < 1:
            raise ElasticError(f"max_rows={max_rows}: ask for at least one row per chunk")
        state = dict(state or {})
        exists, ingested = self._inspect()
        auto = INGESTED_FIELD if ingested else TIME_FIELD
        field = str(state.get("cursor_field") or self.cursor_field or auto)
        cursor: int | None = state.get("cursor")
        seen: set[str] = set(state.get("ids", []))
        flavor = self.flavor()
        pit = self._open_pit(flavor) if exists else None
        if pit is None:  # no index matches the pattern yet
            yield Chunk(LogRows().table(), [], _state(field, cursor, seen))
            return
        try:
            body: dict[str, Any] = {
                "query": _query(field, cursor, since, until, self._settled()),
                "sort": [
                    {
                        field: {
                            "order": "asc",
                            "missing": "_last",
                            "unmapped_type": "date",
                            "numeric_type": "date",
                        }
                    },
                    *flavor.tiebreakers(),
                ],
                "track_total_hits": False,
            }
            rows, rejects = LogRows(), list[dict[str, Any]]()
            after: list[Any] | None = None
            while True:
                body["pit"] = {"id": pit, "keep_alive": self.keep_alive}
                body["size"] = min(MAX_PAGE, max(1, max_rows - len(rows)))
                if after is not None:
                    body["search_after"] = after
                answer = self.request("POST", "/_search", body)
                pit = answer.get("pit_id", pit)
                _check_shards(answer)
                hits = answer.get("hits", {}).get("hits", [])
                for hit in hits:
                    origin = f"{hit['_index']}/{hit['_id']}"
                    value = hit["sort"][0]
                    has_value = isinstance(value, int) and abs(value) < _NO_VALUE
                    if has_value and value == cursor and origin in seen:
                        continue  # exported at the cursor by an earlier run or chunk
                    _take(hit, origin, rows, rejects)
                    if has_value:
                        if value != cursor:
                            cursor, seen = value, set()
                        seen.add(origin)
                if hits:
                    after = hits[-1]["sort"]
                if len(rows) >= max_rows:
                    yield Chunk(rows.table(), rejects, _state(field, cursor, seen))
                    rows, rejects = LogRows(), list[dict[str, Any]]()
                if len(hits) < body["size"]:
                    break
            yield Chunk(rows.table(), rejects, _state(field, cursor, seen))
        finally:
            self._close_pit(flavor, pit)

    def _settled(self) -> int | None:
        """Documents whose cursor value is newer than this (epoch ms) wait for the next run."""
        if self.settle_s <= 0:
            return None
        return _ms(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.settle_s))

    def _open_pit(self, flavor: _Flavor) -> str | None:
        try:
            answer = self.request("POST", flavor.open_path(self.index, self.keep_alive))
        except ElasticError as exc:
            if exc.status == 404 and "index_not_found" in exc.body:
                return None
            raise
        pit = answer.get("pit_id" if flavor.opensearch else "id")
        if not isinstance(pit, str):
            raise ElasticError(f"opening a point in time on {self.index!r} gave no id: {answer}")
        return pit

    def _close_pit(self, flavor: _Flavor, pit: str) -> None:
        path, body = flavor.close_request(pit)
        with contextlib.suppress(ElasticError):  # it expires after keep_alive anyway
            self.request("DELETE", path, body)


def _state(field: str, cursor: int | None, seen: set[str]) -> dict[str, Any]:
    return {"cursor_field": field, "cursor": cursor, "ids": sorted(seen)}


def _ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def _query(
    field: str,
    cursor: int | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    settled: int | None,
) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    if since is not None or until is not None:
        bounds: dict[str, Any] = {"format": "epoch_millis"}
        if since is not None:
            bounds["gte"] = _ms(since)
        if until is not None:
            bounds["lt"] = _ms(until)
        # a document without @timestamp is still read, to be reported as a reject
        no_time = {"bool": {"must_not": {"exists": {"field": TIME_FIELD}}}}
        in_range = {"range": {TIME_FIELD: bounds}}
        filters.append({"bool": {"should": [in_range, no_time], "minimum_should_match": 1}})
    if cursor is not None or settled is not None:
        bounds = {"format": "epoch_millis"}
        if cursor is not None:
            bounds["gte"] = cursor
        if settled is not None:
            bounds["lt"] = settled
        span: dict[str, Any] = {"range": {field: bounds}}
        if cursor is None:  # the first run also takes documents without the cursor field
            no_cursor = {"bool": {"must_not": {"exists": {"field": field}}}}
            span = {"bool": {"should": [span, no_cursor], "minimum_should_match": 1}}
        filters.append(span)
    return {"bool": {"filter": filters}} if filters else {"match_all": {}}


def _check_shards(answer: dict[str, Any]) -> None:
    """Partial answers would leave gaps: a failed shard or a timeout fails the export."""
    shards = answer.get("_shards", {})
    if shards.get("failed") or answer.get("timed_out"):
        raise ElasticError(
            f"the search answered only in part (shards {shards}, timed_out "
            f"{answer.get('timed_out')}): retry when the cluster is healthy",
            body=json.dumps(answer)[:2000],
        )


def _take(hit: dict[str, Any], origin: str, rows: LogRows, rejects: list[dict[str, Any]]) -> None:
    source = hit.get("_source")
    raw = json.dumps(source, sort_keys=True, ensure_ascii=False, default=str)
    if not isinstance(source, dict):
        rejects.append({"origin": origin, "reason": "the document has no _source", "raw": raw})
        return
    flat = flatten(source)
    try:
        ts = _timestamp(flat.get(TIME_FIELD))
    except ValueError as exc:
        rejects.append({"origin": origin, "reason": str(exc), "raw": raw})
        return
    rows.add(flat, ts, origin)


def _timestamp(value: Any) -> dt.datetime:
    """``@timestamp`` as an ISO-8601 string (no zone: UTC) or epoch milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"@timestamp {value!r} is out of range") from None
    return parse_timestamp(value)
