"""EdgeClient: typed helpers, validation errors, sequence numbers, send_batch, forward."""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from plantwatch.core.codec import ARROW, NDJSON, decode_arrow, decode_json_batch
from plantwatch.core.errors import InvalidReadingError, UnitError, UnknownKindError
from plantwatch.core.kinds import KIND_NAMES, canonical_unit
from plantwatch.core.reading import READING_SCHEMA
from plantwatch.edge import Batching, ClientClosedError, EdgeClient, Spool, SpoolLimits
from plantwatch.edge.spool import SpoolEntry

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class HoldTransport:
    """Takes every entry and never acknowledges it (so entries stay in the spool)."""

    def __init__(self) -> None:
        self.sent: list[SpoolEntry] = []

    def send(self, entry: SpoolEntry, on_ack: Callable[[], None]) -> None:
        self.sent.append(entry)

    def close(self) -> None:
        pass


class AckTransport(HoldTransport):
    """Acknowledges every entry at once."""

    def send(self, entry: SpoolEntry, on_ack: Callable[[], None]) -> None:
        self.sent.append(entry)
        on_ack()


def open_client(directory: Path, **kwargs: Any) -> EdgeClient:
    transport = kwargs.pop("transport", HoldTransport())
    spool = Spool(directory, limits=SpoolLimits(fsync=False))
    return EdgeClient(spool=spool, transport=transport, **kwargs)


@contextlib.contextmanager
def running(directory: Path, **kwargs: Any) -> Iterator[EdgeClient]:
    """A client closed without waiting for acknowledgements (HoldTransport never sends any)."""
    c = open_client(directory, **kwargs)
    try:
        yield c
    finally:
        c.close(timeout=0)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[EdgeClient]:
    c = open_client(tmp_path, batching=Batching(max_readings=10_000, max_delay_s=60))
    yield c
    c.close(timeout=0)


def spooled_tables(spool: Spool) -> pa.Table:
    tables = []
    for entry in spool:
        assert entry.content_type == ARROW
        tables.append(decode_arrow(entry.payload))
    return pa.concat_tables(tables) if tables else READING_SCHEMA.empty_table()


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_typed_helper_spools_its_kind_in_the_canonical_unit(
    client: EdgeClient, kind: str
) -> None:
    helper = getattr(client, kind)
    assert inspect.signature(helper).parameters["unit"].default == canonical_unit(kind)
    assert helper("m1", f"{kind}-1", 1.5, ts=T0) == 1
    assert helper("m1", f"{kind}-1", 2, ts=T0, quality="uncertain") == 2
    assert client.stats.buffered_readings == 2
    client.flush()
    table = spooled_tables(client.spool)
    assert table.column("kind").to_pylist() == [kind, kind]
    assert table.column("unit").to_pylist() == [canonical_unit(kind)] * 2
    assert table.column("value").to_pylist() == [1.5, 2.0]
    assert table.column("seq").to_pylist() == [1, 2]
    assert table.column("quality").to_pylist() == ["good", "uncertain"]
    assert table.column("ts").to_pylist() == [T0, T0]
    assert client.stats.accepted_readings == 2


def test_units_are_kept_as_sent_and_ts_defaults_to_the_clock(client: EdgeClient) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    client.temperature("m1", "t1", 68.0, unit="°F")
    client.vibration("m1", "v1", 0.2, unit="in/s")
    client.reading("pressure", "m1", "p1", 2.0, unit="psi")
    client.flush()
    table = spooled_tables(client.spool)
    assert table.column("unit").to_pylist() == ["°F", "in/s", "psi"]
    assert all(ts >= before for ts in table.column("ts").to_pylist())


@pytest.mark.parametrize(
    ("call", "error", "field", "shown"),
    [
        (lambda c: c.temperature("m", "t", math.nan), InvalidReadingError, "value", "nan"),
        (lambda c: c.temperature("m", "t", math.inf), InvalidReadingError, "value", "inf"),
        (lambda c: c.power("m", "p", -math.inf), InvalidReadingError, "value", "-inf"),
        (lambda c: c.reading("banana", "m", "b", 1.0), UnknownKindError, "kind", "'banana'"),
        (lambda c: c.vibration("m", "v", 1.0, unit="g"), UnitError, "unit", "'g'"),
        (lambda c: c.flow("m", "f", 1.0, unit="bananas/h"), UnitError, "unit", "'bananas/h'"),
        (
            lambda c: c.temperature("m", "t", 20.0, ts=datetime(2025, 1, 1)),
            InvalidReadingError,
            "ts",
            "datetime.datetime(2025, 1, 1, 0, 0)",
        ),
        (lambda c: c.temperature("", "t", 20.0), InvalidReadingError, "machine_id", "''"),
        (lambda c: c.temperature("m", "", 20.0), InvalidReadingError, "sensor_id", "''"),
        (lambda c: c.temperature("m", "t", "20"), InvalidReadingError, "value", "'20'"),
        (lambda c: c.speed("m", "s", 1, quality="great"), InvalidReadingError, "quality", "great"),
    ],
)
def test_bad_input_raises_naming_field_and_value(
    client: EdgeClient,
    call: Callable[[EdgeClient], int],
    error: type[InvalidReadingError],
    field: str,
    shown: str,
) -> None:
    with pytest.raises(error) as err:
        call(client)
    assert err.value.field == field
    assert f"invalid {field}" in str(err.value)
    assert shown in str(err.value)
    assert client.stats.buffered_readings == 0
    assert client.temperature("m", "t", 20.0) == 1  # the refused reading used no seq


def test_vibration_in_g_says_what_to_send_instead(client: EdgeClient) -> None:
    with pytest.raises(UnitError, match="acceleration is not velocity"):
        client.vibration("m", "v", 0.5, unit="g")


def test_seqs_continue_across_a_client_restart(tmp_path: Path) -> None:
    with running(tmp_path) as first:
        assert [first.temperature("m", "t", 20.0) for _ in range(3)] == [1, 2, 3]
        assert first.humidity("m", "h", 40.0) == 1
    second = open_client(tmp_path)
    assert second.temperature("m", "t", 21.0) == 4
    assert second.humidity("m", "h", 41.0) == 2
    assert second.temperature("m", "t2", 21.0) == 1
    second.close(timeout=0)


def test_seqs_continue_after_acknowledged_segments_were_deleted(tmp_path: Path) -> None:
    with open_client(tmp_path, transport=AckTransport()) as first:
        first.temperature("m", "t", 20.0)
        first.temperature("m", "t", 20.0)
        assert first.drain(timeout=5)
    assert list(tmp_path.glob("*.seg")) == []
    with running(tmp_path) as second:
        assert second.temperature("m", "t", 20.0) == 3


def test_send_batch_assigns_seqs_per_sensor(client: EdgeClient) -> None:
    client.temperature("a", "t", 1.0)  # buffered typed reading: spooled before the batch
    table = pa.table(
        {
            "machine_id": ["a", "b", "a", "a", "b", "c"],
            "sensor_id": ["t", "t", "t", "t", "t", "t"],
            "kind": ["temperature"] * 6,
            "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "unit": ["°C", "°C", "°F", "K", "°C", "°C"],
            "ts": pa.array([T0] * 6, pa.timestamp("us", tz="UTC")),
        }
    )
    out = client.send_batch(table)
    assert out.schema == READING_SCHEMA
    assert out.column("seq").to_pylist() == [2, 1, 3, 4, 2, 1]
    assert out.column("quality").to_pylist() == ["good"] * 6
    again = client.send_batch(table.slice(0, 2))
    assert again.column("seq").to_pylist() == [5, 3]
    assert client.temperature("b", "t", 1.0) == 4
    client.flush()
    spooled = spooled_tables(client.spool)
    assert spooled.column("seq").to_pylist() == [1, 2, 1, 3, 4, 2, 1, 5, 3, 4]
    assert [e.count for e in client.spool.pending()] == [1, 6, 2, 1]
    assert client.stats.accepted_readings == 10


def test_send_batch_defaults_ts_to_now_and_accepts_other_time_zones(client: EdgeClient) -> None:
    berlin = pa.timestamp("ms", tz="Europe/Berlin")
    table = pa.table(
        {
            "machine_id": ["m", "m"],
            "sensor_id": ["s", "s"],
            "kind": ["speed", "speed"],
            "value": [1, 2],
            "unit": ["rpm", "rps"],
        }
    )
    out = client.send_batch(table)
    assert out.column("ts").null_count == 0
    zoned = client.send_batch(table.append_column("ts", pa.array([T0, T0], berlin)))
    assert zoned.column("ts").to_pylist() == [T0, T0]


def bad_batch(**change: Any) -> pa.Table:
    cols: dict[str, Any] = {
        "machine_id": ["m", "m", "m", "m"],
        "sensor_id": ["v", "v", "v", "v"],
        "kind": ["vibration"] * 4,
        "value": [1.0, 2.0, 3.0, 4.0],
        "unit": ["mm/s"] * 4,
    }
    for name, (row, value) in change.items():
        cols.setdefault(name, [cols["value"][0] if name == "value" else "good"] * 4)
        cols[name] = list(cols[name])
        cols[name][row] = value
    return pa.table(cols)


@pytest.mark.parametrize(
    ("table", "error", "field", "row", "shown"),
    [
        (bad_batch(value=(2, math.nan)), InvalidReadingError, "value", 2, "nan"),
        (bad_batch(value=(1, math.inf)), InvalidReadingError, "value", 1, "inf"),
        (bad_batch(unit=(3, "g")), UnitError, "unit", 3, "'g'"),
        (bad_batch(kind=(1, "banana")), UnknownKindError, "kind", 1, "'banana'"),
        (bad_batch(machine_id=(2, None)), InvalidReadingError, "machine_id", 2, "None"),
        (bad_batch(sensor_id=(0, "")), InvalidReadingError, "sensor_id", 0, "''"),
        (bad_batch(quality=(3, "great")), InvalidReadingError, "quality", 3, "'great'"),
        (bad_batch(unit=(3, "g"), value=(1, math.nan)), InvalidReadingError, "value", 1, "nan"),
    ],
)
def test_send_batch_refuses_a_bad_row_and_accepts_nothing(
    client: EdgeClient,
    table: pa.Table,
    error: type[InvalidReadingError],
    field: str,
    row: int,
    shown: str,
) -> None:
    with pytest.raises(error) as err:
        client.send_batch(table)
    assert (err.value.field, err.value.row) == (field, row)
    assert f"(row {row})" in str(err.value)
    assert shown in str(err.value)
    assert client.spool.pending() == []
    assert client.send_batch(bad_batch()).column("seq").to_pylist() == [1, 2, 3, 4]


def test_send_batch_refuses_naive_timestamps_and_missing_columns(client: EdgeClient) -> None:
    naive = bad_batch().append_column("ts", pa.array([datetime(2025, 1, 1)] * 4))
    with pytest.raises(InvalidReadingError, match="time zone") as err:
        client.send_batch(naive)
    assert err.value.field == "ts"
    with pytest.raises(InvalidReadingError, match="required column is missing") as err:
        client.send_batch(bad_batch().drop_columns(["unit"]))
    assert err.value.field == "unit"
    assert client.send_batch(bad_batch().slice(0, 0)).num_rows == 0
    assert client.spool.pending() == []


def test_forward_keeps_given_seqs_numbers_the_rest_and_preserves_nan(client: EdgeClient) -> None:
    records = [
        {"machine_id": "m", "sensor_id": "s", "kind": "flow", "value": math.nan, "unit": "m³/h"},
        {"machine_id": "m", "sensor_id": "s", "kind": "flow", "value": 1.0, "seq": 10},
        {"machine_id": "m", "sensor_id": "s", "kind": "flow", "value": 2.0, "ts": T0},
        {"machine_id": 7, "sensor_id": "s", "value": "junk"},  # relayed as is: the stream judges
    ]
    out = client.forward(records)
    assert [r.get("seq") for r in out] == [1, 10, 11, None]
    assert "seq" not in records[0]  # the caller's records are not changed
    assert client.flow("m", "s", 3.0) == 12
    (entry,) = list(client.spool)[:1]
    assert (entry.content_type, entry.count) == (NDJSON, 4)
    assert dict(entry.max_seq) == {("m", "s"): 11}
    decoded = decode_json_batch(entry.payload)
    values = decoded.table.column("value").to_pylist()
    assert math.isnan(values[0])
    assert decoded.table.column("seq").to_pylist()[:3] == [1, 10, 11]
    assert decoded.table.column("ts").to_pylist()[2] == T0
    assert len(decoded.rejects) == 1
    assert client.forward([]) == []


def test_a_full_buffer_is_written_without_flush(tmp_path: Path) -> None:
    with running(tmp_path, batching=Batching(max_readings=3, max_delay_s=60)) as c:
        for i in range(7):
            c.current("m", "c", float(i))
        deadline = time.monotonic() + 5
        while c.spool.stats.pending_readings < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e.count for e in c.spool.pending()] == [3, 3]
        assert c.stats.buffered_readings == 1


def test_the_buffer_is_written_after_max_delay(tmp_path: Path) -> None:
    with running(tmp_path, batching=Batching(max_readings=1000, max_delay_s=0.05)) as c:
        c.voltage("m", "v", 230.0)
        deadline = time.monotonic() + 5
        while not c.spool.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e.count for e in c.spool.pending()] == [1]


def test_a_closed_client_refuses_readings(tmp_path: Path) -> None:
    c = open_client(tmp_path)
    c.temperature("m", "t", 1.0)
    assert c.close(timeout=0) is False  # nothing acknowledged it
    with pytest.raises(ClientClosedError):
        c.temperature("m", "t", 1.0)
    with Spool(tmp_path) as spool:
        assert [e.count for e in spool.pending()] == [1]  # close flushed the buffer
