"""Expand a panel or alert query as Grafana and the ClickHouse plugin do before ClickHouse sees it.

Two steps, in Grafana's order:

1. Template variables (Grafana): ``$name``, ``${name}``, ``${name:singlequote}``,
   ``${name:csv}``, ``${name:sqlstring}``. A multi-value variable becomes its values joined with
   commas, quoted as the format says. Grafana's own ``$__from``/``$__to`` (epoch ms) too.
2. The plugin's macros (``grafana-clickhouse-datasource`` v4, ``pkg/macros/macros.go``):
   ``$__timeFilter(c)``, ``$__timeFilter_ms(c)``, ``$__dateFilter(c)``, ``$__fromTime``,
   ``$__toTime``, ``$__fromTime_ms``, ``$__toTime_ms``, ``$__interval_s``,
   ``$__timeInterval(c)``, ``$__timeInterval_ms(c)``. Both ends of a filter are inclusive, as
   in the plugin; the plain forms have whole seconds.

Anything else that looks like a macro or a variable is an error, so a typo in a dashboard fails
the tests instead of reaching Grafana.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from plantwatch.store.queries import sql_string


class MacroError(ValueError):
    """A query names a macro or a variable that Grafana would not expand."""


@dataclass(frozen=True, slots=True)
class QueryContext:
    """What Grafana knows when it runs a query: the time range (epoch ms), the interval and the
    template variables' current values."""

    from_ms: int
    to_ms: int
    interval_ms: int = 1000
    variables: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def interval_s(self) -> int:
        return max(self.interval_ms // 1000, 1)


# Grafana's interval for a range: range / max data points, rounded to a "nice" step.
_NICE_MS = (
    1, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 60_000,
    120_000, 300_000, 600_000, 900_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000,
    21_600_000, 43_200_000, 86_400_000, 604_800_000,
)  # fmt: skip


def interval_for(from_ms: int, to_ms: int, *, max_points: int = 1000, min_ms: int = 0) -> int:
    """The ``$__interval`` Grafana gives a panel ``max_points`` wide over this range."""
    raw = max((to_ms - from_ms) // max(max_points, 1), min_ms, 1)
    for nice in _NICE_MS:
        if nice >= raw:
            return nice
    return _NICE_MS[-1]


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_MACRO = re.compile(r"\$__([A-Za-z_]+)(\(([^()]*)\))?")


def _variables(sql: str, ctx: QueryContext) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        fmt = m.group(2) or ""
        if name.startswith("__"):
            if name == "__from":
                return str(ctx.from_ms)
            if name == "__to":
                return str(ctx.to_ms)
            return m.group(0)  # a plugin macro: step 2
        if name not in ctx.variables:
            raise MacroError(f"template variable ${name} has no value")
        values = [str(v) for v in ctx.variables[name]]
        if fmt in ("singlequote", "sqlstring"):
            return ",".join(sql_string(v) for v in values)
        if fmt in ("", "csv"):
            return ",".join(values)
        raise MacroError(
            f"template variable format {fmt!r} (in ${{{name}:{fmt}}}) is not used here"
        )

    return _VAR.sub(sub, sql)


def _dt(ms: int) -> str:
    return f"toDateTime({ms // 1000})"


def _dt64(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms})"


def _date(ms: int) -> str:
    return f"toDate('{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d}')"


#: macros of one column argument: (column, context) -> SQL
_COLUMN_MACROS: dict[str, Callable[[str, QueryContext], str]] = {
    "timeFilter": lambda c, x: f"{c} >= {_dt(x.from_ms)} AND {c} <= {_dt(x.to_ms)}",
    "timeFilter_ms": lambda c, x: f"{c} >= {_dt64(x.from_ms)} AND {c} <= {_dt64(x.to_ms)}",
    "dateFilter": lambda c, x: f"{c} >= {_date(x.from_ms)} AND {c} <= {_date(x.to_ms)}",
    "timeInterval": lambda c, x: (
        f"toStartOfInterval(toDateTime({c}), INTERVAL {x.interval_s} second)"
    ),
    "timeInterval_ms": lambda c, x: (
        f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {max(x.interval_ms, 1)} millisecond)"
    ),
}
#: macros without arguments
_PLAIN_MACROS: dict[str, Callable[[QueryContext], str]] = {
    "fromTime": lambda x: _dt(x.from_ms),
    "toTime": lambda x: _dt(x.to_ms),
    "fromTime_ms": lambda x: _dt64(x.from_ms),
    "toTime_ms": lambda x: _dt64(x.to_ms),
    "interval_s": lambda x: str(x.interval_s),
}


def _macros(sql: str, ctx: QueryContext) -> str:
    def sub(m: re.Match[str]) -> str:
        name, args = m.group(1), m.group(3)
        if name in _COLUMN_MACROS:
            if args is None or not args.strip() or "," in args:
                raise MacroError(f"$__{name} takes one column, got ({args or ''})")
            return _COLUMN_MACROS[name](args.strip(), ctx)
        if name in _PLAIN_MACROS:
            return _PLAIN_MACROS[name](ctx) + (m.group(2) or "")
        raise MacroError(f"$__{name} is not a macro of the ClickHouse plugin")

    return _MACRO.sub(sub, sql)


def expand(sql: str, ctx: QueryContext) -> str:
    """The SQL ClickHouse receives for ``sql`` run by Grafana in ``ctx``."""
    return _macros(_variables(sql, ctx), ctx)
