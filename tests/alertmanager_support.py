"""Real peers for notification tests (importable as ``alertmanager_support``).

* :class:`HttpCapture` — a local HTTP server that records every POST and answers with scripted
  statuses, optionally hanging (interruptibly) to play a stuck receiver.
* :func:`running_alertmanager` — a real Prometheus Alertmanager (the Debian package's binary) on
  a free loopback port, routing every alert to an :class:`HttpCapture` webhook. If the binary is
  missing, the test run fails with the command that installs it (never a skip).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

INSTALL = "sudo apt-get install -y prometheus-alertmanager"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass(frozen=True)
class Captured:
    """One request the capture server received."""

    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"ok"
    hang_s: float = 0.0  # wait this long (or until the server closes) before answering
    headers: tuple[tuple[str, str], ...] = ()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        capture = self.server.capture
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = capture._record(Captured(self.path, headers, body, time.monotonic()))
        if answer.hang_s and capture._released.wait(answer.hang_s):
            return  # the server is closing: drop the connection without an answer
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    capture: HttpCapture


class HttpCapture:
    """Records POSTs on ``http://127.0.0.1:<port>``; answers ``default`` unless scripted."""

    def __init__(self, default: Answer = Answer()) -> None:
        self.default = default
        self._script: deque[Answer] = deque()
        self._requests: list[Captured] = []
        self._cond = threading.Condition()
        self._released = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.capture = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def __enter__(self) -> HttpCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._released.set()  # frees hanging handlers
        self._server.shutdown()
        self._server.server_close()

    def script(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order, then with ``default`` again."""
        with self._cond:
            self._script.extend(answers)

    @property
    def requests(self) -> list[Captured]:
        with self._cond:
            return list(self._requests)

    def wait_for(
        self, predicate: Callable[[Captured], bool] = lambda r: True, timeout: float = 5.0
    ) -> Captured:
        """The first request (received so far or within ``timeout``) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self._requests:
                    if predicate(r):
                        return r
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [r.body[:300] for r in self._requests]
                    raise AssertionError(f"no matching request within {timeout} s; got {seen}")
                self._cond.wait(remaining)

    def _record(self, request: Captured) -> Answer:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()
            return self._script.popleft() if self._script else self.default


class RunningAlertmanager:
    """A started Alertmanager: ``url``, the webhook payloads it sent (``received``)."""

    def __init__(self, url: str, webhook: HttpCapture, log: Path) -> None:
        self.url = url
        self.webhook = webhook
        self.log = log

    @property
    def received(self) -> list[dict[str, Any]]:
        """A snapshot of the webhook payloads Alertmanager delivered so far."""
        return [r.json() for r in self.webhook.requests]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """The first payload matching ``predicate``; fails with the log's tail on timeout."""
        try:
            payload: dict[str, Any] = self.webhook.wait_for(
                lambda r: predicate(r.json()), timeout
            ).json()
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nalertmanager log:\n{_tail(self.log)}") from None
        return payload


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager")
    if found is None and Path("/usr/bin/prometheus-alertmanager").is_file():
        found = "/usr/bin/prometheus-alertmanager"
    if found is None:
        pytest.fail(
            "Prometheus Alertmanager is not installed; install it with: "
            f"{INSTALL}  (or run `make test`, which does)",
            pytrace=False,
        )
    return found


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


CONFIG = """\
global:
  resolve_timeout: 5m
route:
  receiver: capture
  group_by: ['...']   # every alert is a group of its own: tests do not see each other's
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: capture
    webhook_configs:
      - url: {url}/alertmanager
        send_resolved: true
"""


@contextmanager
def running_alertmanager(
    folder: Path, *, ready_timeout_s: float = 30.0
) -> Iterator[RunningAlertmanager]:
    """Alertmanager in ``folder`` (config, storage, log), stopped on exit."""
    binary = alertmanager_binary()
    with HttpCapture() as webhook:
        config = folder / "config.yml"
        config.write_text(CONFIG.format(url=webhook.url))
        (folder / "data").mkdir(exist_ok=True)
        port = free_port()
        log = folder / "alertmanager.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, proc, log, ready_timeout_s)
            yield RunningAlertmanager(url, webhook, log)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"alertmanager exited with {proc.returncode}:\n{_tail(log)}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    pytest.fail(f"alertmanager not ready within {timeout_s} s:\n{_tail(log)}", pytrace=False)
