"""Rows and helpers for archive tests (importable as ``archive_samples``).

:func:`sample_table`: every dataset schema, with nulls, empty strings, unicode, ``/`` and spaces in
text, extreme integers and millisecond timestamps. :func:`put_part` writes one part file the way
an export does; :class:`CorruptingArchive` corrupts every upload.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from plantwatch.batch import layout
from plantwatch.batch.archive import Archive, FileEntry, encode, file_entry
from plantwatch.batch.layout import Partition

DAY = dt.date(2026, 12, 5)
T0 = dt.datetime(2026, 12, 5, 6, 30, 0, 123000, tzinfo=dt.UTC)

_TEXT = ["line 1/press ü", None, "", 'quote " comma , \n newline', "NA", "m-001"]


def _values(field: pa.Field, rows: int, time_column: str, start: dt.datetime) -> list[Any]:
    t = field.type
    out: list[Any] = []
    for i in range(rows):
        if field.name == time_column:
            out.append(start + dt.timedelta(minutes=7 * i, milliseconds=i))
        elif i % 3 == 1:
            out.append(None)
        elif pa.types.is_timestamp(t):
            out.append(start + dt.timedelta(seconds=i, milliseconds=999))
        elif pa.types.is_string(t):
            out.append(_TEXT[i % len(_TEXT)])
        elif pa.types.is_unsigned_integer(t):
            out.append((1 << t.bit_width) - 1 if i % 2 else i)
        elif pa.types.is_floating(t):
            out.append(0.25 * i - 1e300 * (t.bit_width == 64) * (i % 2))
        else:
            raise AssertionError(f"no sample for {field}")
    return out


def sample_table(dataset: str, rows: int = 6, start: dt.datetime = T0) -> pa.Table:
    """``rows`` rows in the dataset's schema, the time column ascending from ``start``."""
    schema = layout.schema(dataset)
    time_column = layout.TIME_COLUMN[dataset]
    return pa.table(
        {f.name: pa.array(_values(f, rows, time_column, start), f.type) for f in schema},
        schema=schema,
    )


def put_part(
    archive: Archive,
    p: Partition,
    run_id: str = "r1",
    chunk: int = 0,
    fmt: str = "parquet",
    table: pa.Table | None = None,
) -> FileEntry:
    """Write ``table`` (default: :func:`sample_table`) as one part file of ``p`` and list it in
    the partition's manifest, as an export does; returns its manifest entry."""
    table = sample_table(p.dataset) if table is None else table
    name = layout.part_name(run_id, chunk, fmt)
    data = encode(table, fmt)
    digests = archive.put_bytes(f"{p.path()}/{name}", data)
    entry = file_entry(table, p.dataset, name, fmt, data, run_id, digests=digests)
    archive.add_files(p, [entry])
    return entry


class CorruptingArchive(Archive):
    """Writes one flipped byte: what a corrupted upload looks like to the verification."""

    def _write(self, path: str, data: bytes) -> None:
        super()._write(path, bytes([data[0] ^ 1]) + data[1:])
