"""Dead letters: records the stream could not accept, each with a reason code.

A dead letter keeps the record as it arrived (``payload``, JSON) so it can be inspected, fixed
and replayed. Reason codes are part of the contract: dashboards and alerts group by them.
"""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa

from plantwatch.core.reading import TS_TYPE


class Reason(StrEnum):
    MALFORMED = "malformed"  # bytes or a record that does not decode into a reading
    MISSING_FIELD = "missing_field"  # machine_id, sensor_id, kind, value, ts or seq absent
    UNSUPPORTED_SCHEMA = "unsupported_schema_version"
    UNKNOWN_KIND = "unknown_kind"
    BAD_UNIT = "bad_unit"  # unit that cannot be converted to the canonical unit of its kind
    NON_FINITE_VALUE = "non_finite_value"  # NaN or infinite
    BAD_TIMESTAMP = "bad_timestamp"  # unparseable event time
    FUTURE_TIMESTAMP = "future_timestamp"  # event time too far ahead of the pipeline clock
    TOO_OLD = "too_old"  # event time older than the maximum age
    BAD_QUALITY = "bad_quality"  # quality other than good / uncertain / bad
    STALE_SEQUENCE = "stale_sequence"  # seq older than the de-duplication horizon of its sensor


REASONS: tuple[str, ...] = tuple(r.value for r in Reason)

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("received_at", TS_TYPE, nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("machine_id", pa.string(), nullable=False),
        pa.field("sensor_id", pa.string(), nullable=False),
        pa.field("seq", pa.uint64()),
        pa.field("payload", pa.string(), nullable=False),
    ]
)
