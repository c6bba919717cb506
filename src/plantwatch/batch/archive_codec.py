"""Part files to and from bytes: Parquet (zstd) and CSV in the archive's one text form.

CSV has a header row, ``,`` separators, timestamps as ``2026-12-05T06:30:00.123Z`` and null as an
unquoted empty field (an empty *string* is written quoted, ``""``, so the two stay apart).
Reading either format back gives exactly the dataset's Arrow schema
(:func:`plantwatch.batch.layout.schema`).
Use these through :mod:`plantwatch.batch.archive`, which re-exports them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from plantwatch.batch import layout
from plantwatch.core.errors import PlantwatchError


class ArchiveError(PlantwatchError):
    """The archive cannot be read or written; the message names the URL and what to check."""


class ChecksumMismatchError(ArchiveError):
    """Bytes in the archive differ from what was written (an upload was removed again)."""

    def __init__(self, path: str, expected: str, actual: str, method: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        self.method = method
        super().__init__(
            f"checksum mismatch for {path} ({method}): expected {expected}, got {actual}; "
            "the file was altered or the upload was corrupted: export it again"
        )


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One part file as its partition's ``_manifest.json`` lists it."""

    name: str
    format: str
    rows: int
    bytes: int
    sha256: str
    md5: str
    min_ts: str | None
    max_ts: str | None
    run_id: str
    written_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FileEntry:
        return cls(
            name=str(obj["name"]),
            format=str(obj["format"]),
            rows=int(obj["rows"]),
            bytes=int(obj["bytes"]),
            sha256=str(obj["sha256"]),
            md5=str(obj["md5"]),
            min_ts=obj.get("min_ts"),
            max_ts=obj.get("max_ts"),
            run_id=str(obj["run_id"]),
            written_at=str(obj["written_at"]),
        )


_CSV_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # %S of a ms timestamp carries ".123"


def checksums(data: bytes) -> tuple[str, str]:
    """``(sha256, md5)`` of ``data`` as hex: what manifests record and uploads are checked by."""
    return (
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
    )


def encode(table: pa.Table, fmt: str) -> bytes:
    """``table`` as the bytes of one part file (``parquet``: zstd, one row group; ``csv``)."""
    layout.check_format(fmt)
    buf = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, buf, compression="zstd", row_group_size=max(1, table.num_rows))
        return buf.getvalue()
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            column = pc.strftime(pc.cast(column, layout.TS), format=_CSV_TS_FORMAT)
        columns.append(column)
    text = pa.Table.from_arrays(columns, names=table.column_names)
    pacsv.write_csv(text, buf, pacsv.WriteOptions(include_header=True, delimiter=","))
    return buf.getvalue()


def conform(table: pa.Table, dataset: str) -> pa.Table:
    """``table`` with exactly the dataset's columns, order and types (no schema metadata)."""
    try:
        return layout.conform(table, dataset)
    except layout.LayoutError as exc:
        raise ArchiveError(f"a file of the archive: {exc}") from exc


def decode(data: bytes, fmt: str, dataset: str) -> pa.Table:
    """The rows of one part file, in exactly the dataset's schema."""
    layout.check_format(fmt)
    schema = layout.schema(dataset)
    try:
        if fmt == "parquet":
            table = pq.read_table(io.BytesIO(data))
        else:
            table = pacsv.read_csv(
                io.BytesIO(data),
                parse_options=pacsv.ParseOptions(delimiter=",", newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={f.name: f.type for f in schema},
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ArchiveError(f"cannot read a {dataset} {fmt} file: {exc}") from exc
    return conform(table, dataset)


def time_range(table: pa.Table, dataset: str) -> tuple[str | None, str | None]:
    """``(min_ts, max_ts)`` of the dataset's time column as ``iso_ms`` text; None when empty."""
    column = table.column(layout.TIME_COLUMN[dataset])
    bounds = pc.min_max(column)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return (
        None if low is None else layout.iso_ms(low),
        None if high is None else layout.iso_ms(high),
    )


def file_entry(
    table: pa.Table,
    dataset: str,
    name: str,
    fmt: str,
    data: bytes,
    run_id: str,
    *,
    digests: tuple[str, str] | None = None,
) -> FileEntry:
    """The manifest entry of a part file holding ``table`` encoded as ``data``. ``digests`` is
    ``(sha256, md5)`` of ``data`` when already known (what :meth:`Archive.put_bytes` returns),
    so the bytes are not hashed again."""
    low, high = time_range(table, dataset)
    sha256, md5 = checksums(data) if digests is None else digests
    return FileEntry(
        name=name,
        format=layout.check_format(fmt),
        rows=table.num_rows,
        bytes=len(data),
        sha256=sha256,
        md5=md5,
        min_ts=low,
        max_ts=high,
        run_id=run_id,
        written_at=layout.iso_ms(dt.datetime.now(dt.UTC)),
    )
