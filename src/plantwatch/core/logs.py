"""Structured logs: JSON lines with Elastic Common Schema field names, through ``logging``.

Every plantwatch process (and the edge SDK when its host application calls :func:`setup` or
:func:`configure_logging`) writes one JSON object per line to ``<dir>/<service>.ndjson``, next to
the human console output. Keys are flat dotted ECS names::

    {"@timestamp": "2026-12-05T06:30:00.123Z", "log.level": "warning", "message": "...",
     "log.logger": "plantwatch.edge.client", "service.name": "plantwatch-run",
     "host.name": "gw-1", "process.pid": 4242, "process.thread.name": "MainThread",
     "event.sequence": 17, "ecs.version": "8.11.0",
     "machine.id": "m-001", "sensor.id": "m-001-t1", "event.code": "sdk.reading.rejected"}

``error.type``/``error.message``/``error.stack_trace`` are added when the record has an
exception. From ``extra=`` the formatter takes ``machine.id``, ``sensor.id``, ``event.code``,
``event.action`` (also spelt ``machine_id``, ``sensor_id``, ``event_code``, ``event_action``) and
any other key that is a dotted lower-case name (``plantwatch.readings``); other extras are
ignored. :func:`sensor_event` logs one event about a machine's or a sensor's readings.

Files rotate when the next line would exceed ``max_bytes`` and at the UTC day change. A rotated
file is *renamed* (it keeps its inode, so a shipper or exporter that remembers inode + offset
finishes reading it) to ``<service>-<YYYYMMDDTHHMMSS>Z-<n>.ndjson`` (the UTC time of the
rotation, ``n`` from 1 within one second); at most ``backups`` rotated files are kept. Two
processes must not share a live file: the handler holds ``flock`` on ``<stem>.lock`` and a
second process of the same service gets :class:`LogFileBusyError` — give each one an
``instance`` (``<service>-<instance>.ndjson``); :func:`configure_logging` falls back to the pid.
``deploy/elastic/`` ships these files to Elasticsearch or OpenSearch.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import logging.handlers
import math
import os
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from plantwatch.core.clock import iso_ms
from plantwatch.core.errors import ConfigError

if TYPE_CHECKING:
    from plantwatch.core.settings import Settings

__all__ = [
    "BASE_FIELDS",
    "CONSOLE_FORMAT",
    "ECS_VERSION",
    "EVENT_FIELDS",
    "EcsFileHandler",
    "EcsFormatter",
    "EventThrottle",
    "LogFileBusyError",
    "configure_logging",
    "live_name",
    "rotated_pattern",
    "sensor_event",
    "setup",
]

ECS_VERSION = "8.11.0"
CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MiB = 1024**2

#: extra keys taken under another name
ALIASES = {
    "machine_id": "machine.id",
    "sensor_id": "sensor.id",
    "event_code": "event.code",
    "event_action": "event.action",
}
#: the keys the formatter writes itself; an ``extra`` cannot replace them
BASE_FIELDS = frozenset(
    {
        "@timestamp",
        "log.level",
        "log.logger",
        "message",
        "service.name",
        "host.name",
        "process.pid",
        "process.thread.name",
        "event.sequence",
        "ecs.version",
        "error.type",
        "error.message",
        "error.stack_trace",
    }
)
#: the ``plantwatch.*`` fields that plantwatch's own events carry, with their mapping type
#: (``deploy/elastic/index-template.json`` maps each; tests check it)
EVENT_FIELDS: Mapping[str, str] = {
    "plantwatch.readings": "long",
    "plantwatch.entries": "long",
    "plantwatch.bytes": "long",
    "plantwatch.max_bytes": "long",
    "plantwatch.suppressed": "long",
    "plantwatch.retries": "long",
    "plantwatch.row": "long",
    "plantwatch.down_s": "double",
    "plantwatch.field": "keyword",
    "plantwatch.reason": "keyword",
    "plantwatch.policy": "keyword",
    "plantwatch.spool": "keyword",
    "plantwatch.topic": "keyword",
    "plantwatch.alarm_id": "keyword",
    "plantwatch.rule": "keyword",
    "plantwatch.severity": "keyword",
    "plantwatch.user": "keyword",
    "plantwatch.assignee": "keyword",
}

_DOTTED = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_STAMP = "%Y%m%dT%H%M%S"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _json_value(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None  # NaN is not JSON
    if isinstance(v, datetime):
        return iso_ms(v)
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return str(v)


class EcsFormatter(logging.Formatter):
    """One JSON object per record, flat dotted ECS keys (see the module docstring)."""

    def __init__(self, *, service: str, host: str | None = None) -> None:
        super().__init__()
        self.service = service
        self.host = host if host is not None else socket.gethostname()
        self._seq = itertools.count(1)

    def format(self, record: logging.LogRecord) -> str:
        msecs = int(record.msecs)
        doc: dict[str, Any] = {
            "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{msecs:03d}Z",
            "log.level": record.levelname.lower(),
            "message": record.getMessage(),
            "log.logger": record.name,
            "service.name": self.service,
            "host.name": self.host,
            "process.pid": record.process,
            "process.thread.name": record.threadName,
            "event.sequence": next(self._seq),
            "ecs.version": ECS_VERSION,
        }
        for key, value in record.__dict__.items():
            name = ALIASES.get(key, key)
            if name in BASE_FIELDS or not _DOTTED.match(name) or value is None:
                continue
            doc[name] = _json_value(value)
        trace = ""
        if record.exc_info and record.exc_info[0] is not None:
            cls, exc, _ = record.exc_info
            mod = cls.__module__
            doc["error.type"] = (
                cls.__qualname__ if mod == "builtins" else f"{mod}.{cls.__qualname__}"
            )
            doc["error.message"] = str(exc)
            trace = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.stack_info:
            trace = f"{trace}\n{record.stack_info}" if trace else record.stack_info
        if trace:
            doc["error.stack_trace"] = trace
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


class LogFileBusyError(ConfigError):
    """Another process (or handler) writes this live log file."""


def live_name(service: str, instance: str | None = None) -> str:
    """``<service>[-<instance>].ndjson``; both names are ``[A-Za-z0-9._-]``."""
    for what, v in (("service", service), ("instance", instance)):
        if v is not None and not _NAME.match(v):
            raise ConfigError(
                f"log file {what} name {v!r} must be letters, digits, '.', '_' or '-' "
                "(it becomes a file name)"
            )
    return f"{service}-{instance}.ndjson" if instance else f"{service}.ndjson"


def rotated_pattern(stem: str) -> re.Pattern[str]:
    """Matches the rotated files of ``<stem>.ndjson``; groups: stamp, n."""
    return re.compile(rf"^{re.escape(stem)}-(\d{{8}}T\d{{6}})Z-(\d+)\.ndjson$")


class EcsFileHandler(logging.handlers.BaseRotatingHandler):
    """Writes formatted records to ``<directory>/<service>[-<instance>].ndjson`` and rotates it
    by size and at the UTC day change (renaming, see the module docstring).

    ``clock`` returns the aware UTC now; tests inject one to cross midnight."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        service: str,
        *,
        instance: str | None = None,
        max_bytes: int = 50 * MiB,
        backups: int = 20,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        name = live_name(service, instance)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stem = name.removesuffix(".ndjson")
        self.max_bytes = max_bytes
        self.backups = backups
        self.clock = clock
        self._rotated = rotated_pattern(self.stem)
        self._lock_file: IO[bytes] | None = open(self.directory / f"{self.stem}.lock", "ab")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise LogFileBusyError(
                f"log file {self.directory / name} is written by another process; give each "
                "process of a service its own instance name"
            ) from None
        live = self.directory / name
        try:
            st = live.stat()
            self._size = st.st_size
            self._day = datetime.fromtimestamp(st.st_mtime, UTC).date() if st.st_size else None
        except FileNotFoundError:
            self._size, self._day = 0, None
        try:
            super().__init__(str(live), "a", encoding="utf-8")
        except BaseException:
            self._lock_file.close()
            raise

    @property
    def path(self) -> Path:
        return Path(self.baseFilename)

    def _due(self, size: int, today: date) -> bool:
        if self._size == 0:
            return False
        if self._day is not None and today != self._day:
            return True
        return self._size + size > self.max_bytes

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 (logging's name)
        """Whether the file is due for rotation (:meth:`emit` decides with the line's size)."""
        return self._due(1, self.clock().date())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            data = line.encode("utf-8")
            now = self.clock()
            if self._due(len(data), now.date()):
                self._rollover(now)
            if self.stream is None:
                self.stream = self._open()
            if self._size == 0:
                self._day = now.date()  # the day of a file is the day of its first line
            self.stream.write(line)
            self.stream.flush()
            self._size += len(data)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def doRollover(self) -> None:  # noqa: N802 (logging's name)
        self._rollover(self.clock())

    def _rollover(self, now: datetime) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        live = self.path
        if live.exists() and live.stat().st_size:
            stamp = now.astimezone(UTC).strftime(_STAMP)
            for n in itertools.count(1):
                target = self.directory / f"{self.stem}-{stamp}Z-{n}.ndjson"
                if not target.exists():
                    break
            os.rename(live, target)  # same inode: whoever reads it finishes it
        self._size = 0
        self._day = now.date()
        self.stream = self._open()
        self._prune()

    def rotated_files(self) -> list[Path]:
        """This stem's rotated files, oldest first."""
        found: list[tuple[str, int, Path]] = []
        for p in self.directory.iterdir():
            m = self._rotated.match(p.name)
            if m:
                found.append((m.group(1), int(m.group(2)), p))
        return [p for *_, p in sorted(found)]

    def _prune(self) -> None:
        files = self.rotated_files()
        for p in files[: max(0, len(files) - self.backups)]:
            p.unlink(missing_ok=True)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock
                self._lock_file = None


class _ConsoleFilter(logging.Filter):
    """Sensor events below WARNING are for the files, not the terminal (``run``'s live view)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not any(k in record.__dict__ for k in ("event.code", "event_code"))


class EventThrottle:
    """At most one event per key per ``every_s`` seconds; counts what it held back.

    ``allow(key)`` returns None to skip the event, or the number of events suppressed since the
    last one that was allowed (0 the first time)."""

    def __init__(self, every_s: float = 60.0, *, clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self.clock = clock
        self._last: dict[Any, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def allow(self, key: Any) -> int | None:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.every_s:
                self._last[key] = (last[0], last[1] + 1)
                return None
            if len(self._last) > 10_000:  # bounded: forget everything rather than grow
                self._last.clear()
            self._last[key] = (now, 0)
            return 0 if last is None else last[1]


def sensor_event(
    logger: logging.Logger,
    level: int,
    code: str,
    message: str,
    *,
    machine_id: str | None,
    sensor_id: str | None = None,
    **fields: Any,
) -> None:
    """Log one event about a machine's or sensor's readings with ``event.code`` = ``code``.

    ``fields`` with a dot in the name are written as they are (``**{"rule.name": r}``); plain
    names go under ``plantwatch.`` (``readings=3`` → ``plantwatch.readings``). None values are
    left out. Never raises for a bad field (a log line must not break the caller)."""
    if not logger.isEnabledFor(level):
        return
    extra: dict[str, Any] = {"event.code": code}
    if machine_id is not None:
        extra["machine.id"] = machine_id
    if sensor_id is not None:
        extra["sensor.id"] = sensor_id
    for k, v in fields.items():
        if v is not None:
            extra[k if "." in k else f"plantwatch.{k}"] = v
    logger.log(level, "%s", message, extra=extra, stacklevel=2)


def _level(v: int | str) -> int:
    if isinstance(v, int):
        return v
    n = logging.getLevelName(v.upper())
    if not isinstance(n, int):
        raise ConfigError(f"unknown log level {v!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return n


def configure_logging(
    *,
    service: str,
    directory: str | os.PathLike[str] | None,
    max_bytes: int = 50 * MiB,
    backups: int = 20,
    level: int | str = logging.INFO,
    verbose: bool = False,
    console_level: int | str | None = None,
    instance: str | None = None,
    clock: Callable[[], datetime] = _utc_now,
    console: IO[str] | None = None,
) -> EcsFileHandler | None:
    """Install the console handler (the human format, on stderr) and, unless ``directory`` is
    None, the JSON file handler on the root logger. Calling it again replaces both.

    ``verbose`` lowers both levels to DEBUG. When the live file is busy and no ``instance`` was
    given, the pid becomes the instance. A folder that cannot be written is reported on the
    console and the process goes on without log files. Returns the file handler, if any."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_plantwatch", False):
            root.removeHandler(h)
            h.close()
    con_level = logging.DEBUG if verbose else _level(console_level or logging.INFO)
    file_level = logging.DEBUG if verbose else _level(level)
    out = logging.StreamHandler(console if console is not None else sys.stderr)
    out.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    out.setLevel(con_level)
    out.addFilter(_ConsoleFilter())
    out._plantwatch = True  # type: ignore[attr-defined]
    root.addHandler(out)
    handler: EcsFileHandler | None = None
    if directory is not None:
        options: dict[str, Any] = {"max_bytes": max_bytes, "backups": backups, "clock": clock}
        try:
            try:
                handler = EcsFileHandler(directory, service, instance=instance, **options)
            except LogFileBusyError:
                if instance is not None:
                    raise
                handler = EcsFileHandler(directory, service, instance=str(os.getpid()), **options)
        except OSError as exc:
            logging.getLogger(__name__).warning(
                "no JSON log files: cannot write to %s (%s); set PLANTWATCH_LOG__DIR to a "
                "writable folder, or to '-' to switch them off",
                directory,
                exc,
            )
        if handler is not None:
            handler.setFormatter(EcsFormatter(service=service))
            handler.setLevel(file_level)
            handler._plantwatch = True  # type: ignore[attr-defined]
            root.addHandler(handler)
    root.setLevel(min(con_level, file_level) if handler is not None else con_level)
    return handler


def setup(
    settings: Settings, service: str, *, verbose: bool, instance: str | None = None
) -> EcsFileHandler | None:
    """:func:`configure_logging` from the settings (``PLANTWATCH_LOG__*``); what ``cli.py``
    calls once per command, e.g. ``setup(settings, "plantwatch-run", verbose=args.verbose)``."""
    log = settings.log
    return configure_logging(
        service=service,
        directory=settings.resolved_log_dir(),
        max_bytes=log.max_bytes,
        backups=log.backups,
        level=log.level,
        verbose=verbose,
        instance=instance,
    )
