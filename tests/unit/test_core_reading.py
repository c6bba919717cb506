"""The Reading contract: validation, table round trip, conform."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pytest

from plantwatch.core.errors import ContractError, InvalidReadingError, UnknownKindError
from plantwatch.core.kinds import SensorKind
from plantwatch.core.reading import (
    READING_SCHEMA,
    SCHEMA_VERSION,
    TS_TYPE,
    Quality,
    Reading,
    conform,
    from_table,
    to_table,
)

T0 = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC)


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


def test_a_valid_reading_normalises_its_enums_and_time() -> None:
    plus2 = timezone(timedelta(hours=2))
    r = reading(kind="temperature", unit="°C", quality="uncertain", ts=T0.astimezone(plus2))
    assert r.kind is SensorKind.TEMPERATURE
    assert r.quality is Quality.UNCERTAIN
    assert r.ts == T0
    assert r.ts.utcoffset() == timedelta(0)
    assert r.ts.hour == 8  # shown in UTC, not in the sender's zone
    assert r.schema_version == SCHEMA_VERSION
    assert reading().quality is Quality.GOOD


def test_a_reading_is_frozen() -> None:
    r = reading()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.value = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("machine_id", ""),
        ("sensor_id", ""),
        ("value", math.nan),
        ("value", math.inf),
        ("value", -math.inf),
        ("value", "2.5"),
        ("value", None),
        ("value", True),
        ("ts", datetime(2027, 1, 15, 8, 0, 0)),  # naive
        ("ts", None),
        ("seq", -1),
        ("seq", None),
        ("quality", "excellent"),
    ],
)
def test_invalid_fields_are_named_with_their_value(field: str, value: Any) -> None:
    with pytest.raises(InvalidReadingError) as info:
        reading(**{field: value})
    err = info.value
    assert err.field == field
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(err.value)
    else:
        assert err.value == value
    assert field in str(err)
    assert err.problem in str(err)
    assert isinstance(err, ContractError)
    assert isinstance(err, ValueError)


def test_an_unknown_kind_is_an_unknown_kind_error() -> None:
    with pytest.raises(UnknownKindError) as info:
        reading(kind="torque")
    assert info.value.field == "kind"
    assert info.value.value == "torque"


def readings() -> list[Reading]:
    return [
        reading(),
        reading(
            machine_id="pump-7",
            sensor_id="outlet",
            kind="pressure",
            value=-0.25,
            unit="psi",
            ts=T0 + timedelta(milliseconds=1),
            seq=0,
            quality="bad",
        ),
        reading(kind="speed", value=1480, unit="rpm", ts=T0 + timedelta(days=400), seq=2**40),
    ]


def test_to_table_and_from_table_round_trip() -> None:
    rs = readings()
    table = to_table(rs)
    assert table.schema.equals(READING_SCHEMA)
    assert table.num_rows == 3
    assert table.column("kind").to_pylist() == ["vibration", "pressure", "speed"]
    assert table.column("value").to_pylist() == [2.5, -0.25, 1480.0]
    assert table.column("ts").cast(pa.int64()).to_pylist()[1] == int(T0.timestamp() * 1000) + 1
    assert from_table(table) == rs


def test_to_table_of_nothing_is_an_empty_batch() -> None:
    table = to_table([])
    assert table.num_rows == 0
    assert table.schema.equals(READING_SCHEMA)
    assert from_table(table) == []


def test_from_table_names_the_first_bad_row() -> None:
    table = to_table(readings())
    values = table.column("value").to_pylist()
    values[1] = None
    bad = table.set_column(3, "value", pa.array(values, pa.float64()))
    with pytest.raises(InvalidReadingError) as info:
        from_table(bad)
    assert info.value.field == "value"
    assert info.value.row == 1


def test_from_table_reports_missing_time_and_seq_as_invalid_readings() -> None:
    table = conform(pa.table({"machine_id": ["m"], "sensor_id": ["s"], "kind": ["current"]}))
    with pytest.raises(InvalidReadingError) as info:
        from_table(table.set_column(3, "value", pa.array([1.0])))
    assert info.value.field == "ts"
    assert info.value.row == 0


def test_from_table_defaults_quality_and_schema_version() -> None:
    table = to_table([reading()])
    table = table.set_column(7, "quality", pa.nulls(1, pa.string()))
    table = table.set_column(8, "schema_version", pa.nulls(1, pa.uint8()))
    [r] = from_table(table)
    assert r.quality is Quality.GOOD
    assert r.schema_version == SCHEMA_VERSION


def test_conform_reorders_casts_fills_and_drops() -> None:
    table = pa.table(
        {
            "extra": ["dropped"],
            "seq": pa.array([5], pa.int64()),
            "value": pa.array([3], pa.int32()),
            "ts": pa.array([1_800_000_000_123], pa.int64()).cast(pa.timestamp("ms")),
            "machine_id": ["m1"],
        }
    )
    out = conform(table)
    assert out.schema.equals(READING_SCHEMA)
    assert out.column_names == list(READING_SCHEMA.names)
    assert out.column("value").to_pylist() == [3.0]
    assert out.column("seq").type == pa.uint64()
    assert out.column("seq").to_pylist() == [5]
    assert out.column("ts").type == TS_TYPE
    assert out.column("ts").cast(pa.int64()).to_pylist() == [1_800_000_000_123]
    assert out.column("machine_id").to_pylist() == ["m1"]
    for name in ("sensor_id", "kind", "unit", "quality", "schema_version"):
        assert out.column(name).null_count == 1, name


def test_conform_keeps_a_conforming_table() -> None:
    table = to_table(readings())
    assert conform(table).equals(table)


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("value", pa.array(["fast"])),
        ("seq", pa.array([-1], pa.int64())),
        ("seq", pa.array([1.5])),
        ("kind", pa.array([{"a": 1}])),
    ],
)
def test_conform_refuses_a_column_it_cannot_cast(name: str, column: pa.Array) -> None:
    with pytest.raises(InvalidReadingError) as info:
        conform(pa.table({name: column}))
    assert info.value.field == name
    assert info.value.value == str(column.type)
    assert str(READING_SCHEMA.field(name).type) in str(info.value)
