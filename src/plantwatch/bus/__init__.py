"""The bus: one small interface, an in-process implementation (and Kafka, in its own issue)."""

from plantwatch.bus.base import Bus, Consumer, Message
from plantwatch.bus.errors import BusClosedError, BusError, BusFullError
from plantwatch.bus.memory import MemoryBus, MemoryConsumer

__all__ = [
    "Bus",
    "BusClosedError",
    "BusError",
    "BusFullError",
    "Consumer",
    "MemoryBus",
    "MemoryConsumer",
    "Message",
]
