"""Java and Maven: find a Java 17+ runtime, fetch the Kafka jars once into a cache folder.

The pom and the log4j2 configuration ship inside the package (``assets/kafka/``);
``deploy/kafka/`` in the repository holds relative symlinks to them. A fetch goes to
``<cache>/kafka/<version>/libs.partial`` and is renamed to ``libs`` when Maven succeeded; the
marker ``libs/.complete`` (written last, holding a digest of the pom and the version) makes an
interrupted fetch, or one made with another pom, run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

from plantwatch.services._proc import locked
from plantwatch.services.errors import JarFetchError, ToolMissingError

MIN_JAVA = 17
MARKER = ".complete"
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')
_JAVA_FIX = (
    f"Install Java {MIN_JAVA} or newer (Debian/Ubuntu: sudo apt-get install -y "
    "openjdk-17-jre-headless) or point JAVA_HOME at one."
)
_MVN_FIX = "Install Maven 3.6 or newer (Debian/Ubuntu: sudo apt-get install -y maven)."


def asset_text(name: str, service: str = "kafka") -> str:
    """The text of a file shipped in ``plantwatch/services/assets/<service>/``."""
    return resources.files("plantwatch.services").joinpath("assets", service, name).read_text()


def find_java(java_home: Path | None = None) -> Path:
    """The java executable of ``java_home``, else of $JAVA_HOME, else on PATH; checked >= 17."""
    home = java_home or (Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else None)
    if home is not None:
        java = home / "bin" / "java"
        if not os.access(java, os.X_OK):
            raise ToolMissingError(
                "java", f"{home} (java home) has no executable bin/java", _JAVA_FIX
            )
    else:
        found = shutil.which("java")
        if found is None:
            raise ToolMissingError("java", "not found on PATH", _JAVA_FIX)
        java = Path(found).resolve()
    major = java_major(java)
    if major < MIN_JAVA:
        raise ToolMissingError(
            "java", f"{java} is Java {major}, Kafka 4 needs {MIN_JAVA}+", _JAVA_FIX
        )
    return java


def java_major(java: Path) -> int:
    """The major version ``java -version`` reports (8 for "1.8.0_x")."""
    try:
        done = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolMissingError("java", f"{java} -version failed: {exc}", _JAVA_FIX) from exc
    match = _VERSION.search(done.stderr + done.stdout)
    if match is None:
        raise ToolMissingError(
            "java", f"cannot read the version of {java}: {done.stderr!r}", _JAVA_FIX
        )
    first = int(match.group(1))
    return int(match.group(2) or 0) if first == 1 else first


def jars_ready(libs: Path, digest: str) -> bool:
    """Did a complete fetch (or install) with this ``digest`` of its inputs fill ``libs``? Its
    marker, written last, says so (the Maven jar fetches and the Flink virtualenv use it)."""
    try:
        marker = json.loads((libs / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("digest") == digest


def fetch_jars(
    *, cache_dir: Path, version: str, mvn: str = "mvn", timeout_s: float = 900.0
) -> Path:
    """``<cache_dir>/kafka/<version>/libs`` with the Kafka server jars; runs Maven when missing.

    Safe to call from several processes at once (a file lock serialises the fetch).
    """
    return fetch_libs(
        cache_dir=cache_dir,
        service="kafka",
        version=version,
        properties={"kafka.version": version},
        expect=f"kafka_2.13-{version}.jar",
        what="Kafka",
        mvn=mvn,
        timeout_s=timeout_s,
    )


def fetch_libs(
    *,
    cache_dir: Path,
    service: str,
    version: str,
    properties: dict[str, str],
    expect: str,
    what: str,
    mvn: str = "mvn",
    timeout_s: float = 900.0,
) -> Path:
    """``<cache_dir>/<service>/<version>/libs``: the dependencies of the service's shipped
    ``pom.xml`` (``assets/<service>/``), fetched by Maven once; a file lock serialises fetches
    from several processes, and a marker records a complete one."""
    root = cache_dir.resolve() / service / version
    libs = root / "libs"
    pom = asset_text("pom.xml", service)
    digest = hashlib.sha256(f"{version}\n{pom}".encode()).hexdigest()
    if jars_ready(libs, digest):
        return libs
    with locked(root / ".lock"):
        if jars_ready(libs, digest):
            return libs
        (root / "pom.xml").write_text(pom, encoding="utf-8")
        copy_dependencies(
            root / "pom.xml",
            root / "libs.partial",
            properties,
            expect=expect,
            what=what,
            mvn=mvn,
            timeout_s=timeout_s,
        )
        if libs.exists():
            shutil.rmtree(libs)
        (root / "libs.partial").rename(libs)
        count = len(list(libs.glob("*.jar")))
        marker = {"digest": digest, "version": version, "jars": count, "fetched": time.time()}
        (libs / MARKER).write_text(json.dumps(marker), encoding="utf-8")
    return libs


def copy_dependencies(
    pom: Path,
    out: Path,
    properties: dict[str, str],
    *,
    expect: str,
    what: str,
    mvn: str = "mvn",
    timeout_s: float = 900.0,
) -> None:
    """``mvn dependency:copy-dependencies`` of ``pom`` into a fresh ``out``; checks that
    ``expect`` (a jar name) arrived. Raises ToolMissingError without Maven, JarFetchError when
    the fetch fails."""
    executable = shutil.which(mvn)
    if executable is None:
        raise ToolMissingError("mvn", f"{mvn!r} not found on PATH", _MVN_FIX)
    if out.exists():
        shutil.rmtree(out)
    command = [
        executable,
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={out}",
        *(f"-D{k}={v}" for k, v in properties.items()),
    ]
    try:
        done = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        text = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else ""
        raise JarFetchError(
            command, None, f"timed out after {timeout_s:.0f}s\n{_tail(text)}", what=what
        ) from exc
    except OSError as exc:
        raise JarFetchError(command, None, str(exc), what=what) from exc
    if done.returncode != 0:
        raise JarFetchError(command, done.returncode, _tail(done.stdout), what=what)
    if not (out / expect).is_file():
        raise JarFetchError(command, 0, f"Maven succeeded but {out} has no {expect}", what=what)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
