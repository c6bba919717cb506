"""Errors of the local services (a Kafka broker or cluster started from Maven Central jars).

Every message says what was wrong, with the value, and what to do. Subprocess and OS errors are
translated where they happen (``raise ... from exc``); their useful fields are kept.
"""

from __future__ import annotations

from pathlib import Path

from plantwatch.core.errors import PlantwatchError


class ServiceError(PlantwatchError):
    """Root of the errors raised while starting, stopping or inspecting a local service."""


class ServiceConfigError(ServiceError):
    """An option the service cannot use (brokers, ports), or a DIR laid out for other options."""


class NoClusterError(ServiceError):
    """The DIR holds no cluster that plantwatch started."""


class ToolMissingError(ServiceError):
    """A program the service needs (Java 17+, Maven) is missing or too old."""

    def __init__(self, tool: str, problem: str, fix: str) -> None:
        self.tool = tool
        self.problem = problem
        self.fix = fix
        super().__init__(f"{tool}: {problem}. {fix}")


class JarFetchError(ServiceError):
    """Maven could not fetch a service's jars; carries the command and the tail of its output."""

    def __init__(
        self, command: list[str], returncode: int | None, output_tail: str, *, what: str = "Kafka"
    ) -> None:
        self.command = command
        self.returncode = returncode
        self.output_tail = output_tail
        super().__init__(
            f"fetching the {what} jars failed (exit code {returncode}): {' '.join(command)}\n"
            f"{output_tail}\n"
            "Check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml) and "
            "run the command above by hand to see the whole output."
        )


class PortInUseError(ServiceError):
    """A port a node needs is taken by another process."""

    def __init__(self, port: int, pid: int | None, command: str | None, role: str) -> None:
        self.port = port
        self.pid = pid
        self.command = command
        self.role = role
        holder = f"by pid {pid} ({command})" if pid is not None else "by another process"
        super().__init__(
            f"port {port} ({role}) on 127.0.0.1 is already in use {holder}: stop that process "
            "or choose other ports with --port (client ports P..P+n-1, controller ports from "
            "P+100)."
        )


class ServiceStartError(ServiceError):
    """A node did not start, or the cluster did not answer in time; names the log to read."""

    def __init__(self, problem: str, *, log: Path | None = None, log_tail: str = "") -> None:
        self.problem = problem
        self.log = log
        self.log_tail = log_tail
        text = problem
        if log is not None:
            text += f"\nlast lines of {log}:\n{log_tail}" if log_tail else f"\nsee {log}"
        super().__init__(text)


class ServiceStopError(ServiceError):
    """A node did not exit, even after SIGKILL."""
