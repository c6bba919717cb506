"""ECS JSON-lines logging: the formatter, rotation by size and by UTC day, instances, sensor
events from the edge SDK and the alert service, configure_logging and the settings."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from plantwatch.alert.alarms import Alarm, AlarmEvent
from plantwatch.alert.service import log_alarm_events
from plantwatch.core.errors import ConfigError, InvalidReadingError
from plantwatch.core.logs import (
    CONSOLE_FORMAT,
    ECS_VERSION,
    EcsFileHandler,
    EcsFormatter,
    EventThrottle,
    LogFileBusyError,
    configure_logging,
    sensor_event,
    setup,
)
from plantwatch.core.settings import MiB, Settings
from plantwatch.edge import EdgeClient, Spool, SpoolLimits
from plantwatch.edge.errors import SpoolFullError, TransportUnavailable
from plantwatch.edge.spool import SpoolEntry

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Clock:
    """An injected UTC clock the test moves by hand."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    lg = logging.getLogger("plantwatch.test.logs")
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    yield lg
    for h in list(lg.handlers):
        lg.removeHandler(h)
        h.close()


def attach(lg: logging.Logger, handler: EcsFileHandler, service: str = "svc") -> EcsFileHandler:
    handler.setFormatter(EcsFormatter(service=service, host="host-1"))
    lg.addHandler(handler)
    return handler


@pytest.fixture
def plantwatch_file(tmp_path: Path) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """A JSON file handler on the ``plantwatch`` logger; returns a reader of its lines."""
    lg = logging.getLogger("plantwatch")
    h = EcsFileHandler(tmp_path / "events", "events")
    h.setFormatter(EcsFormatter(service="events"))
    h.setLevel(logging.DEBUG)
    level = lg.level
    lg.setLevel(logging.DEBUG)
    lg.addHandler(h)
    yield lambda: read(h.path)
    lg.removeHandler(h)
    lg.setLevel(level)
    h.close()


# -- the formatter -------------------------------------------------------------------------------


def test_each_line_is_one_json_object_with_the_ecs_fields(
    tmp_path: Path, logger: logging.Logger
) -> None:
    h = attach(logger, EcsFileHandler(tmp_path, "svc"))
    logger.info("hello %s", "wörld", extra={"machine_id": "m-1", "plantwatch.readings": 3})
    logger.warning("second", extra={"sensor.id": "s-1", "not_dotted": 1, "Bad.Name": 2})
    assert h.path == tmp_path / "svc.ndjson"
    first, second = read(h.path)
    assert TS.match(first["@timestamp"])
    when = datetime.strptime(first["@timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert abs(when - datetime.now(UTC)) < timedelta(seconds=10)
    assert first["log.level"] == "info" and second["log.level"] == "warning"
    assert first["message"] == "hello wörld"
    assert first["log.logger"] == "plantwatch.test.logs"
    assert first["service.name"] == "svc" and first["host.name"] == "host-1"
    assert first["process.pid"] == os.getpid()
    assert first["ecs.version"] == ECS_VERSION == "8.11.0"
    assert first["machine.id"] == "m-1" and first["plantwatch.readings"] == 3
    assert second["event.sequence"] == first["event.sequence"] + 1
    assert second["sensor.id"] == "s-1"
    assert "not_dotted" not in second and "Bad.Name" not in second
    assert not any(k.startswith("error.") for k in first)


def test_extras_cannot_replace_base_fields_and_values_stay_json(
    tmp_path: Path, logger: logging.Logger
) -> None:
    h = attach(logger, EcsFileHandler(tmp_path, "svc"))
    logger.info(
        "x",
        extra={
            "service.name": "spoofed",
            "plantwatch.down_s": float("nan"),
            "plantwatch.when": datetime(2026, 12, 5, 6, 30, tzinfo=UTC),
            "plantwatch.spool": tmp_path,
            "plantwatch.list": (1, "a"),
        },
    )
    (line,) = read(h.path)  # NaN would make the line invalid JSON for strict parsers
    assert "NaN" not in h.path.read_text()
    assert line["service.name"] == "svc"
    assert line["plantwatch.down_s"] is None
    assert line["plantwatch.when"] == "2026-12-05T06:30:00.000Z"
    assert line["plantwatch.spool"] == str(tmp_path)
    assert line["plantwatch.list"] == [1, "a"]


class BoomError(RuntimeError):
    pass


def test_exceptions_become_error_fields(tmp_path: Path, logger: logging.Logger) -> None:
    h = attach(logger, EcsFileHandler(tmp_path, "svc"))
    try:
        raise ValueError("bad value 7")
    except ValueError:
        logger.exception("it failed")
    try:
        raise BoomError("boom")
    except BoomError:
        logger.error("custom", exc_info=True)
    builtin, custom = read(h.path)
    assert builtin["log.level"] == "error" and builtin["message"] == "it failed"
    assert builtin["error.type"] == "ValueError"
    assert builtin["error.message"] == "bad value 7"
    assert builtin["error.stack_trace"].startswith("Traceback (most recent call last):")
    assert builtin["error.stack_trace"].endswith("ValueError: bad value 7")
    assert custom["error.type"] == f"{__name__}.BoomError"


def test_sensor_event_fields(tmp_path: Path, logger: logging.Logger) -> None:
    h = attach(logger, EcsFileHandler(tmp_path, "svc"))
    sensor_event(
        logger,
        logging.WARNING,
        "sdk.reading.rejected",
        "rejected",
        machine_id="m-7",
        sensor_id="m-7-t1",
        readings=5,
        field="value",
        row=None,
        **{"event.action": "rejected"},
    )
    sensor_event(logger, logging.INFO, "sdk.spool.full", "full", machine_id=None, policy="reject")
    logger.setLevel(logging.WARNING)
    sensor_event(logger, logging.INFO, "sdk.x", "filtered out", machine_id="m")
    a, b = read(h.path)
    assert a["event.code"] == "sdk.reading.rejected" and a["message"] == "rejected"
    assert a["log.level"] == "warning"
    assert (a["machine.id"], a["sensor.id"]) == ("m-7", "m-7-t1")
    assert a["plantwatch.readings"] == 5 and a["plantwatch.field"] == "value"
    assert a["event.action"] == "rejected"
    assert "plantwatch.row" not in a  # None is left out
    assert b["event.code"] == "sdk.spool.full" and "machine.id" not in b and "sensor.id" not in b
    assert b["plantwatch.policy"] == "reject"


def test_event_throttle_counts_what_it_held_back() -> None:
    now = [0.0]
    t = EventThrottle(60.0, clock=lambda: now[0])
    assert t.allow("k") == 0
    assert t.allow("k") is None and t.allow("k") is None
    assert t.allow("other") == 0
    now[0] = 61.0
    assert t.allow("k") == 2


# -- rotation ------------------------------------------------------------------------------------


def test_rotation_by_size_renames_the_file_keeping_its_inode(
    tmp_path: Path, logger: logging.Logger
) -> None:
    clock = Clock(datetime(2026, 12, 5, 6, 30, 0, tzinfo=UTC))
    h = attach(logger, EcsFileHandler(tmp_path, "svc", max_bytes=1000, clock=clock))
    logger.info("line 0")
    inode = h.path.stat().st_ino
    size = h.path.stat().st_size
    n = 1000 // size  # lines that fit in one file
    for i in range(1, n):
        logger.info("line %d", i)
    assert h.path.stat().st_size <= 1000 and not h.rotated_files()
    logger.info("line %d", n)  # would exceed max_bytes: rotates first
    rotated = h.rotated_files()
    assert [p.name for p in rotated] == ["svc-20261205T063000Z-1.ndjson"]
    assert rotated[0].stat().st_ino == inode  # renamed, not copied
    assert h.path.stat().st_ino != inode
    assert [x["message"] for x in read(rotated[0])] == [f"line {i}" for i in range(n)]
    assert [x["message"] for x in read(h.path)] == [f"line {n}"]
    for i in range(n + 1, 2 * n + 1):  # fills the new file and rotates again in the same second
        logger.info("line %d", i)
    names = [p.name for p in h.rotated_files()]
    assert names == ["svc-20261205T063000Z-1.ndjson", "svc-20261205T063000Z-2.ndjson"]
    every = [x["message"] for p in [*h.rotated_files(), h.path] for x in read(p)]
    assert every == [f"line {i}" for i in range(2 * n + 1)]  # nothing lost or repeated


def test_rotation_at_the_utc_day_change(tmp_path: Path, logger: logging.Logger) -> None:
    clock = Clock(datetime(2026, 12, 5, 23, 59, 59, tzinfo=UTC))
    h = attach(logger, EcsFileHandler(tmp_path, "svc", clock=clock))
    logger.info("before midnight")
    clock.t = datetime(2026, 12, 5, 23, 59, 59, 999_000, tzinfo=UTC)
    logger.info("still the 5th")
    assert not h.rotated_files()
    inode = h.path.stat().st_ino
    clock.t = datetime(2026, 12, 6, 0, 0, 1, tzinfo=UTC)
    logger.info("after midnight")
    (rotated,) = h.rotated_files()
    assert rotated.name == "svc-20261206T000001Z-1.ndjson"
    assert rotated.stat().st_ino == inode
    assert [x["message"] for x in read(rotated)] == ["before midnight", "still the 5th"]
    assert [x["message"] for x in read(h.path)] == ["after midnight"]
    clock.t = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
    logger.info("same day")
    assert len(h.rotated_files()) == 1


def test_a_restart_on_a_later_day_rotates_the_old_live_file(
    tmp_path: Path, logger: logging.Logger
) -> None:
    (tmp_path / "svc.ndjson").write_text('{"message":"old"}\n')
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    os.utime(tmp_path / "svc.ndjson", (two_days_ago.timestamp(),) * 2)
    h = attach(logger, EcsFileHandler(tmp_path, "svc"))
    logger.info("new")
    (rotated,) = h.rotated_files()
    assert read(rotated) == [{"message": "old"}]
    assert [x["message"] for x in read(h.path)] == ["new"]


def test_only_the_newest_backups_are_kept(tmp_path: Path, logger: logging.Logger) -> None:
    clock = Clock(datetime(2026, 12, 1, 12, tzinfo=UTC))
    h = attach(logger, EcsFileHandler(tmp_path, "svc", backups=2, clock=clock))
    other = tmp_path / "svc-other-20261201T000000Z-1.ndjson"  # another instance's: not touched
    other.write_text("{}\n")
    for day in range(1, 7):
        clock.t = datetime(2026, 12, day, 12, tzinfo=UTC)
        logger.info("day %d", day)
    rotated = h.rotated_files()
    assert [p.name for p in rotated] == [
        "svc-20261205T120000Z-1.ndjson",
        "svc-20261206T120000Z-1.ndjson",
    ]
    assert [read(p)[0]["message"] for p in rotated] == ["day 4", "day 5"]
    assert other.exists()


# -- instances -----------------------------------------------------------------------------------


def test_two_instances_write_two_files_and_one_live_file_has_one_writer(
    tmp_path: Path, logger: logging.Logger
) -> None:
    a = attach(logger, EcsFileHandler(tmp_path, "worker", instance="a"))
    b = attach(logger, EcsFileHandler(tmp_path, "worker", instance="b"))
    logger.info("to both")
    assert a.path.name == "worker-a.ndjson" and b.path.name == "worker-b.ndjson"
    assert read(a.path)[0]["message"] == read(b.path)[0]["message"] == "to both"
    with pytest.raises(LogFileBusyError, match=r"worker-a\.ndjson"):
        EcsFileHandler(tmp_path, "worker", instance="a")
    a.close()
    EcsFileHandler(tmp_path, "worker", instance="a").close()  # free again once closed


def test_bad_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="instance name"):
        EcsFileHandler(tmp_path, "svc", instance="../x")
    with pytest.raises(ConfigError, match="service name"):
        EcsFileHandler(tmp_path, "a/b")
    assert list(tmp_path.iterdir()) == []  # nothing created for a refused name


# -- configure_logging and the settings ----------------------------------------------------------


def test_configure_logging_console_and_file(tmp_path: Path, root_restored: None) -> None:
    console = io.StringIO()
    h = configure_logging(service="plantwatch-run", directory=tmp_path / "logs", console=console)
    assert h is not None and h.path == tmp_path / "logs" / "plantwatch-run.ndjson"
    log = logging.getLogger("plantwatch.test.configure")
    log.info("plain %d", 1)
    log.debug("not at INFO")
    sensor_event(log, logging.INFO, "alarm.created", "an alarm", machine_id="m-1")
    sensor_event(log, logging.WARNING, "sdk.spool.full", "full", machine_id=None)
    out = console.getvalue().splitlines()
    assert len(out) == 2
    assert re.match(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO plantwatch.test.configure: plain 1$", out[0]
    )
    assert out[1].endswith("WARNING plantwatch.test.configure: full")
    lines = read(h.path)
    assert [x["message"] for x in lines] == ["plain 1", "an alarm", "full"]
    assert lines[1]["event.code"] == "alarm.created"
    assert CONSOLE_FORMAT == "%(asctime)s %(levelname)s %(name)s: %(message)s"
    # a second call replaces the handlers instead of adding more; verbose lowers both levels
    h2 = configure_logging(
        service="plantwatch-run", directory=tmp_path / "logs", console=console, verbose=True
    )
    assert h2 is not None
    log.debug("now at DEBUG")
    assert console.getvalue().count("now at DEBUG") == 1
    assert read(h2.path)[-1]["message"] == "now at DEBUG"
    mine = [x for x in logging.getLogger().handlers if getattr(x, "_plantwatch", False)]
    assert len(mine) == 2


def test_configure_logging_falls_back_to_the_pid_when_the_file_is_busy(
    tmp_path: Path, root_restored: None
) -> None:
    holder = EcsFileHandler(tmp_path, "plantwatch-alarms")
    try:
        h = configure_logging(
            service="plantwatch-alarms", directory=tmp_path, console=io.StringIO()
        )
        assert h is not None and h.path.name == f"plantwatch-alarms-{os.getpid()}.ndjson"
    finally:
        holder.close()


def test_configure_logging_without_a_directory_writes_no_file(
    tmp_path: Path, root_restored: None
) -> None:
    assert configure_logging(service="s", directory=None, console=io.StringIO()) is None
    ro = tmp_path / "ro"
    ro.write_text("a file, not a folder")
    console = io.StringIO()
    assert configure_logging(service="s", directory=ro / "logs", console=console) is None
    assert "no JSON log files" in console.getvalue()


def test_log_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root_restored: None
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("PLANTWATCH_"):
            monkeypatch.delenv(name)
    s = Settings(data_dir=tmp_path / "data")
    assert s.log.dir is None and s.log.max_bytes == 50 * MiB and s.log.backups == 20
    assert s.log.level == "INFO" and s.log.enabled
    assert s.resolved_log_dir() == tmp_path / "data" / "logs"
    monkeypatch.setenv("PLANTWATCH_LOG__DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("PLANTWATCH_LOG__LEVEL", "warning")
    monkeypatch.setenv("PLANTWATCH_LOG__BACKUPS", "3")
    s = Settings()
    assert s.resolved_log_dir() == tmp_path / "elsewhere"
    assert s.log.level == "WARNING" and s.log.backups == 3
    h = setup(s, "plantwatch-sink", verbose=False, instance="g1")
    assert h is not None and h.path == tmp_path / "elsewhere" / "plantwatch-sink-g1.ndjson"
    assert h.level == logging.WARNING and h.backups == 3
    monkeypatch.setenv("PLANTWATCH_LOG__DIR", "-")
    assert Settings().resolved_log_dir() is None
    assert setup(Settings(), "plantwatch-sink", verbose=False) is None
    monkeypatch.delenv("PLANTWATCH_LOG__DIR")
    monkeypatch.setenv("PLANTWATCH_LOG__ENABLED", "false")
    assert Settings().resolved_log_dir() is None


# -- sensor events where they happen -------------------------------------------------------------


class FlakyTransport:
    """Refuses the first ``fail`` sends, then acknowledges at once."""

    def __init__(self, fail: int) -> None:
        self.fail = fail

    def send(self, entry: SpoolEntry, on_ack: Callable[[], None]) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise TransportUnavailable("no consumer yet")
        on_ack()

    def close(self) -> None:
        pass


def test_the_edge_client_logs_rejections_and_transport_outages(
    tmp_path: Path, plantwatch_file: Callable[[], list[dict[str, Any]]]
) -> None:
    spool = Spool(tmp_path / "spool", limits=SpoolLimits(fsync=False))
    client = EdgeClient(spool=spool, transport=FlakyTransport(fail=2))
    try:
        for _ in range(3):  # one line, then held back for a minute
            with pytest.raises(InvalidReadingError):
                client.temperature("m-1", "m-1-t1", float("inf"))
        bad = pa.table(
            {
                "machine_id": ["m-2", "m-3"],
                "sensor_id": ["m-2-p", "m-3-p"],
                "kind": ["pressure", "pressure"],
                "value": [1.0, float("inf")],
                "unit": ["bar", "bar"],
            }
        )
        with pytest.raises(InvalidReadingError):
            client.send_batch(bad)
        client.temperature("m-1", "m-1-t1", 21.5)
        assert client.drain(timeout=10)
    finally:
        client.close()
    events = [x for x in plantwatch_file() if "event.code" in x]
    rejected = [x for x in events if x["event.code"] == "sdk.reading.rejected"]
    assert len(rejected) == 2
    one, batch = rejected
    assert (one["machine.id"], one["sensor.id"], one["plantwatch.field"]) == (
        "m-1",
        "m-1-t1",
        "value",
    )
    assert one["plantwatch.readings"] == 1 and one["log.level"] == "warning"
    assert batch["plantwatch.readings"] == 2 and batch["log.logger"] == "plantwatch.edge.client"
    codes = [x["event.code"] for x in events]
    assert codes.count("sdk.transport.unavailable") == 1
    assert codes.count("sdk.transport.recovered") == 1
    # accepted readings and successful sends log nothing of their own (the hot path)
    assert set(codes) == {
        "sdk.reading.rejected",
        "sdk.transport.unavailable",
        "sdk.transport.recovered",
    }
    down = next(x for x in events if x["event.code"] == "sdk.transport.unavailable")
    assert down["plantwatch.reason"] == "TransportUnavailable" and down["log.level"] == "info"
    assert "plantwatch.retries" not in down and "plantwatch.down_s" not in down
    recovered = next(x for x in events if x["event.code"] == "sdk.transport.recovered")
    assert recovered["plantwatch.retries"] == 2
    assert recovered["plantwatch.down_s"] >= 0 and "plantwatch.reason" not in recovered


def test_the_spool_logs_full_and_dropped(
    tmp_path: Path, plantwatch_file: Callable[[], list[dict[str, Any]]]
) -> None:
    payload = b"x" * 200
    limits = SpoolLimits(max_bytes=1000, segment_bytes=300, when_full="reject", fsync=False)
    with Spool(tmp_path / "reject", limits=limits) as spool:
        for _ in range(3):  # 3 entries of 294 bytes; a 4th would pass 1000
            spool.append("application/x-ndjson", payload, count=4, max_seq={})
        with pytest.raises(SpoolFullError):
            spool.append("application/x-ndjson", payload, count=4, max_seq={})
        with pytest.raises(SpoolFullError):
            spool.append("application/x-ndjson", payload, count=4, max_seq={})
    drop = SpoolLimits(max_bytes=1000, segment_bytes=300, when_full="drop_oldest", fsync=False)
    with Spool(tmp_path / "drop", limits=drop) as spool:
        for _ in range(10):
            spool.append("application/x-ndjson", payload, count=4, max_seq={})
        evicted = spool.stats.evicted_readings
    events = [x for x in plantwatch_file() if "event.code" in x]
    full = [x for x in events if x["event.code"] == "sdk.spool.full"]
    assert len(full) == 1  # the second refusal within a minute is held back
    assert full[0]["plantwatch.policy"] == "reject"
    assert full[0]["plantwatch.spool"] == str(tmp_path / "reject")
    dropped = [x for x in events if x["event.code"] == "sdk.spool.dropped"]
    assert evicted > 0 and sum(x["plantwatch.readings"] for x in dropped) == evicted


def test_alarm_changes_are_logged_with_machine_and_sensor(
    plantwatch_file: Callable[[], list[dict[str, Any]]],
) -> None:
    alarm = Alarm(
        alarm_id="A1",
        fingerprint="f",
        rule="bearing_temperature_high",
        machine_id="m-4",
        sensor_id="m-4-t1",
        kind="temperature",
        severity="critical",
        created_ms=0,
        message="too hot",
    )
    log_alarm_events(
        [
            AlarmEvent("A1", 0, "created", alarm),
            AlarmEvent("A1", 1, "escalated", alarm),
            AlarmEvent("A1", 2, "acknowledged", alarm, user="ana"),
            AlarmEvent("A1", 3, "cleared", alarm),
        ]
    )
    lines = plantwatch_file()
    assert [x["event.code"] for x in lines] == [
        "alarm.created",
        "alarm.escalated",
        "alarm.acknowledged",
        "alarm.cleared",
    ]
    first = lines[0]
    assert (first["machine.id"], first["sensor.id"]) == ("m-4", "m-4-t1")
    assert first["plantwatch.alarm_id"] == "A1" and first["plantwatch.severity"] == "critical"
    assert first["plantwatch.rule"] == "bearing_temperature_high"
    assert first["event.action"] == "created" and first["log.level"] == "info"
    assert lines[2]["plantwatch.user"] == "ana" and "plantwatch.user" not in first
