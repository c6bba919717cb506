"""Notification errors."""

from __future__ import annotations

from plantwatch.core.errors import ConfigError, PlantwatchError


class DeliveryError(PlantwatchError):
    """A receiver could not deliver a notification.

    Names the receiver, where it sent to (URL without secrets, or SMTP host) and what went
    wrong. ``status`` is the HTTP status or SMTP reply code when the peer answered one.
    ``retryable`` is False for answers that will not change on retry (HTTP 4xx other than
    408/425/429, permanent SMTP 5xx replies): :class:`~plantwatch.alert.notify.Delivery` then
    stops retrying.
    """

    def __init__(
        self,
        receiver: str,
        target: str,
        problem: str,
        *,
        status: int | None = None,
        retryable: bool = True,
    ) -> None:
        self.receiver = receiver
        self.target = target
        self.problem = problem
        self.status = status
        self.retryable = retryable
        super().__init__(f"receiver {receiver!r} ({target}): {problem}")


class ReceiverConfigError(ConfigError, ValueError):
    """A receiver's configuration is missing an option or has one we cannot use."""
