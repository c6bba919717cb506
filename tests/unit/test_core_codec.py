"""Readings to and from bytes: JSON, JSON lines, Arrow IPC, tolerant decoding and dispatch."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from plantwatch.core.codec import (
    ARROW,
    CONTENT_TYPES,
    JSON,
    NDJSON,
    Decoded,
    decode,
    decode_arrow,
    decode_json_batch,
    decode_reading,
    encode_arrow,
    encode_json_batch,
    encode_reading,
    encode_records,
    ts_ms,
)
from plantwatch.core.deadletter import Reason
from plantwatch.core.errors import CodecError, InvalidReadingError, UnknownKindError
from plantwatch.core.reading import READING_SCHEMA, TS_TYPE, Reading, conform, to_table

T0 = datetime(2027, 1, 15, 8, 0, 0, 250_000, tzinfo=UTC)
T0_MS = int(datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC).timestamp()) * 1000 + 250


def reading(**overrides: Any) -> Reading:
    fields: dict[str, Any] = {
        "machine_id": "press-01",
        "sensor_id": "bearing-de",
        "kind": "vibration",
        "value": 2.5,
        "unit": "mm/s",
        "ts": T0,
        "seq": 7,
    }
    fields.update(overrides)
    return Reading(**fields)


def record(**overrides: Any) -> dict[str, Any]:
    """A well-formed JSON record, as a gateway would send it."""
    rec: dict[str, Any] = {
        "machine_id": "press-01",
        "sensor_id": "bearing-de",
        "kind": "vibration",
        "value": 2.5,
        "unit": "mm/s",
        "ts": "2027-01-15T08:00:00.250Z",
        "seq": 7,
        "quality": "good",
        "schema_version": 1,
    }
    rec.update(overrides)
    return rec


def lines(*items: Any) -> bytes:
    return "".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items).encode()


def sample_table() -> pa.Table:
    return to_table(
        [
            reading(),
            reading(
                machine_id="pump-7",
                sensor_id="outlet",
                kind="pressure",
                value=-0.125,
                unit="psi",
                ts=T0 + timedelta(milliseconds=1),
                seq=0,
                quality="uncertain",
            ),
            reading(kind="temperature", value=1e-9, unit="°F", ts=T0 + timedelta(days=3), seq=99),
        ]
    )


# -- one reading as JSON -----------------------------------------------------------------------


def test_encode_reading_writes_a_plain_json_object() -> None:
    obj = json.loads(encode_reading(reading(unit="µm/s")))
    assert obj == {
        "machine_id": "press-01",
        "sensor_id": "bearing-de",
        "kind": "vibration",
        "value": 2.5,
        "unit": "µm/s",
        "ts": "2027-01-15T08:00:00.250Z",
        "seq": 7,
        "quality": "good",
        "schema_version": 1,
    }


def test_one_reading_round_trips_through_json() -> None:
    for r in (reading(), reading(kind="flow", unit="gpm", value=-0.0, quality="bad", seq=0)):
        assert decode_reading(encode_reading(r)) == r


def test_decode_reading_accepts_epoch_ms_and_offsets_and_defaults() -> None:
    payload = json.dumps(
        {k: v for k, v in record(ts=T0_MS, value=3).items() if k not in ("quality",)}
    ).encode()
    r = decode_reading(payload)
    assert r.ts == T0
    assert r.value == 3.0
    assert r.quality == "good"
    r = decode_reading(json.dumps(record(ts="2027-01-15T10:00:00.250+02:00")).encode())
    assert r.ts == T0


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"a string"',
        json.dumps(record(ts="yesterday")).encode(),
        json.dumps(record(ts="2027-01-15T08:00:00")).encode(),  # no offset
        json.dumps(record(ts=None)).encode(),
        json.dumps(record(ts=1e20)).encode(),  # far beyond any calendar
    ],
)
def test_decode_reading_refuses_bytes_that_are_not_a_reading(payload: bytes) -> None:
    with pytest.raises(CodecError):
        decode_reading(payload)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("value", "2.5"),
        ("value", True),
        ("value", None),
        ("seq", 1.5),
        ("seq", "7"),
        ("seq", -1),
        ("schema_version", "1"),
        ("quality", "excellent"),
        ("machine_id", ""),
    ],
)
def test_decode_reading_names_the_invalid_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidReadingError) as info:
        decode_reading(json.dumps(record(**{field: value})).encode())
    assert info.value.field == field
    assert info.value.value == value


def test_decode_reading_refuses_an_unknown_kind() -> None:
    with pytest.raises(UnknownKindError) as info:
        decode_reading(json.dumps(record(kind="torque")).encode())
    assert info.value.value == "torque"


# -- JSON lines --------------------------------------------------------------------------------


def test_a_batch_round_trips_through_json_lines() -> None:
    table = sample_table()
    payload = encode_json_batch(table)
    assert payload.count(b"\n") == 3
    assert json.loads(payload.splitlines()[1])["ts"] == "2027-01-15T08:00:00.251Z"
    decoded = decode_json_batch(payload)
    assert decoded.rejects == []
    assert decoded.table.equals(table)


def test_nulls_round_trip_through_json_lines() -> None:
    table = conform(pa.table({"machine_id": ["m1", None], "value": [None, 1.5]}))
    decoded = decode_json_batch(encode_json_batch(table))
    assert decoded.rejects == []
    assert decoded.table.equals(table)


def test_an_empty_batch_is_empty_bytes() -> None:
    assert encode_json_batch(READING_SCHEMA.empty_table()) == b""
    decoded = decode_json_batch(b"")
    assert decoded.table.num_rows == 0
    assert decoded.rejects == []


def test_a_json_array_of_objects_is_a_batch() -> None:
    payload = json.dumps([record(seq=1), record(seq=2), 42]).encode()
    decoded = decode_json_batch(b"  " + payload)
    assert decoded.table.column("seq").to_pylist() == [1, 2]
    [reject] = decoded.rejects
    assert reject.reason is Reason.MALFORMED
    assert reject.payload == "42"


def test_a_broken_json_array_is_one_reject() -> None:
    decoded = decode_json_batch(b'[{"seq": 1},')
    assert decoded.table.num_rows == 0
    assert [r.reason for r in decoded.rejects] == [Reason.MALFORMED]


def test_tolerant_decoding_turns_each_bad_line_into_a_reject() -> None:
    bad = {
        "{not json": Reason.MALFORMED,
        "42": Reason.MALFORMED,
        '["a", "list"]': Reason.MALFORMED,
        json.dumps(record(machine_id=5)): Reason.MALFORMED,
        json.dumps(record(kind=["vibration"])): Reason.MALFORMED,
        json.dumps(record(value="2.5")): Reason.MALFORMED,
        json.dumps(record(value=True)): Reason.MALFORMED,
        json.dumps(record(seq=-1)): Reason.MALFORMED,
        json.dumps(record(seq=1.5)): Reason.MALFORMED,
        json.dumps(record(seq=2**64)): Reason.MALFORMED,
        json.dumps(record(ts="yesterday")): Reason.BAD_TIMESTAMP,
        json.dumps(record(ts="2027-01-15 08:00:00")): Reason.BAD_TIMESTAMP,
        json.dumps(record(ts=[2027, 1, 15])): Reason.BAD_TIMESTAMP,
        json.dumps(record(ts=1e20)): Reason.BAD_TIMESTAMP,
        json.dumps(record(schema_version=256)): Reason.UNSUPPORTED_SCHEMA,
    }
    payload = lines(record(seq=1), *bad, "", "   ", record(seq=2))

    decoded = decode_json_batch(payload)

    assert decoded.table.column("seq").to_pylist() == [1, 2]
    assert {r.payload: r.reason for r in decoded.rejects} == bad
    assert len(decoded.rejects) == len(bad)
    for r in decoded.rejects:
        assert r.detail


def test_a_reject_keeps_the_key_when_it_is_readable() -> None:
    payload = lines(
        record(machine_id="m9", sensor_id="s9", seq=41, ts="never"),
        record(machine_id="m9", sensor_id="s9", seq=42, schema_version=300),
        record(machine_id="m9", sensor_id="s9", seq=-3, ts="never"),
        record(machine_id=9, sensor_id="s9", seq=43),
        "{garbage",
    )
    keys = sorted(
        (r.machine_id, r.sensor_id, r.seq if r.seq is not None else -1)
        for r in decode_json_batch(payload).rejects
    )
    assert keys == [
        ("", "", -1),
        ("", "", -1),
        ("m9", "s9", -1),  # seq unreadable, the rest kept
        ("m9", "s9", 41),
        ("m9", "s9", 42),
    ]


def test_type_problems_are_left_to_validation_not_the_decoder() -> None:
    # Missing fields and unknown kinds decode into rows; validation dead-letters them later.
    decoded = decode_json_batch(lines({"machine_id": "m1"}, record(kind="torque")))
    assert decoded.rejects == []
    assert decoded.table.column("kind").to_pylist() == [None, "torque"]
    assert decoded.table.column("value").to_pylist() == [None, 2.5]


def test_integer_values_become_floats() -> None:
    decoded = decode_json_batch(lines(record(value=3), record(value=2**70)))
    assert decoded.rejects == []
    assert decoded.table.column("value").to_pylist() == [3.0, float(2**70)]
    [reject] = decode_json_batch(lines(record(value=10**400))).rejects
    assert reject.reason is Reason.MALFORMED


def test_invalid_utf8_is_one_malformed_reject() -> None:
    decoded = decode_json_batch(b'{"seq": 1}\n\xff\xfe\n')
    assert decoded.table.num_rows == 0
    assert [r.reason for r in decoded.rejects] == [Reason.MALFORMED]


def test_nan_and_infinity_survive_encode_records() -> None:
    payload = encode_records(
        [record(value=math.nan, seq=1), record(value=math.inf, seq=2), record(value=None, seq=3)]
    )
    decoded = decode_json_batch(payload)
    assert decoded.rejects == []
    values = decoded.table.column("value")
    assert values.null_count == 1  # only the missing one; NaN is a value, not a null
    assert pc.is_nan(values).to_pylist() == [True, False, None]
    assert values.to_pylist()[1] == math.inf


def test_encode_records_formats_datetimes_and_keeps_unknown_fields() -> None:
    payload = encode_records([{"ts": T0, "seq": 1, "firmware": "1.2"}])
    assert json.loads(payload) == {"ts": "2027-01-15T08:00:00.250Z", "seq": 1, "firmware": "1.2"}
    assert decode_json_batch(payload).table.column("seq").to_pylist() == [1]


@pytest.mark.parametrize(
    "ts",
    [
        T0_MS,
        float(T0_MS),
        "2027-01-15T08:00:00.250Z",
        "2027-01-15T08:00:00.250+00:00",
        "2027-01-15T10:00:00.250+02:00",
        "2027-01-15T02:30:00.250-05:30",
    ],
)
def test_timestamps_in_every_form_land_on_the_same_millisecond(ts: Any) -> None:
    decoded = decode_json_batch(lines(record(ts=ts)))
    assert decoded.rejects == []
    assert decoded.table.column("ts").type == TS_TYPE
    assert decoded.table.column("ts").to_pylist() == [T0]
    assert ts_ms(decoded.table).tolist() == [T0_MS]


def test_epoch_ms_is_exact_to_the_millisecond() -> None:
    ms = [0, 1, 999, 1_234_567_890_127, 1_700_000_000_001, 1_800_000_000_999, 4_102_444_800_123]
    decoded = decode_json_batch(lines(*(record(ts=m) for m in ms)))
    assert ts_ms(decoded.table).tolist() == ms


def test_ts_ms_marks_missing_times() -> None:
    table = conform(pa.table({"ts": pa.array([T0_MS, None]).cast(TS_TYPE)}))
    assert ts_ms(table).tolist() == [T0_MS, np.iinfo(np.int64).min]


# -- Arrow -------------------------------------------------------------------------------------


def test_a_batch_round_trips_through_arrow() -> None:
    table = conform(
        pa.table(
            {
                "machine_id": ["m1", "m2", None],
                "sensor_id": ["s1", "s2", "s3"],
                "kind": ["vibration", "pressure", "current"],
                "value": [1.25, None, math.nan],
                "unit": ["mm/s", None, "A"],
                "ts": pa.array([T0_MS, T0_MS + 1, None], pa.int64()).cast(TS_TYPE),
                "seq": pa.array([1, 2**63, 0], pa.uint64()),
                "quality": ["good", "bad", None],
            }
        )
    )
    out = decode_arrow(encode_arrow(table))
    assert out.schema.equals(READING_SCHEMA)
    assert out.drop_columns(["value"]).equals(table.drop_columns(["value"]))  # NaN != NaN
    assert out.column("value").to_pylist()[:2] == [1.25, None]
    assert math.isnan(out.column("value")[2].as_py())
    assert out.column("ts").cast(pa.int64()).to_pylist() == [T0_MS, T0_MS + 1, None]
    assert out.column("seq").to_pylist() == [1, 2**63, 0]


def test_encode_arrow_conforms_its_input() -> None:
    out = decode_arrow(encode_arrow(pa.table({"value": pa.array([1, 2], pa.int16())})))
    assert out.schema.equals(READING_SCHEMA)
    assert out.column("value").to_pylist() == [1.0, 2.0]
    assert out.column("machine_id").null_count == 2


def realistic_batch(n: int) -> pa.Table:
    rng = np.random.default_rng(7)
    i = np.arange(n)
    machines = np.array([f"press-{m:02d}" for m in range(10)])
    sensors = np.array([f"bearing-{s}" for s in range(10)])
    return conform(
        pa.table(
            {
                "machine_id": machines[i % 10],
                "sensor_id": sensors[(i // 10) % 10],
                "kind": ["vibration"] * n,
                "value": rng.normal(2.5, 0.3, n),
                "unit": ["mm/s"] * n,
                "ts": pa.array(T0_MS + 10 * i).cast(TS_TYPE),
                "seq": pa.array(i // 100 + 1, pa.uint64()),
                "quality": ["good"] * n,
                "schema_version": pa.array(np.ones(n, np.uint8)),
            }
        )
    )


def test_arrow_is_much_smaller_than_json_lines() -> None:
    table = realistic_batch(10_000)
    arrow, ndjson = encode_arrow(table), encode_json_batch(table)
    assert len(arrow) * 4 < len(ndjson), (len(arrow), len(ndjson))
    assert decode_arrow(arrow).equals(table)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not arrow at all",
        bytes(range(256)) * 4,
    ],
)
def test_decode_arrow_raises_codec_error_on_garbage(payload: bytes) -> None:
    with pytest.raises(CodecError):
        decode_arrow(payload)


def test_corrupt_arrow_bytes_become_a_malformed_reject_never_an_exception() -> None:
    good = encode_arrow(realistic_batch(200))
    rng = np.random.default_rng(3)
    flipped = []
    for _ in range(30):
        b = bytearray(good)
        for pos in rng.integers(0, len(b), 4):
            b[pos] ^= 0xFF
        flipped.append(bytes(b))
    truncated = [good[: len(good) // k] for k in (2, 3, 5, 10, 50)]
    noise = [rng.bytes(int(n)) for n in rng.integers(1, 300, 20)]

    rejected = 0
    for payload in flipped + truncated + noise:
        decoded = decode(ARROW, payload)
        if decoded.rejects:  # a flip can land on padding, leaving the batch intact
            rejected += 1
            assert [r.reason for r in decoded.rejects] == [Reason.MALFORMED]
            assert decoded.table.num_rows == 0
            assert decoded.rejects[0].payload == payload[:4096].hex()
        else:
            assert decoded.table.schema.equals(READING_SCHEMA)
    assert rejected >= len(noise)


def test_an_arrow_stream_of_the_wrong_types_is_a_malformed_reject() -> None:
    wrong = pa.table({"value": ["fast", "slow"]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, wrong.schema) as writer:
        writer.write_table(wrong)
    decoded = decode(ARROW, sink.getvalue().to_pybytes())
    assert decoded.table.num_rows == 0
    assert [r.reason for r in decoded.rejects] == [Reason.MALFORMED]


# -- dispatch ----------------------------------------------------------------------------------


def test_decode_dispatches_on_content_type() -> None:
    table = sample_table()
    assert set(CONTENT_TYPES) == {ARROW, NDJSON, JSON}
    for content_type, payload in (
        (ARROW, encode_arrow(table)),
        (NDJSON, encode_json_batch(table)),
    ):
        decoded = decode(content_type, payload)
        assert isinstance(decoded, Decoded)
        assert decoded.rejects == []
        assert decoded.table.equals(table), content_type


def test_decode_json_is_one_reading_even_pretty_printed() -> None:
    r = reading()
    compact = decode(JSON, encode_reading(r))
    pretty = decode(JSON, json.dumps(json.loads(encode_reading(r)), indent=2).encode())
    for decoded in (compact, pretty):
        assert decoded.rejects == []
        assert decoded.table.equals(to_table([r]))


def test_decode_json_of_garbage_is_one_reject() -> None:
    decoded = decode(JSON, b"{oops")
    assert decoded.table.num_rows == 0
    assert [r.reason for r in decoded.rejects] == [Reason.MALFORMED]


def test_decode_of_an_unknown_content_type_is_a_reject() -> None:
    decoded = decode("text/csv", b"machine_id,value\nm1,2.5\n")
    assert decoded.table.num_rows == 0
    [reject] = decoded.rejects
    assert reject.reason is Reason.MALFORMED
    assert "text/csv" in reject.detail
    assert ARROW in reject.detail  # says what to use
    assert reject.payload.startswith("machine_id,value")
