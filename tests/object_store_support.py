"""Real object stores for archive tests (importable as ``object_store_support``).

* :func:`running_gcs_emulator` — ``gcp-storage-emulator`` (a GCS JSON-API server) in memory.
* :func:`running_moto` — ``moto_server`` (an S3 API server).

Both run as subprocesses on free 127.0.0.1 ports and are stopped when the context ends. A missing
binary or a server that does not answer fails the run with the command and its output (never a
skip). Tests isolate themselves with a fresh bucket each (:meth:`ObjectStore.new_bucket`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

INSTALL = "pip install -e '.[dev]' (gcp-storage-emulator and moto[server] are dev extras)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _binary(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (looked next to {sys.executable}): {INSTALL}")
    return found


@dataclass
class ObjectStore:
    """One running server: its scheme (``gs``/``s3``), endpoint and fsspec storage options."""

    scheme: str
    endpoint: str
    command: list[str]
    log: Path
    storage_options: dict[str, Any] = field(default_factory=dict)

    def new_bucket(self) -> str:
        """Create a fresh, empty bucket and return its name."""
        name = f"pw-{uuid.uuid4().hex[:16]}"
        if self.scheme == "s3":
            import boto3  # type: ignore[import-untyped]

            boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            ).create_bucket(Bucket=name)
        else:
            self.filesystem().mkdir(name)
        return name

    def filesystem(self) -> Any:
        """A filesystem on this server, independent of any archive (to act behind its back)."""
        if self.scheme == "s3":
            import s3fs  # type: ignore[import-untyped]

            return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)
        from gcsfs.core import GCSFileSystem  # type: ignore[import-untyped]

        return GCSFileSystem(skip_instance_cache=True, **self.storage_options)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


class StoreTarget(NamedTuple):
    """An archive root in a fresh bucket, the options to open it with, and its server."""

    url: str
    storage_options: dict[str, Any]
    store: ObjectStore


def _wait_http(store: ObjectStore, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{' '.join(store.command)} exited with {proc.returncode}:\n{store.output()}"
            )
        try:
            with urllib.request.urlopen(store.endpoint + "/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers HTTP, even if not 200 at "/"
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(
        f"{' '.join(store.command)} did not answer HTTP at {store.endpoint} within "
        f"{timeout_s:.0f}s ({last}):\n{store.output()}"
    )


@contextmanager
def _running(store: ObjectStore, timeout_s: float) -> Iterator[ObjectStore]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STORAGE_EMU"))}
    with store.log.open("wb") as log:
        try:
            proc = subprocess.Popen(
                store.command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=store.log.parent
            )
        except OSError as exc:
            raise RuntimeError(f"cannot start {' '.join(store.command)}: {exc}; {INSTALL}") from exc
        try:
            _wait_http(store, proc, timeout_s)
            yield store
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def running_gcs_emulator(folder: Path, timeout_s: float = 30) -> Iterator[ObjectStore]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [
        _binary("gcp-storage-emulator"),
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--in-memory",
    ]
    options = {"endpoint_url": endpoint, "token": "anon", "project": "plantwatch-test"}
    store = ObjectStore("gs", endpoint, command, folder / "gcs.log", options)
    with _running(store, timeout_s) as running:
        yield running


@contextmanager
def running_moto(folder: Path, timeout_s: float = 30) -> Iterator[ObjectStore]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [_binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    store = ObjectStore("s3", endpoint, command, folder / "moto.log", options)
    with _running(store, timeout_s) as running:
        yield running
