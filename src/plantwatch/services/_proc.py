"""Processes, pid files, ports and folder locks, read from ``/proc`` (Linux).

A pid file alone proves nothing (pids are reused), so a pid counts as one of ours only while
``/proc/<pid>/cmdline`` shows a java process whose arguments contain the node's own
``server.properties``. Zombies have an empty command line and so count as gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from plantwatch.services.errors import PortInUseError, ServiceStartError

_LISTEN = "0A"


def spawn_logged(
    command: list[str], *, log: Path, pid_file: Path, cwd: Path, title: str
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``command`` in a session of its own (Ctrl-C in the starting terminal does not reach
    it) with its output appended to ``log`` after a header line; write its pid file. Returns the
    child and the log offset where this start's output begins."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with log.open("ab") as out:
        out.write(f"\n=== plantwatch: {title} at {stamp}: {' '.join(command)}\n".encode())
        out.flush()
        offset = out.tell()
        try:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServiceStartError(f"cannot run {command[0]}: {exc}") from exc
    write_pid(pid_file, child.pid)
    return child, offset


def read_pid(path: Path) -> int | None:
    """The pid written in ``path``, or None when the file is missing or holds no number."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def write_pid(path: Path, pid: int) -> None:
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    tmp.replace(path)


def cmdline(pid: int) -> list[str]:
    """The argv of ``pid``; empty when it does not exist, is a zombie or is not readable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def is_java_with(pid: int, marker: Path) -> bool:
    """True while ``pid`` is a live java process with ``marker`` among its arguments."""
    args = cmdline(pid)
    return bool(args) and Path(args[0]).name == "java" and str(marker) in args[1:]


def wait_gone(
    pid: int, marker: Path, timeout_s: float, child: subprocess.Popen[bytes] | None
) -> bool:
    """Wait until ``pid`` is no longer our java process; reap it if it is our child."""
    deadline = time.monotonic() + timeout_s
    while True:
        if child is not None and child.poll() is not None:
            return True
        if child is None and not is_java_with(pid, marker):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def send(pid: int, sig: int) -> None:
    """Signal ``pid``; a process that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def port_is_free(port: int) -> bool:
    """Can a server bind 127.0.0.1:port now? (SO_REUSEADDR, as Kafka's acceptors use.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port_block(count: int) -> int:
    """A port P with P..P+count-1 and the controller ports P+100.. all free on 127.0.0.1
    (the layout :class:`~plantwatch.services.KafkaConfig` uses by default)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        wanted = [base + i for i in range(count)] + [base + 100 + i for i in range(count)]
        if max(wanted) < 65536 and all(port_is_free(p) for p in wanted):
            return base
    raise OSError("no block of free loopback ports found")


def check_ports(ports: dict[int, str]) -> None:
    """Raise :class:`PortInUseError` for the first of ``ports`` (port: role) that is taken."""
    for port, role in ports.items():
        if not port_is_free(port):
            holder = port_holder(port)
            pid, command = holder if holder else (None, None)
            raise PortInUseError(port, pid, command, role)


def port_holder(port: int) -> tuple[int, str] | None:
    """(pid, command line) of the process listening on ``port``, when /proc lets us see it."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == _LISTEN
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        pid = int(proc.name)
                        return pid, " ".join(cmdline(pid))[:200]
    return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tail(path: Path, lines: int = 30, *, start: int = 0) -> str:
    """The last ``lines`` lines of ``path`` (from byte ``start`` on); empty when unreadable."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(start, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
