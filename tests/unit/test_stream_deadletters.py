"""Every dead-letter reason, through the pipeline: the record is kept with its reason, detail
and original payload, and counted; the rest of the batch goes on."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest

from plantwatch.core import codec
from plantwatch.core.deadletter import REASONS, Reason
from plantwatch.stream import Pipeline, PipelineConfig

from batches import T0_MS, readings

NOW = T0_MS + 60_000


def run(table: pa.Table, rejects: list[codec.Reject] | None = None) -> tuple[Pipeline, list[dict]]:
    p = Pipeline()
    out = p.process(table, now_ms=NOW, rejects=rejects or [], source="test.raw")
    assert out.counts.received == out.counts.stored + out.counts.duplicates + sum(
        out.counts.dead.values()
    )
    return p, out.dead_letters.to_pylist()


def one_bad(**overrides: object) -> pa.Table:
    """Three good readings and, in the middle, one with ``overrides``."""
    rows = readings(values=[1.0, 2.0, 3.0]).to_pylist()
    rows[1].update(overrides)
    return pa.Table.from_pylist(rows, schema=readings(values=[1.0]).schema)


@pytest.mark.parametrize(
    ("overrides", "reason", "in_detail"),
    [
        ({"machine_id": None}, Reason.MISSING_FIELD, "machine_id"),
        ({"machine_id": ""}, Reason.MISSING_FIELD, "machine_id"),
        ({"sensor_id": None}, Reason.MISSING_FIELD, "sensor_id"),
        ({"seq": None}, Reason.MISSING_FIELD, "seq"),
        ({"kind": None}, Reason.MISSING_FIELD, "kind"),
        ({"unit": None}, Reason.MISSING_FIELD, "unit"),
        ({"value": None}, Reason.MISSING_FIELD, "value"),
        ({"ts": None}, Reason.MISSING_FIELD, "ts"),
        ({"schema_version": 9}, Reason.UNSUPPORTED_SCHEMA, "schema_version 9"),
        ({"kind": "torque"}, Reason.UNKNOWN_KIND, "'torque'"),
        ({"unit": "g"}, Reason.BAD_UNIT, "acceleration is not velocity"),
        ({"unit": "furlongs"}, Reason.BAD_UNIT, "furlongs"),
        ({"value": math.nan}, Reason.NON_FINITE_VALUE, "nan"),
        ({"value": math.inf}, Reason.NON_FINITE_VALUE, "inf"),
        ({"quality": "great"}, Reason.BAD_QUALITY, "'great'"),
    ],
)
def test_each_reason_keeps_the_record_and_the_rest_of_the_batch(
    overrides: dict[str, object], reason: Reason, in_detail: str
) -> None:
    _, dead = run(one_bad(**overrides))
    assert [d["reason"] for d in dead] == [reason.value]
    assert in_detail in dead[0]["detail"]
    assert dead[0]["source"] == "test.raw"
    payload = json.loads(dead[0]["payload"])
    for field, value in overrides.items():
        if isinstance(value, float) and not math.isfinite(value):
            assert str(payload[field]).lower() in {"nan", "inf", "infinity"}
        elif field != "ts":
            assert payload[field] == value


def test_future_and_too_old_timestamps() -> None:
    p = Pipeline()
    skew, age = p.config.max_future_skew_s * 1000, p.config.max_age_s * 1000
    table = readings(values=[1.0, 2.0, 3.0], ts_ms=[NOW + skew + 1, NOW - age - 1, NOW])
    out = p.process(table, now_ms=NOW)
    assert sorted(out.dead_letters.column("reason").to_pylist()) == [
        Reason.FUTURE_TIMESTAMP.value,
        Reason.TOO_OLD.value,
    ]
    details = out.dead_letters.column("detail").to_pylist()
    assert any("check the device clock" in d for d in details)
    assert any("days old" in d for d in details)
    assert out.readings.num_rows == 1
    # exactly at the limit is still accepted
    edge = readings(values=[1.0], ts_ms=[NOW + skew], seq=[9])
    assert p.process(edge, now_ms=NOW).readings.num_rows == 1


def test_json_rejects_become_dead_letters_with_their_reasons() -> None:
    lines = [
        b"not json",
        b"[1, 2]",
        json.dumps(
            {
                "machine_id": "m1",
                "sensor_id": "s1",
                "kind": "vibration",
                "value": "n/a",
                "unit": "mm/s",
                "ts": "2027-01-15T08:00:00Z",
                "seq": 5,
            }
        ).encode(),
        json.dumps(
            {
                "machine_id": "m1",
                "sensor_id": "s2",
                "kind": "vibration",
                "value": 1.0,
                "unit": "mm/s",
                "ts": "yesterday",
                "seq": 1,
            }
        ).encode(),
    ]
    decoded = codec.decode(codec.NDJSON, b"\n".join(lines))
    _, dead = run(decoded.table, decoded.rejects)
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == sorted([Reason.MALFORMED.value] * 3 + [Reason.BAD_TIMESTAMP.value])
    keyed = [d for d in dead if d["seq"] is not None]
    assert {(d["machine_id"], d["sensor_id"], d["seq"]) for d in keyed} == {
        ("m1", "s1", 5),
        ("m1", "s2", 1),
    }


def test_a_resent_reject_is_a_duplicate_not_a_second_dead_letter() -> None:
    line = json.dumps(
        {
            "machine_id": "m1",
            "sensor_id": "s1",
            "kind": "vibration",
            "value": "n/a",
            "unit": "mm/s",
            "ts": "2027-01-15T08:00:00Z",
            "seq": 1,
        }
    ).encode()
    p = Pipeline()
    first = codec.decode(codec.NDJSON, line)
    out1 = p.process(first.table, now_ms=NOW, rejects=first.rejects)
    out2 = p.process(first.table, now_ms=NOW, rejects=codec.decode(codec.NDJSON, line).rejects)
    assert out1.dead_letters.num_rows == 1
    assert out2.dead_letters.num_rows == 0
    assert out2.counts.duplicates == 1


def test_stale_sequence_beyond_the_dedupe_horizon() -> None:
    p = Pipeline(PipelineConfig(dedupe_horizon=100))
    p.process(readings(values=[1.0, 2.0], seq=[1, 500]), now_ms=NOW)  # gap wider than 100
    out = p.process(readings(values=[3.0], seq=[4]), now_ms=NOW)
    assert out.dead_letters.column("reason").to_pylist() == [Reason.STALE_SEQUENCE.value]
    assert out.counts.duplicates == 0


def test_the_first_failing_check_names_the_reason() -> None:
    # unknown kind *and* NaN value: the kind is reported (it is checked first)
    _, dead = run(one_bad(kind="torque", value=math.nan))
    assert [d["reason"] for d in dead] == [Reason.UNKNOWN_KIND.value]


def test_reason_codes_are_the_documented_set() -> None:
    assert set(REASONS) == {
        "malformed",
        "missing_field",
        "unsupported_schema_version",
        "unknown_kind",
        "bad_unit",
        "non_finite_value",
        "bad_timestamp",
        "future_timestamp",
        "too_old",
        "bad_quality",
        "stale_sequence",
    }


def test_details_belong_to_their_own_rows() -> None:
    rows = readings(values=[1.0, 2.0, 3.0]).to_pylist()
    rows[0].update(machine_id=None, schema_version=7)  # first reason wins: missing machine_id
    rows[2].update(schema_version=9)
    table = pa.Table.from_pylist(rows, schema=readings(values=[1.0]).schema)
    _, dead = run(table)
    got = sorted((d["reason"], d["detail"]) for d in dead)
    assert got == [
        (Reason.MISSING_FIELD.value, "machine_id is missing or empty"),
        (Reason.UNSUPPORTED_SCHEMA.value, "schema_version 9 (supported: 1)"),
    ]
