"""One Flink key's share of the job (``flink/stage.py``), without PyFlink: SDK records through
``Stage.record``, the registry, the state's pickle round trip (Flink checkpoints), the end of a
bounded input and the resume after a restore."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from plantwatch.alert.rulefile import default_rule_set
from plantwatch.core import codec
from plantwatch.core.topics import Topics
from plantwatch.stream.flink.stage import KeyState, Stage, machine_rows, registry_token
from plantwatch.stream.messages import OutMessage
from plantwatch.stream.pipeline import PipelineConfig

from batches import T0_MS, readings

TOPICS = Topics("t")
WALL_CLOCK_HEADERS = {"received_at_ms"}
WALL_CLOCK_COLUMNS = {"ingested_at", "computed_at", "detected_at", "received_at"}
PUMPS = {
    "p1": {"machine_id": "p1", "machine_type": "centrifugal_pump", "line": "L1", "site": "S"},
    "p2": {"machine_id": "p2", "machine_type": "centrifugal_pump", "line": "L2", "site": "S"},
}


@dataclass(frozen=True, slots=True)
class Record:
    value: bytes
    key: bytes | None
    headers: dict[str, str]
    offset: int
    now_ms: int  # the pipeline clock when the record is processed (just after its last reading)


def stage() -> Stage:
    return Stage(PipelineConfig(), default_rule_set().rules, TOPICS)


def sdk_record(table: pa.Table, machine: str, offset: int) -> Record:
    """A batch as the SDK sends it: Arrow, keyed by machine, with its reading count."""
    ts = table.column("ts").to_pylist()
    now = int(max(ts).timestamp() * 1000) + 1000
    headers = {"content-type": codec.ARROW, "count": str(table.num_rows)}
    return Record(codec.encode_arrow(table), machine.encode(), headers, offset, now)


def pump_records(
    machine: str, *, seconds: int, per_record: int = 10, start_s: int = 0, vib: float = 2.0
) -> list[Record]:
    """A pump's vibration and temperature readings, 1 Hz from T0 + start_s, ``per_record``
    seconds per SDK record."""
    rng = np.random.default_rng(start_s + len(machine))
    out = []
    for k, s in enumerate(range(start_s, start_s + seconds, per_record)):
        t = T0_MS + 1000 * np.arange(s, s + per_record)
        seq = np.arange(s + 1, s + per_record + 1)
        table = pa.concat_tables(
            [
                readings(
                    machine=machine,
                    sensor="vib",
                    kind="vibration",
                    values=vib + rng.normal(0, 0.05, per_record),
                    ts_ms=t,
                    seq=seq,
                ),
                readings(
                    machine=machine,
                    sensor="tmp",
                    kind="temperature",
                    values=40 + rng.normal(0, 0.2, per_record),
                    ts_ms=t,
                    seq=seq,
                ),
            ]
        )
        out.append(sdk_record(table, machine, offset=k))
    return out


def feed(
    st: Stage, state: KeyState, records: Sequence[Record], *, partition: int = 0
) -> list[OutMessage]:
    msgs: list[OutMessage] = []
    for r in records:
        msgs += st.record(
            state,
            value=r.value,
            key=r.key,
            headers=r.headers,
            partition=partition,
            offset=r.offset,
            now_ms=r.now_ms,
            arrival_ms=r.now_ms,
        )
    return msgs


def on(msgs: Sequence[OutMessage], topic: str) -> list[OutMessage]:
    return [m for m in msgs if m.topic == topic]


def rows(msgs: Sequence[OutMessage]) -> pa.Table:
    return pa.concat_tables([codec.decode_table(m.value) for m in msgs])


def comparable(m: OutMessage) -> tuple[Any, ...]:
    """A message without its wall-clock parts."""
    headers = {k: v for k, v in m.headers.items() if k not in WALL_CLOCK_HEADERS}
    if m.headers.get("content-type") == "application/vnd.apache.arrow.stream":
        table = codec.decode_table(m.value)
        keep = [c for c in table.column_names if c not in WALL_CLOCK_COLUMNS]
        body: Any = table.select(keep).to_pylist()
    else:
        body = m.value
    return m.topic, m.key, sorted(headers.items()), body


# -- records ---------------------------------------------------------------------------------------


def test_clean_readings_go_to_the_clean_topic_keyed_by_machine_with_their_count() -> None:
    st = stage()
    state = st.new_state()
    p1 = pump_records("p1", seconds=20)
    p2 = pump_records("p2", seconds=10)
    msgs = feed(st, state, [*p1, *p2])
    clean = on(msgs, TOPICS.clean)
    assert [m.key for m in clean] == ["p1", "p1", "p2"]
    for m in clean:
        table = codec.decode_table(m.value)
        assert m.headers["count"] == str(table.num_rows) == "20"
        assert set(table.column("machine_id").to_pylist()) == {m.key}
    assert not on(msgs, TOPICS.dead_letters)
    assert state.records == 3
    assert state.counts.received == state.counts.stored == 60


def test_an_undecodable_record_is_one_dead_letter_kept_whole() -> None:
    st = stage()
    state = st.new_state()
    msgs = st.record(
        state,
        value=b"garbage",
        key=b"p1",
        headers={"content-type": codec.ARROW},
        partition=2,
        offset=17,
        now_ms=T0_MS,
        arrival_ms=T0_MS,
    )
    assert len(msgs) == 1
    (dl,) = msgs
    assert dl.topic == TOPICS.dead_letters
    assert dl.value == b"garbage"
    assert dl.key == "p1"
    assert dl.headers["reason"] == "malformed"
    assert dl.headers["source"] == "t.readings.raw/2/17"
    assert dl.headers["content-type"] == codec.ARROW
    assert state.counts.received == 1
    assert state.counts.dead["malformed"] == 1
    assert state.counts.stored == 0


def test_a_resent_record_is_deduplicated() -> None:
    st = stage()
    state = st.new_state()
    (record,) = pump_records("p1", seconds=10)
    first = feed(st, state, [record])
    assert rows(on(first, TOPICS.clean)).num_rows == 20
    assert state.counts.duplicates == 0
    again = feed(st, state, [record])
    assert not on(again, TOPICS.clean)
    assert not on(again, TOPICS.dead_letters)
    assert state.counts.duplicates == 20
    assert state.counts.stored == 20
    assert state.counts.received == 40


# -- the machine registry ------------------------------------------------------------------------


def test_sync_registry_registers_the_machines_once_per_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    st = stage()
    state = st.new_state()
    register = state.pipeline.register_machines
    calls: list[list[dict[str, str]]] = []

    def spy(rows: Any) -> None:
        rows = [dict(r) for r in rows]
        calls.append(rows)
        register(rows)

    monkeypatch.setattr(state.pipeline, "register_machines", spy)
    token = registry_token(PUMPS)
    st.sync_registry(state, PUMPS, token)
    assert len(calls) == 1
    assert state.registry == token
    assert state.pipeline.registry.machine_types["p1"] == "centrifugal_pump"
    assert state.pipeline.machine_info["p2"].line == "L2"

    st.sync_registry(state, PUMPS, token)
    assert len(calls) == 1

    changed = {**PUMPS, "p3": {"machine_id": "p3", "machine_type": "fan", "line": "", "site": ""}}
    st.sync_registry(state, changed, registry_token(changed))
    assert len(calls) == 2
    assert state.pipeline.registry.machine_types["p3"] == "fan"
    assert state.registry == registry_token(changed)


def test_sync_registry_with_no_machines_does_nothing() -> None:
    st = stage()
    state = st.new_state()
    st.sync_registry(state, {}, registry_token({}))
    assert state.registry == ""


def test_registered_machine_types_reach_the_clean_readings() -> None:
    st = stage()
    state = st.new_state()
    st.sync_registry(state, PUMPS, registry_token(PUMPS))
    msgs = feed(st, state, pump_records("p1", seconds=10))
    table = rows(on(msgs, TOPICS.clean))
    assert set(table.column("machine_type").to_pylist()) == {"centrifugal_pump"}


def test_registry_token_ignores_insertion_order_but_not_content() -> None:
    forward = {"a": {"machine_id": "a", "machine_type": "x", "line": "1"}, "b": {"machine_id": "b"}}
    backward = {
        "b": {"machine_id": "b"},
        "a": {"line": "1", "machine_type": "x", "machine_id": "a"},
    }
    assert registry_token(forward) == registry_token(backward)
    changed = {**forward, "a": {**forward["a"], "line": "2"}}
    assert registry_token(changed) != registry_token(forward)


def test_machine_rows_keeps_the_last_row_of_a_machine() -> None:
    got = machine_rows(
        [
            {"machine_id": "a", "machine_type": "x"},
            {"machine_id": "b", "machine_type": "y"},
            {"machine_id": "a", "machine_type": "z"},
        ]
    )
    assert got == {
        "a": {"machine_id": "a", "machine_type": "z"},
        "b": {"machine_id": "b", "machine_type": "y"},
    }


# -- Flink state: pickle round trip, end of input, resume -------------------------------------


def test_a_pickled_state_continues_exactly_like_the_original() -> None:
    st = stage()
    state = st.new_state()
    st.sync_registry(state, PUMPS, registry_token(PUMPS))
    before = pump_records("p1", seconds=150)
    # after the checkpoint: more readings, a fault (vibration far above the pump's limits),
    # a re-sent record and a corrupt one
    after = [
        *pump_records("p1", seconds=100, start_s=150),
        *pump_records("p1", seconds=60, start_s=250, vib=30.0),
    ]
    after.insert(3, after[2])  # re-sent after the checkpoint
    after.insert(1, before[-1])  # re-sent from before it: the de-duplication state is restored
    after.insert(6, Record(b"garbage", b"p1", {"content-type": codec.ARROW}, 99, after[5].now_ms))
    first = feed(st, state, before)
    assert on(first, TOPICS.features)

    copy = pickle.loads(pickle.dumps(state))
    assert copy is not state
    original = feed(st, state, after)
    restored = feed(st, copy, after)

    assert [comparable(m) for m in restored] == [comparable(m) for m in original]
    assert copy.counts == state.counts
    assert copy.records == state.records
    assert on(original, TOPICS.features)  # not vacuous: windows fired after the checkpoint
    assert on(original, TOPICS.anomalies)
    assert on(original, TOPICS.alerts)
    assert len(on(original, TOPICS.dead_letters)) == 1
    assert state.counts.duplicates == 40


def test_finish_fires_the_open_windows() -> None:
    st = stage()
    state = st.new_state()
    msgs = feed(st, state, pump_records("p1", seconds=20))
    fired = {
        (r["sensor_id"], r["window_start"]) for r in rows(on(msgs, TOPICS.features)).to_pylist()
    }
    tail = st.finish(state, now_ms=T0_MS + 60_000)
    features = on(tail, TOPICS.features)
    assert features
    assert {m.key for m in features} == {"p1"}
    got = {(r["sensor_id"], r["window_start"]) for r in rows(features).to_pylist()}
    assert got
    assert not got & fired  # only the windows still open
    assert {s for s, _ in got} == {"vib", "tmp"}
    assert not on(tail, TOPICS.clean)
    assert st.finish(state, now_ms=T0_MS + 61_000) == []  # nothing left open


def test_resume_moves_the_arrival_times_forward() -> None:
    st = stage()
    state = st.new_state()
    records = pump_records("p1", seconds=20)
    feed(st, state, records)
    windows = state.pipeline.windows
    last_arrival = records[-1].now_ms
    assert windows._now == last_arrival
    seen = windows._source_seen.copy()

    gap = 3_600_000
    st.resume(state, arrival_ms=last_arrival + gap)
    assert windows._now == last_arrival + gap
    known = seen != np.iinfo(np.int64).min
    assert known.any()
    assert (windows._source_seen[known] == seen[known] + gap).all()

    st.resume(state, arrival_ms=last_arrival)  # earlier: no change
    assert windows._now == last_arrival + gap


def test_resume_of_a_fresh_state_changes_nothing() -> None:
    st = stage()
    state = st.new_state()
    st.resume(state, arrival_ms=T0_MS)
    assert state.pipeline.windows._now is None
