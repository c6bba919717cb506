"""Receivers: where a :class:`~plantwatch.alert.notify.model.Notification` goes.

A receiver has a ``name`` and a blocking ``send(n)`` that delivers or raises
:class:`~plantwatch.alert.notify.errors.DeliveryError` (HTTP status >= 300 — redirects are not
followed —, timeout, refused connection, SMTP error), naming the receiver, where it sent to and
what went wrong. Every peer call has a timeout (``timeout_s``, default 10 s, per socket
operation). :class:`~plantwatch.alert.notify.delivery.Delivery` calls ``send`` from worker
threads, so a slow receiver never blocks the alert path. Standard library only; each receiver
builds its HTTP opener or TLS context once. What is sent is rendered by the pure functions
re-exported here (:func:`webhook_payload`, :func:`slack_payload`, …).

With a ``secret``, :class:`WebhookReceiver` adds ``X-Plantwatch-Timestamp`` (unix seconds) and
``X-Plantwatch-Signature: sha256=<hex HMAC-SHA256 of b"<timestamp>." + raw body>``. Verify it on
the receiving side before parsing the body (or call :func:`verify_signature`)::

    import hashlib, hmac, time
    def verify(secret: bytes, ts: str, body: bytes, sig: str) -> bool:
        if abs(time.time() - int(ts)) > 300: return False  # a replay, or clocks apart
        mac = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest("sha256=" + mac, sig)
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from email.message import Message
from email.utils import parseaddr
from types import MappingProxyType
from typing import IO, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from plantwatch.alert.notify._payloads import (
    ZERO_TIME,
    alertmanager_payload,
    email_message,
    rfc3339,
    slack_payload,
    subject,
    teams_payload,
    webhook_payload,
    where,
)
from plantwatch.alert.notify.errors import DeliveryError, ReceiverConfigError
from plantwatch.alert.notify.model import Notification

__all__ = [
    "ZERO_TIME",
    "AlertmanagerReceiver",
    "EmailReceiver",
    "LogReceiver",
    "Receiver",
    "SlackReceiver",
    "TeamsReceiver",
    "WebhookReceiver",
    "alertmanager_payload",
    "build_receiver",
    "email_message",
    "rfc3339",
    "sign",
    "slack_payload",
    "subject",
    "teams_payload",
    "verify_signature",
    "webhook_payload",
]

log = logging.getLogger("plantwatch.notify")

DEFAULT_TIMEOUT_S = 10.0
_EMPTY: Mapping[str, str] = MappingProxyType({})
_USER_AGENT = "plantwatch-notify/1"
_MAX_BODY = 64 * 1024  # bytes of a response read (error messages quote 200 characters)


class Receiver(Protocol):
    """Anything with a name that delivers a notification or raises DeliveryError."""

    @property
    def name(self) -> str: ...

    def send(self, n: Notification) -> None: ...


# --- webhook signatures --------------------------------------------------------------------------


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of b"<timestamp>." + body>`` with ``secret``."""
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    signature: str,
    *,
    now_s: float | None = None,
    tolerance_s: float = 300,
) -> bool:
    """True if ``signature`` signs ``body`` at ``timestamp`` with ``secret`` and the timestamp
    is within ``tolerance_s`` of now (older or future-dated: a replay or a bad clock)."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body).encode(), signature.encode())


# --- HTTP receivers ------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects become errors: urllib would turn a redirected POST into a GET without body."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _shown_url(url: str, *, secret_path: bool) -> str:
    """The URL for messages and logs: no credentials or query; no path if the path is secret."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    path = "/…" if secret_path and parts.path.strip("/") else parts.path
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the service running, is the port right?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    return f"{type(exc).__name__}: {exc}"


def _json(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class _HttpReceiver:
    """POSTs JSON; any status outside 2xx raises DeliveryError (retryable: 5xx, 408, 425, 429)."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout_s: float,
        headers: Mapping[str, str] = _EMPTY,
        secret_path: bool = False,
    ) -> None:
        _check_common(name, timeout_s)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = _shown_url(url, secret_path=True)
            raise ReceiverConfigError(
                f"receiver {name!r}: url must look like http(s)://host/…, got {shown!r}"
            )
        self.name = name
        self.url = url
        self.target = _shown_url(url, secret_path=secret_path)
        self.timeout_s = float(timeout_s)
        self._headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT, **headers}
        https = urllib.request.HTTPSHandler(context=ssl.create_default_context())
        self._opener = urllib.request.build_opener(_NoRedirect(), https)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.target!r})"

    def _post(self, url: str, body: bytes, headers: Mapping[str, str] = _EMPTY) -> None:
        req = urllib.request.Request(url, body, {**self._headers, **headers}, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                resp.read(_MAX_BODY)
        except urllib.error.HTTPError as exc:
            raise self._status_error(exc) from exc
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            problem = f"POST failed: {_describe(exc, self.timeout_s)}"
            raise DeliveryError(self.name, self.target, problem) from exc

    def _status_error(self, exc: urllib.error.HTTPError) -> DeliveryError:
        try:
            text = exc.read(_MAX_BODY).decode("utf-8", "replace").strip()
        except (OSError, http.client.HTTPException):
            text = ""
        problem = f"HTTP {exc.code} {exc.reason}"
        if 300 <= exc.code < 400:
            problem += f" to {exc.headers.get('Location', '?')} (redirects are not followed)"
        if text:
            problem += f": {text[:200]}"
        retryable = exc.code >= 500 or exc.code in (408, 425, 429)
        return DeliveryError(self.name, self.target, problem, status=exc.code, retryable=retryable)


class WebhookReceiver(_HttpReceiver):
    """POSTs :func:`webhook_payload` as JSON, HMAC-signed when ``secret`` is set."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        secret: str | None = None,
        headers: Mapping[str, str] = _EMPTY,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(name, url, timeout_s=timeout_s, headers=headers)
        self._secret = secret

    def send(self, n: Notification) -> None:
        body = _json(webhook_payload(n))
        headers: dict[str, str] = {}
        if self._secret is not None:
            ts = int(time.time())
            headers["X-Plantwatch-Timestamp"] = str(ts)
            headers["X-Plantwatch-Signature"] = sign(self._secret, ts, body)
        self._post(self.url, body, headers)


class SlackReceiver(_HttpReceiver):
    """A Slack incoming webhook (:func:`slack_payload`). Its URL is a secret: never shown."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        channel: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(name, url, timeout_s=timeout_s, secret_path=True)
        self.channel = channel

    def send(self, n: Notification) -> None:
        self._post(self.url, _json(slack_payload(n, self.channel)))


class TeamsReceiver(_HttpReceiver):
    """A Microsoft Teams Workflows / incoming webhook (:func:`teams_payload`); URL not shown."""

    def __init__(self, name: str, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(name, url, timeout_s=timeout_s, secret_path=True)

    def send(self, n: Notification) -> None:
        self._post(self.url, _json(teams_payload(n)))


class AlertmanagerReceiver(_HttpReceiver):
    """Forwards alerts to Prometheus Alertmanager: ``POST {url}/api/v2/alerts``
    (:func:`alertmanager_payload`)."""

    def __init__(self, name: str, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(name, url.rstrip("/"), timeout_s=timeout_s)
        self.endpoint = f"{self.url}/api/v2/alerts"

    def send(self, n: Notification) -> None:
        self._post(self.endpoint, _json(alertmanager_payload(n)))


# --- e-mail ---------------------------------------------------------------------------------------


class EmailReceiver:
    """An e-mail per notification over SMTP (:func:`email_message`).

    ``starttls`` (the default) upgrades the connection and fails if the server does not offer
    STARTTLS; ``ssl_tls`` uses implicit TLS instead (port 465; ``starttls`` is then moot).
    Credentials are only ever sent over TLS. ``ssl_context`` defaults to the system's trust.
    """

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int = 587,
        sender: str,
        to: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        ssl_tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        _check_common(name, timeout_s)
        recipients = (to,) if isinstance(to, str) else tuple(to)
        if not host or not sender or not recipients:
            raise ReceiverConfigError(f"receiver {name!r}: host, sender and to must not be empty")
        if username is not None and not (starttls or ssl_tls):
            raise ReceiverConfigError(
                f"receiver {name!r}: refusing to send the password of {username!r} unencrypted; "
                "set starttls=True or ssl_tls=True"
            )
        self.name = name
        self.host, self.port, self.sender, self.to = host, port, sender, recipients
        self._envelope_from = parseaddr(sender)[1] or sender  # "Name <a@b>" -> a@b
        self.target = f"smtp://{host}:{port}"
        self.timeout_s = float(timeout_s)
        self._username, self._password = username, password
        self._starttls, self._ssl_tls = starttls and not ssl_tls, ssl_tls
        self._context = ssl_context or ssl.create_default_context()

    def __repr__(self) -> str:
        return f"EmailReceiver({self.name!r}, {self.target!r})"

    def send(self, n: Notification) -> None:
        msg = email_message(n, sender=self.sender, to=self.to)
        try:
            with self._connect() as smtp:
                if self._username is not None:
                    smtp.login(self._username, self._password or "")
                refused = smtp.send_message(msg, self._envelope_from, list(self.to))
        except DeliveryError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise self._error(exc) from exc
        if refused:  # the others got it: retrying would send them duplicates
            log.warning("receiver %r (%s): recipients refused: %s", self.name, self.target, refused)

    def _connect(self) -> smtplib.SMTP:
        if self._ssl_tls:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout_s, context=self._context
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        try:
            smtp.ehlo()
            if self._starttls:
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(
                        self.name,
                        self.target,
                        "the server does not offer STARTTLS; not continuing without TLS (use "
                        "ssl_tls=True for port 465, or starttls=False for a trusted local relay)",
                        retryable=False,
                    )
                smtp.starttls(context=self._context)
                smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _error(self, exc: BaseException) -> DeliveryError:
        code: int | None = None
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            code = exc.smtp_code
            problem = f"login as {self._username!r} refused: {code} {_text(exc.smtp_error)}"
        elif isinstance(exc, smtplib.SMTPResponseException):
            code = exc.smtp_code
            problem = f"SMTP error {code} {_text(exc.smtp_error)}"
        elif isinstance(exc, smtplib.SMTPRecipientsRefused):
            code = min((c for c, _ in exc.recipients.values()), default=None)
            problem = f"every recipient refused: {exc.recipients}"
        elif isinstance(exc, smtplib.SMTPNotSupportedError):
            problem = f"the server does not support it: {exc}"
        else:
            problem = _describe(exc, self.timeout_s)
        retryable = code is None or code < 500  # 5xx replies are permanent
        return DeliveryError(self.name, self.target, problem, status=code, retryable=retryable)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


# --- log ------------------------------------------------------------------------------------------


class LogReceiver:
    """One line per alert on the ``plantwatch.notify`` logger (WARNING while firing, else INFO)."""

    def __init__(self, name: str) -> None:
        _check_common(name, DEFAULT_TIMEOUT_S)
        self.name = name

    def __repr__(self) -> str:
        return f"LogReceiver({self.name!r})"

    def send(self, n: Notification) -> None:
        for a in n.alerts:
            log.log(
                logging.WARNING if a.status == "firing" else logging.INFO,
                "%s %s %s %s value=%.6g alarm=%s reason=%s: %s",
                a.status.upper(),
                a.severity,
                a.rule,
                where(a),
                a.value,
                a.alarm_id or "-",
                n.reason,
                a.annotations.get("summary", ""),
            )


# --- configuration -------------------------------------------------------------------------------


def _check_common(name: str, timeout_s: float) -> None:
    if not name:
        raise ReceiverConfigError("a receiver needs a non-empty name")
    if not timeout_s > 0:
        raise ReceiverConfigError(f"receiver {name!r}: timeout_s must be > 0, got {timeout_s!r}")


_Spec = dict[str, tuple[tuple[type, ...], bool]]  # option -> (accepted types, required)
_STR, _SECRET = (str,), (str, SecretStr)
_KINDS: dict[str, tuple[Callable[..., Receiver], _Spec]] = {
    "webhook": (
        WebhookReceiver,
        {"url": (_STR, True), "secret": (_SECRET, False), "headers": ((Mapping,), False)},
    ),
    "slack": (SlackReceiver, {"url": (_STR, True), "channel": (_STR, False)}),
    "teams": (TeamsReceiver, {"url": (_STR, True)}),
    "email": (
        EmailReceiver,
        {
            "host": (_STR, True),
            "port": ((int,), False),
            "sender": (_STR, True),
            "to": ((str, list, tuple), True),
            "username": (_STR, False),
            "password": (_SECRET, False),
            "starttls": ((bool,), False),
            "ssl_tls": ((bool,), False),
        },
    ),
    "alertmanager": (AlertmanagerReceiver, {"url": (_STR, True)}),
    "log": (LogReceiver, {}),
}


_ALIASES = {"from": "sender", "ssl": "ssl_tls", "timeout": "timeout_s"}


def build_receiver(name: str, kind: str, options: Mapping[str, Any]) -> Receiver:
    """A receiver from configuration.

    ``kind``: webhook, slack, teams, email, alertmanager or log. ``options``: the constructor's
    keyword arguments (plus ``timeout_s`` for all but log; None means unset); secrets may be
    pydantic ``SecretStr``. Raises ReceiverConfigError (a ValueError) naming the receiver and
    the unknown kind, or the missing, unknown or mistyped option.
    """
    if kind not in _KINDS:
        raise ReceiverConfigError(
            f"receiver {name!r}: unknown kind {kind!r}; expected one of: {', '.join(_KINDS)}"
        )
    factory, spec = _KINDS[kind]
    # the rules file's names (docs/alerts.md) for the constructors' keywords
    options = {_ALIASES.get(k, k): v for k, v in options.items()}
    if kind != "log":
        spec = {**spec, "timeout_s": ((int, float), False)}
    where_ = f"receiver {name!r} ({kind})"
    if unknown := sorted(set(options) - set(spec)):
        raise ReceiverConfigError(
            f"{where_}: unknown option(s) {', '.join(unknown)}; "
            f"expected: {', '.join(sorted(spec)) or 'none'}"
        )
    kwargs: dict[str, Any] = {}
    for option, (types, required) in spec.items():
        value = options.get(option)
        if value is None:
            if required:
                raise ReceiverConfigError(f"{where_}: missing required option {option!r}")
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join(t.__name__ for t in types)
            raise ReceiverConfigError(
                f"{where_}: option {option!r} must be {expected}, got {value!r}"
            )
        kwargs[option] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return factory(name, **kwargs)
