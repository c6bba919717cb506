"""The ClickHouse plugin's query, as a dataquery of grafana-foundation-sdk, and what every panel
query is expected to return (so the tests can run it and check the columns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self, cast

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import Dashboard, DataSourceRef

PLUGIN = "grafana-clickhouse-datasource"
PLUGIN_VERSION = "4.10.1"
DATASOURCE_UID = "plantwatch-clickhouse"
DATASOURCE = DataSourceRef(type_val=PLUGIN, uid=DATASOURCE_UID)

# the plugin's result formats (src/types/queryBuilder.ts: Format)
FORMATS = {"timeseries": 0, "table": 1}
QueryKind = Literal["timeseries", "table"]


class ClickHouseQuery(cogvariants.Dataquery):
    """One SQL query of the ClickHouse plugin (its "SQL editor" mode)."""

    def __init__(self, ref_id: str, raw_sql: str, kind: QueryKind = "table") -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.kind = kind

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": {"type": PLUGIN, "uid": DATASOURCE_UID},
            "editorType": "sql",
            "format": FORMATS[self.kind],
            "queryType": self.kind,
            "rawSql": self.raw_sql,
            "pluginVersion": PLUGIN_VERSION,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        kind = data.get("queryType", "table")
        return cls(str(data["refId"]), str(data["rawSql"]), kind if kind in FORMATS else "table")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClickHouseQuery) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]


class Query(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, ref_id: str, raw_sql: str, kind: QueryKind = "table") -> None:
        self._q = ClickHouseQuery(ref_id, raw_sql, kind)

    def build(self) -> ClickHouseQuery:
        return self._q


def register() -> None:
    """Teach the SDK's loader the plugin's query type (``Dashboard.from_json`` then gives
    :class:`ClickHouseQuery` objects, not untyped bags)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=PLUGIN, from_json_hook=ClickHouseQuery.from_json)
    )


@dataclass(frozen=True, slots=True)
class PanelQuery:
    """A query of a dashboard: where it is and the columns its panel reads."""

    dashboard: str  # dashboard uid
    panel: str  # panel title ("annotation: ..." and "variable: ..." for the others)
    ref_id: str
    sql: str
    kind: QueryKind
    columns: tuple[str, ...]
    #: the template variable this query is repeated over (a repeated panel), if any
    repeat: str = ""


def load_dashboard(data: dict[str, Any]) -> Dashboard:
    """A dashboard's JSON in the SDK's models. The SDK types an annotation's ``target`` as
    Grafana's built-in annotation target; a ClickHouse annotation keeps its query instead."""
    register()
    board = Dashboard.from_json(data)
    listed = (data.get("annotations") or {}).get("list") or []
    models = (board.annotations.list_val if board.annotations else None) or []
    for model, raw in zip(models, listed, strict=False):
        target = raw.get("target") or {}
        if (target.get("datasource") or {}).get("type") == PLUGIN:
            model.target = cast(Any, ClickHouseQuery.from_json(target))
    return board
