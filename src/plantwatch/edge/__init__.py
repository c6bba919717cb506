"""The edge SDK: what a device or gateway uses to send readings, losing nothing.

Readings are validated, numbered per sensor, written to a durable on-disk :class:`Spool` and
sent by a background thread through a :class:`Transport`; they leave the spool only when the
receiving side acknowledged them. Start reading at ``client.py``, then ``spool.py``.
"""

from plantwatch.edge.client import Backoff, Batching, EdgeClient, EdgeStats
from plantwatch.edge.errors import (
    ClientClosedError,
    EdgeError,
    SpoolCorruptError,
    SpoolFullError,
    TransportError,
    TransportUnavailable,
)
from plantwatch.edge.spool import (
    PendingEntry,
    Spool,
    SpoolEntry,
    SpoolLimits,
    SpoolStats,
    recover_sequences,
)
from plantwatch.edge.transport import InProcessTransport, Transport

__all__ = [
    "Backoff",
    "Batching",
    "ClientClosedError",
    "EdgeClient",
    "EdgeError",
    "EdgeStats",
    "InProcessTransport",
    "PendingEntry",
    "Spool",
    "SpoolCorruptError",
    "SpoolEntry",
    "SpoolFullError",
    "SpoolLimits",
    "SpoolStats",
    "Transport",
    "TransportError",
    "TransportUnavailable",
    "recover_sequences",
]
