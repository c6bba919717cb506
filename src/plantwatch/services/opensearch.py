"""A real OpenSearch 2.19 node (it speaks the Elasticsearch REST APIs) on 127.0.0.1, no Docker.

Maven fetches the server and three modules from Maven Central once; they are laid out as an
OpenSearch home (``lib/``, ``modules/<name>/`` with their ``plugin-descriptor.properties`` and
security policies, an empty ``plugins/``) in ``<cache_dir>/opensearch/<version>/home``, shared
read-only by every node. A node lives in one folder ``DIR``::

    DIR/config/opensearch.yml, jvm.options (for reading only), log4j2.properties
    DIR/data/  DIR/logs/  DIR/tmp/
    DIR/opensearch.log          the node's stdout and stderr, appended on every start
    DIR/opensearch.pid

Modules: ``transport-netty4`` (HTTP), ``lang-painless`` (the ``script`` processor),
``lang-mustache`` (``{{...}}`` templates in processors, from ``lang-mustache-client``) and
``ingest-common`` (grok, dissect, date, json, set, fingerprint, ... processors; it extends
lang-painless).

OpenSearch refuses to run as root. When plantwatch runs as root (containers, CI), it starts the
node with JNA's native library disabled (``-Djna.nounpack=true``): the node then cannot check
the user, and also does not lock memory or install its system call filter, which a development
or test node does not need. Java 17 suffices for 2.19 (3.x needs Java 21).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from plantwatch.services import _proc
from plantwatch.services._tools import (
    MARKER,
    asset_text,
    copy_dependencies,
    find_java,
    jars_ready,
)
from plantwatch.services.errors import (
    JarFetchError,
    ServiceConfigError,
    ServiceStartError,
    ServiceStopError,
)

OPENSEARCH_VERSION = "2.19.6"
DEFAULT_HTTP_PORT = 9200
TRANSPORT_PORT_OFFSET = 100

#: module folder → (plugin class, extended modules, jar name prefixes, security policy)
MODULES: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "transport-netty4": (
        "org.opensearch.transport.Netty4Plugin",
        "",
        ("transport-netty4-client-", "netty-"),
        """grant {
  permission java.io.FilePermission "/proc/sys/net/core/somaxconn", "read";
  permission java.net.SocketPermission "*", "accept,connect";
  permission java.lang.RuntimePermission "*", "setContextClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
  permission java.util.PropertyPermission "sun.nio.ch.bugLevel", "write";
};
""",
    ),
    "lang-painless": (
        "org.opensearch.painless.PainlessPlugin",
        "",
        ("lang-painless-", "antlr4-runtime-", "asm-", "opensearch-scripting-painless-spi-"),
        """grant {
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
""",
    ),
    "lang-mustache": (
        "org.opensearch.script.mustache.MustachePlugin",
        "",
        ("lang-mustache-client-", "compiler-"),
        """grant {
  permission java.lang.RuntimePermission "accessDeclaredMembers";
};
""",
    ),
    "ingest-common": (
        "org.opensearch.ingest.common.IngestCommonPlugin",
        "lang-painless",
        ("ingest-common-", "opensearch-grok-", "opensearch-dissect-", "jcodings-", "joni-"),
        "",
    ),
}

#: what bin/opensearch's launcher (SystemJvmOptions, jvm.options) adds, minus the heap
SYSTEM_JVM_OPTIONS = (
    "-Xss1m",
    "-XX:+UseG1GC",
    "-XX:G1ReservePercent=25",
    "-XX:InitiatingHeapOccupancyPercent=30",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+ShowCodeDetailsInExceptionMessages",
    "-Djava.awt.headless=true",
    "-Dfile.encoding=UTF-8",
    "-Djna.nosys=true",
    "-Dopensearch.networkaddress.cache.ttl=60",
    "-Dopensearch.networkaddress.cache.negative.ttl=10",
    "-Dio.netty.noUnsafe=true",
    "-Dio.netty.noKeySetOptimization=true",
    "-Dio.netty.recycler.maxCapacityPerThread=0",
    "-Dio.netty.allocator.numDirectArenas=0",
    "-Dlog4j.shutdownHookEnabled=false",
    "-Dlog4j2.disable.jmx=true",
    "-Djava.locale.providers=SPI,COMPAT",
)


@dataclass(frozen=True, kw_only=True)
class OpenSearchConfig:
    """Where a node lives, its ports and heap, and how long to wait for it."""

    dir: Path
    cache_dir: Path
    http_port: int = DEFAULT_HTTP_PORT
    transport_port: int | None = None  # None: http_port + 100
    version: str = OPENSEARCH_VERSION
    heap_mb: int = 512
    cluster_name: str = "plantwatch"
    java_home: Path | None = None  # None: $JAVA_HOME, else java on PATH
    mvn: str = "mvn"
    start_timeout_s: float = 180.0
    stop_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        ports = (self.http_port, self.transport)
        if any(not 1 <= p <= 65535 for p in ports) or ports[0] == ports[1]:
            raise ServiceConfigError(
                f"ports http={self.http_port} transport={self.transport} are out of range or "
                "equal: choose another --port"
            )
        if self.heap_mb < 128:
            raise ServiceConfigError(f"heap_mb={self.heap_mb}: give OpenSearch 128 MB or more")
        object.__setattr__(self, "dir", Path(self.dir).resolve())
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).resolve())

    @property
    def transport(self) -> int:
        tp = self.transport_port
        return self.http_port + TRANSPORT_PORT_OFFSET if tp is None else tp


def fetch_home(
    *, cache_dir: Path, version: str = OPENSEARCH_VERSION, mvn: str = "mvn", timeout_s: float = 900
) -> Path:
    """``<cache_dir>/opensearch/<version>/home``: an OpenSearch home with lib/ and modules/.

    Runs Maven when it is missing or was built from another pom; safe from several processes
    at once (a file lock serialises the fetch). The marker ``home/.complete`` is written last.
    """
    root = Path(cache_dir).resolve() / "opensearch" / version
    home = root / "home"
    pom = asset_text("pom.xml", "opensearch")
    digest = hashlib.sha256(f"{version}\n{pom}\n{sorted(MODULES.items())}".encode()).hexdigest()
    if jars_ready(home, digest):
        return home
    with _proc.locked(root / ".lock"):
        if jars_ready(home, digest):
            return home
        jars = root / "jars"
        root.mkdir(parents=True, exist_ok=True)
        (root / "pom.xml").write_text(pom, encoding="utf-8")
        copy_dependencies(
            root / "pom.xml",
            jars,
            {"opensearch.version": version},
            expect=f"opensearch-{version}.jar",
            what="OpenSearch",
            mvn=mvn,
            timeout_s=timeout_s,
        )
        partial = root / "home.partial"
        if partial.exists():
            shutil.rmtree(partial)
        count = _lay_out(jars, partial, version)
        if home.exists():
            shutil.rmtree(home)
        partial.rename(home)
        shutil.rmtree(jars)
        marker = {"digest": digest, "version": version, "jars": count, "fetched": time.time()}
        (home / MARKER).write_text(json.dumps(marker), encoding="utf-8")
    return home


def _lay_out(jars: Path, home: Path, version: str) -> int:
    """Sort the fetched jars into ``home/lib`` and ``home/modules/<name>``; the jar count."""
    lib = home / "lib"
    for folder in (lib, home / "bin", home / "plugins", *(home / "modules" / m for m in MODULES)):
        folder.mkdir(parents=True)
    found = sorted(jars.glob("*.jar"))
    for jar in found:
        target = next(
            (home / "modules" / m for m, spec in MODULES.items() if jar.name.startswith(spec[2])),
            lib,
        )
        shutil.copy2(jar, target / jar.name)
    for name, (classname, extends, prefixes, policy) in MODULES.items():
        folder = home / "modules" / name
        if not (folder / f"{prefixes[0]}{version}.jar").is_file():
            raise JarFetchError(
                ["(layout)"],
                0,
                f"the fetch holds no {prefixes[0]}{version}.jar for {folder}",
                what="OpenSearch",
            )
        descriptor = {
            "description": f"{name} module, laid out by plantwatch",
            "version": version,
            "name": name,
            "classname": classname,
            "java.version": "11",
            "opensearch.version": version,
            "extended.plugins": extends,
            "has.native.controller": "false",
        }
        text = "".join(f"{k}={v}\n" for k, v in descriptor.items())
        (folder / "plugin-descriptor.properties").write_text(text, encoding="utf-8")
        if policy:
            (folder / "plugin-security.policy").write_text(policy, encoding="utf-8")
    return len(found)


class OpenSearchNode:
    """One single-node OpenSearch cluster in ``config.dir``; a context manager (start/stop)."""

    def __init__(self, config: OpenSearchConfig) -> None:
        self._config = config
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> OpenSearchConfig:
        return self._config

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._config.http_port}"

    @property
    def conf_dir(self) -> Path:
        return self._config.dir / "config"

    @property
    def log_path(self) -> Path:
        return self._config.dir / "opensearch.log"

    @property
    def pid_path(self) -> Path:
        return self._config.dir / "opensearch.pid"

    def __enter__(self) -> OpenSearchNode:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def _marker(self) -> Path:
        """The java argument that names this node's folder (``_proc`` matches it exactly, as
        Kafka's ``server.properties``; ``conf_dir`` is resolved, so ``str()`` gives it back)."""
        return Path(f"-Dopensearch.path.conf={self.conf_dir}")

    def pid(self) -> int | None:
        """The pid of this folder's running node (verified through /proc), or None."""
        child = self._child
        if child is not None:
            if child.poll() is None:
                return child.pid  # our child: /proc may not show java yet while it execs
            self._child = None  # reaped: from now on the pid file and /proc tell
        pid = _proc.read_pid(self.pid_path)
        return pid if pid is not None and _proc.is_java_with(pid, self._marker) else None

    def health(self, timeout_s: float = 2.0) -> dict[str, Any] | None:
        """``GET /_cluster/health`` once yellow, or None when the node does not answer."""
        url = f"{self.url}/_cluster/health?wait_for_status=yellow&timeout={timeout_s:.0f}s"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s + 2) as resp:
                body: dict[str, Any] = json.loads(resp.read())
        except (OSError, ValueError):  # URLError and HTTPError are OSErrors
            return None
        return body if body.get("status") in ("yellow", "green") else None

    def start(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Start the node (or find it running) and wait until it is yellow; its health."""
        cfg = self._config
        timeout = cfg.start_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        cfg.dir.mkdir(parents=True, exist_ok=True)
        with _proc.locked(cfg.dir / ".lock"):
            if self.pid() is not None:
                return self._wait_ready(0, deadline, timeout)
            _proc.check_ports({cfg.http_port: "OpenSearch HTTP", cfg.transport: "transport"})
            java = find_java(cfg.java_home)
            home = fetch_home(cache_dir=cfg.cache_dir, version=cfg.version, mvn=cfg.mvn)
            self._write_config()
            command = self.command(java, home)
            offset = self._spawn(command)
            try:
                return self._wait_ready(offset, deadline, timeout)
            except BaseException:  # a failed or interrupted start leaves no node behind
                self._terminate(10.0)
                raise

    def command(self, java: Path, home: Path) -> list[str]:
        """The java command line of this node."""
        cfg = self._config
        heap = f"{cfg.heap_mb}m"
        root_only = ["-Djna.nounpack=true"] if os.geteuid() == 0 else []
        return [
            str(java),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            *SYSTEM_JVM_OPTIONS,
            *root_only,
            f"-Djava.io.tmpdir={cfg.dir / 'tmp'}",
            f"-XX:ErrorFile={cfg.dir / 'logs' / 'hs_err_pid%p.log'}",
            f"-Dopensearch.path.home={home}",
            str(self._marker),
            "-Dopensearch.distribution.type=tar",
            "-Dopensearch.bundled_jdk=false",
            "-cp",
            f"{home / 'lib'}/*",
            "org.opensearch.bootstrap.OpenSearch",
        ]

    def _write_config(self) -> None:
        cfg = self._config
        for sub in ("config", "data", "logs", "tmp"):
            (cfg.dir / sub).mkdir(parents=True, exist_ok=True)
        settings = {
            "cluster.name": cfg.cluster_name,
            "node.name": "node-1",
            "path.data": str(cfg.dir / "data"),
            "path.logs": str(cfg.dir / "logs"),
            "network.host": "127.0.0.1",
            "http.port": cfg.http_port,
            "transport.port": cfg.transport,
            "discovery.type": "single-node",
            # a development node on a shared disk: never turn indices read-only when it fills
            "cluster.routing.allocation.disk.threshold_enabled": False,
            "action.auto_create_index": True,
        }
        text = "".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items())
        (self.conf_dir / "opensearch.yml").write_text(text, encoding="utf-8")
        (self.conf_dir / "log4j2.properties").write_text(
            asset_text("log4j2.properties", "opensearch"), encoding="utf-8"
        )

    def _spawn(self, command: list[str]) -> int:
        self._child, offset = _proc.spawn_logged(
            command,
            log=self.log_path,
            pid_file=self.pid_path,
            cwd=self._config.dir,
            title="OpenSearch",
        )
        return offset

    def _wait_ready(self, offset: int, deadline: float, timeout: float) -> dict[str, Any]:
        while True:
            child = self._child
            code = None if child is None else child.poll()
            if code is not None or (child is None and self.pid() is None):
                raise ServiceStartError(
                    f"the OpenSearch node in {self._config.dir} exited while starting "
                    f"(exit code {code})",
                    log=self.log_path,
                    log_tail=_proc.tail(self.log_path, start=offset),
                )
            health = self.health(timeout_s=1.0)
            if health is not None:
                return health
            if time.monotonic() >= deadline:
                raise ServiceStartError(
                    f"the OpenSearch node in {self._config.dir} did not answer at {self.url} "
                    f"within {timeout:.0f}s; it is stopped again",
                    log=self.log_path,
                    log_tail=_proc.tail(self.log_path, start=offset),
                )
            time.sleep(0.2)

    def stop(self, timeout_s: float | None = None) -> bool:
        """Stop the node (SIGTERM, then SIGKILL); False when none was running."""
        with _proc.locked(self._config.dir / ".lock"):
            return self._terminate(timeout_s)

    def _gone(self, pid: int, timeout_s: float) -> bool:
        return _proc.wait_gone(pid, self._marker, timeout_s, self._child)

    def _terminate(self, timeout_s: float | None) -> bool:
        timeout = self._config.stop_timeout_s if timeout_s is None else timeout_s
        pid = self.pid()
        if pid is not None:
            _proc.send(pid, signal.SIGTERM)
            if not self._gone(pid, timeout):
                _proc.send(pid, signal.SIGKILL)
                if not self._gone(pid, 10.0):
                    raise ServiceStopError(f"the OpenSearch node (pid {pid}) survived SIGKILL")
        self._child = None
        self.pid_path.unlink(missing_ok=True)
        return pid is not None


# -- `plantwatch services opensearch start|stop|status` (wired by cli.py) ----------------------


def add_parser(svc_sub: Any) -> None:
    """Add ``opensearch`` to the ``services`` subcommands."""
    p = svc_sub.add_parser(
        "opensearch",
        help="an OpenSearch node (Elasticsearch APIs) on 127.0.0.1, jars from Maven Central",
    )
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--dir", type=Path, default=Path(".cache/opensearch-run"), metavar="DIR")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_HTTP_PORT,
        metavar="P",
        help="HTTP port (transport P+100)",
    )


def cmd(args: Any, *, cache_dir: Path) -> int:
    """Run ``services opensearch``; ``cache_dir`` is the settings' cache folder."""
    node = OpenSearchNode(OpenSearchConfig(dir=args.dir, cache_dir=cache_dir, http_port=args.port))
    if args.action == "start":
        began = time.monotonic()
        health = node.start()
        took = time.monotonic() - began
        print(f"OpenSearch {node.config.version} at {node.url}: {health['status']} ({took:.1f}s)")
        print(f"log: {node.log_path}")
        print(f"\nplantwatch export --from elasticsearch://127.0.0.1:{node.config.http_port} ...")
        return 0
    if args.action == "stop":
        stopped = node.stop()
        print(f"stopped {node.url}" if stopped else f"nothing was running in {args.dir}")
        return 0
    pid = node.pid()
    answer = node.health() if pid is not None else None
    state = "not running" if pid is None else (answer or {}).get("status", "not answering")
    print(f"OpenSearch in {args.dir}: {state}" + (f" (pid {pid}, {node.url})" if pid else ""))
    return 0 if answer is not None else 1
