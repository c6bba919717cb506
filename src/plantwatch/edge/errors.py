"""Errors of the edge SDK.

Invalid readings raise :class:`~plantwatch.core.errors.InvalidReadingError` (from ``core``);
everything that goes wrong while keeping or delivering accepted readings is an
:class:`EdgeError`.
"""

from __future__ import annotations

from pathlib import Path

from plantwatch.core.errors import PlantwatchError


class EdgeError(PlantwatchError):
    """Root of the edge SDK's errors."""


class SpoolFullError(EdgeError):
    """The spool has no room for an entry under its ``when_full`` policy. Nothing was written."""

    def __init__(
        self,
        *,
        directory: Path,
        used_bytes: int,
        max_bytes: int,
        needed_bytes: int,
        policy: str,
        waited_s: float | None = None,
    ) -> None:
        self.directory = directory
        self.used_bytes = used_bytes
        self.max_bytes = max_bytes
        self.needed_bytes = needed_bytes
        self.policy = policy
        self.waited_s = waited_s
        if needed_bytes > max_bytes:
            why = f"one entry of {needed_bytes} bytes is larger than the whole spool"
            todo = "send smaller batches or raise PLANTWATCH_SPOOL__MAX_BYTES"
        else:
            waited = f" after waiting {waited_s:.1f}s for acknowledgements" if waited_s else ""
            why = (
                f"{used_bytes} of {max_bytes} bytes are used and the entry needs {needed_bytes}"
                f"{waited} (when_full={policy!r})"
            )
            todo = (
                "check that the transport delivers (is a consumer subscribed and committing?), "
                "raise PLANTWATCH_SPOOL__MAX_BYTES, or set PLANTWATCH_SPOOL__WHEN_FULL=drop_oldest "
                "to keep the newest readings at the cost of losing the oldest"
            )
        super().__init__(f"spool {directory} is full: {why}; {todo}")


class SpoolCorruptError(EdgeError):
    """A spool file is damaged before its tail, so the spool cannot tell what is intact."""

    def __init__(self, *, path: Path, offset: int, problem: str) -> None:
        self.path = path
        self.offset = offset
        self.problem = problem
        super().__init__(
            f"spool file {path} is corrupt at offset {offset}: {problem}. The damage is not a "
            "torn write at the end of the file, so it is not repaired automatically: move the "
            "file out of the spool directory (its entries will not be sent) and start again"
        )


class TransportError(EdgeError):
    """The transport cannot take an entry now. The client keeps it and retries with backoff."""


class TransportUnavailable(TransportError):  # noqa: N818 (the SDK's public name)
    """Nobody can receive right now (no consumer, bus full or closed). Retryable."""


class ClientClosedError(EdgeError):
    """The client (or its spool) was closed; create a new one to send more readings."""
