"""What an evaluator returns: a table for people and figures for machines (``--json``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Report:
    """``summary``: the headline figures (also printed under the table); ``details``: anything
    else worth keeping (per-file, per-fault, per-engine figures, the settings used)."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    #: further tables printed after this one (and nested in the JSON)
    sections: list[Report] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "summary": _plain(self.summary),
            "table": {"columns": list(self.columns), "rows": _plain(self.rows)},
            "details": _plain(self.details),
            **({"sections": [s.as_json() for s in self.sections]} if self.sections else {}),
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2, allow_nan=False) + "\n")

    def render(self) -> str:
        cells = [[_cell(v) for v in row] for row in self.rows]
        widths = [len(c) for c in self.columns]
        for row in cells:
            for i, c in enumerate(row):
                widths[i] = max(widths[i], len(c))
        line = "  ".join(f"{c:<{w}}" for c, w in zip(self.columns, widths, strict=True))
        out = [self.title, "", line, "  ".join("-" * w for w in widths)]
        for row in cells:
            out.append(
                "  ".join(
                    f"{c:>{w}}" if _numeric(c) else f"{c:<{w}}"
                    for c, w in zip(row, widths, strict=True)
                )
            )
        if self.summary:
            out.append("")
            out.extend(f"{k}: {_cell(v)}" for k, v in self.summary.items())
        for s in self.sections:
            out.extend(["", "", s.render()])
        return "\n".join(out)


def _numeric(c: str) -> bool:
    return bool(c) and c.lstrip("-").replace(".", "", 1).replace(",", "").isdigit()


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—"
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.1f}"
    return str(v)


def _plain(v: Any) -> Any:
    """JSON-safe: NumPy scalars to Python, non-finite floats to None."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and callable(v.item):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
