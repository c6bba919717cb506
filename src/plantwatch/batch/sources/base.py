"""What every export source gives: chunks of rows in a dataset's schema, with resume state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa


@dataclass(slots=True)
class Chunk:
    """Rows in the dataset's schema, the malformed input met on the way, and where to resume.

    ``state`` is JSON-serialisable and describes the source AFTER this chunk: the exporter
    commits it only once the chunk's files are written, so a crash repeats the chunk whole.
    """

    table: pa.Table
    rejects: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    dataset: str
    #: True when the resume state only holds for one --since/--until range (a cursor over the
    #: time rows were stored); False when it is positional and any range can go on from it
    range_bound: bool

    def describe(self) -> str:
        """What is read, for messages and the checkpoint (``logs:///var/log/pw/*.ndjson``)."""
        ...

    def chunks(
        self,
        state: dict[str, Any] | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        max_rows: int,
    ) -> Iterator[Chunk]: ...
