"""Notifications: what receivers are given (``model``), the receivers (``receivers``) and
non-blocking delivery with retries (``delivery``)."""

from plantwatch.alert.notify.delivery import Delivery, DeliveryResult, ReceiverStats
from plantwatch.alert.notify.errors import DeliveryError, ReceiverConfigError
from plantwatch.alert.notify.model import AlertInstance, Notification
from plantwatch.alert.notify.receivers import Receiver, build_receiver

__all__ = [
    "AlertInstance",
    "Delivery",
    "DeliveryError",
    "DeliveryResult",
    "Notification",
    "Receiver",
    "ReceiverConfigError",
    "ReceiverStats",
    "build_receiver",
]
