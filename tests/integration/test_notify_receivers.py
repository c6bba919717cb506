"""Receivers against real peers: a local HTTP server, an SMTP server with STARTTLS and AUTH
(aiosmtpd), and a real Prometheus Alertmanager."""

from __future__ import annotations

import email
import email.policy
import logging
import re
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from plantwatch.alert.notify import (
    AlertInstance,
    Delivery,
    DeliveryError,
    DeliveryResult,
    Notification,
    ReceiverConfigError,
    build_receiver,
)
from plantwatch.alert.notify.receivers import (
    ZERO_TIME,
    AlertmanagerReceiver,
    EmailReceiver,
    LogReceiver,
    SlackReceiver,
    TeamsReceiver,
    WebhookReceiver,
    subject,
    verify_signature,
    webhook_payload,
)

from alertmanager_support import Answer, HttpCapture, RunningAlertmanager, free_port

T0 = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
RUNBOOK = "https://wiki.example.com/runbooks/vibration?zone=C&x=1"


def alert(
    *,
    machine: str = "L1-PUMP-01",
    sensor: str = "vib_de",
    status: str = "firing",
    value: float = 7.31,
    rule: str = "vibration_zone",
    severity: str = "critical",
    starts_at_ms: int = T0,
    ends_at_ms: int | None = None,
    alarm_id: str = "ALM-000042",
    summary: str = "vibration 7.31 mm/s in zone C on L1-PUMP-01/vib_de",
    trigger_wall_ms: int | None = None,
) -> AlertInstance:
    return AlertInstance(
        fingerprint=f"fp-{machine}-{sensor}",
        rule=rule,
        status=status,  # type: ignore[arg-type]
        severity=severity,
        labels={"machine_id": machine, "sensor_id": sensor, "line": "L1"},
        annotations={
            "summary": summary,
            "description": "ISO 10816 zone C: restricted operation",
            "runbook_url": RUNBOOK,
        },
        starts_at_ms=starts_at_ms,
        ends_at_ms=ends_at_ms,
        value=value,
        alarm_id=alarm_id,
        trigger_wall_ms=trigger_wall_ms,
    )


def notification(*alerts: AlertInstance, receiver: str = "hook", **kw: Any) -> Notification:
    status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
    return Notification(
        receiver=receiver,
        group_key='{}:{alertname="vibration_zone", machine_id="L1-PUMP-01"}',
        group_labels={"alertname": alerts[0].rule, "machine_id": "L1-PUMP-01"},
        status=status,  # type: ignore[arg-type]
        alerts=alerts,
        common_labels={"machine_id": "L1-PUMP-01", "line": "L1"},
        common_annotations={"runbook_url": RUNBOOK},
        external_url="http://plantwatch.local:8080",
        **kw,
    )


FIRING = notification(alert(), alert(sensor="vib_nde", value=6.5, alarm_id="ALM-000043"))
RESOLVED = notification(
    alert(status="resolved", ends_at_ms=T0 + 90_500),
    alert(sensor="vib_nde", status="resolved", ends_at_ms=T0 + 91_000, alarm_id="ALM-000043"),
    reason="resolved",
)


def _eventually(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def http() -> Iterator[HttpCapture]:
    with HttpCapture() as server:
        yield server


# --- webhook ------------------------------------------------------------------------------------


def test_webhook_posts_the_alertmanager_shaped_json_firing_then_resolved(http: HttpCapture) -> None:
    hook = WebhookReceiver("hook", f"{http.url}/hooks/plantwatch", headers={"X-Team": "line-1"})
    hook.send(FIRING)
    hook.send(RESOLVED)

    first, second = http.requests
    assert first.path == "/hooks/plantwatch"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-team"] == "line-1"
    assert "x-plantwatch-signature" not in first.headers
    body = first.json()
    assert body == {
        "version": "4",
        "receiver": "hook",
        "status": "firing",
        "groupKey": FIRING.group_key,
        "groupLabels": {"alertname": "vibration_zone", "machine_id": "L1-PUMP-01"},
        "commonLabels": {"machine_id": "L1-PUMP-01", "line": "L1"},
        "commonAnnotations": {"runbook_url": RUNBOOK},
        "externalURL": "http://plantwatch.local:8080",
        "reason": "new",
        "escalationStep": 0,
        "alerts": body["alerts"],
    }
    a = body["alerts"][0]
    assert a == {
        "status": "firing",
        "labels": {"machine_id": "L1-PUMP-01", "sensor_id": "vib_de", "line": "L1"},
        "annotations": dict(FIRING.alerts[0].annotations),
        "startsAt": "2026-01-01T00:00:00.123Z",
        "endsAt": ZERO_TIME,
        "fingerprint": "fp-L1-PUMP-01-vib_de",
        "alarmId": "ALM-000042",
        "acknowledged": False,
        "value": 7.31,
        "severity": "critical",
        "rule": "vibration_zone",
    }
    assert [x["labels"]["sensor_id"] for x in body["alerts"]] == ["vib_de", "vib_nde"]

    resolved = second.json()
    assert resolved["status"] == "resolved"
    assert resolved["reason"] == "resolved"
    assert [x["status"] for x in resolved["alerts"]] == ["resolved", "resolved"]
    assert [x["endsAt"] for x in resolved["alerts"]] == [
        "2026-01-01T00:01:30.623Z",
        "2026-01-01T00:01:31.123Z",
    ]
    assert resolved["alerts"][0]["startsAt"] == a["startsAt"]


def test_webhook_value_that_is_not_finite_is_null() -> None:
    payload = webhook_payload(notification(alert(value=float("nan")), alert(value=float("inf"))))
    assert [a["value"] for a in payload["alerts"]] == [None, None]


def test_webhook_hmac_signature_verifies_and_catches_tampering(http: HttpCapture) -> None:
    WebhookReceiver("hook", http.url, secret="s3cret-key").send(FIRING)
    req = http.wait_for()
    ts, sig = req.headers["x-plantwatch-timestamp"], req.headers["x-plantwatch-signature"]
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert abs(int(ts) - time.time()) < 5

    assert verify_signature("s3cret-key", ts, req.body, sig)
    assert not verify_signature("wrong-key", ts, req.body, sig)
    assert not verify_signature("s3cret-key", ts, req.body.replace(b"7.31", b"1.31"), sig)
    assert not verify_signature("s3cret-key", str(int(ts) + 1), req.body, sig)  # other time
    assert not verify_signature("s3cret-key", ts, req.body, sig, now_s=int(ts) + 301)  # replay
    assert verify_signature("s3cret-key", ts, req.body, sig, now_s=int(ts) + 299)
    assert not verify_signature("s3cret-key", "not-a-number", req.body, sig)


# --- Slack and Teams ----------------------------------------------------------------------------


def test_slack_payload_has_fallback_text_header_and_a_section_per_alert(http: HttpCapture) -> None:
    tricky = alert(sensor="temp", summary="bearing <hot> & rising", alarm_id="ALM-7")
    SlackReceiver("slack", f"{http.url}/services/T0/B0/XYZ", channel="#line-1").send(
        notification(alert(), tricky)
    )
    body = http.wait_for().json()
    assert body["text"] == "[FIRING:2] critical vibration_zone L1-PUMP-01"
    assert body["channel"] == "#line-1"
    header, first, second = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": body["text"]}}
    assert first["type"] == "section" and first["text"]["type"] == "mrkdwn"
    text = first["text"]["text"]
    for expected in ("CRITICAL", "L1-PUMP-01/vib_de", "7.31", "ALM-000042", "open the runbook"):
        assert expected in text
    assert f"<{RUNBOOK.replace('&', '&amp;')}|open the runbook>" in text
    assert "bearing &lt;hot&gt; &amp; rising" in second["text"]["text"]  # Slack escaping


def test_teams_posts_an_adaptive_card_and_accepts_202(http: HttpCapture) -> None:
    http.default = Answer(202, b"")
    TeamsReceiver("teams", f"{http.url}/workflows/abc").send(FIRING)
    body = http.wait_for().json()
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    title, *fact_sets = card["body"]
    assert title["type"] == "TextBlock" and title["text"] == subject(FIRING)
    assert [f["type"] for f in fact_sets] == ["FactSet", "FactSet"]
    facts = {f["title"]: f["value"] for f in fact_sets[1]["facts"]}
    assert facts["Machine/sensor"] == "L1-PUMP-01/vib_nde"
    assert facts["Value"] == "6.5"
    assert facts["Alarm ID"] == "ALM-000043"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Runbook", "url": RUNBOOK}]


# --- HTTP failures ------------------------------------------------------------------------------


def test_non_2xx_raises_delivery_error_naming_receiver_host_and_problem(http: HttpCapture) -> None:
    http.script(Answer(404, b"no_service"), Answer(503, b"busy"))
    hook = WebhookReceiver("ops-hook", f"{http.url}/hook")
    with pytest.raises(DeliveryError) as info:
        hook.send(FIRING)
    err = info.value
    assert (err.status, err.retryable) == (404, False)
    assert str(err) == f"receiver 'ops-hook' ({http.url}/hook): HTTP 404 Not Found: no_service"
    with pytest.raises(DeliveryError, match="HTTP 503") as info:
        hook.send(FIRING)
    assert info.value.retryable


def test_slack_and_teams_errors_never_show_the_secret_url_path(http: HttpCapture) -> None:
    http.default = Answer(400, b"invalid_payload")
    for receiver in (
        SlackReceiver("slack", f"{http.url}/services/T0/B0/SECRETTOKEN"),
        TeamsReceiver("teams", f"{http.url}/workflows/SECRETTOKEN?sig=SECRET"),
    ):
        with pytest.raises(DeliveryError) as info:
            receiver.send(FIRING)
        assert "SECRET" not in str(info.value)
        assert f"{http.url}/…" in str(info.value) and "invalid_payload" in str(info.value)


def test_redirects_are_errors_not_followed(http: HttpCapture) -> None:
    http.script(Answer(302, b"", headers=(("Location", f"{http.url}/elsewhere"),)))
    with pytest.raises(DeliveryError, match=r"HTTP 302.*redirects are not followed"):
        WebhookReceiver("hook", f"{http.url}/hook").send(FIRING)
    assert [r.path for r in http.requests] == ["/hook"]


def test_timeout_and_refused_connection_raise_delivery_error() -> None:
    with HttpCapture(Answer(hang_s=30)) as hung:
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"'slow'.*timed out after 0\.5 s"):
            WebhookReceiver("slow", hung.url, timeout_s=0.5).send(FIRING)
        assert time.monotonic() - started < 2
    port = free_port()  # nothing listens there
    with pytest.raises(DeliveryError, match=rf"127\.0\.0\.1:{port}.*connection refused"):
        AlertmanagerReceiver("am", f"http://127.0.0.1:{port}").send(FIRING)


# --- delivery through real HTTP -----------------------------------------------------------------


def test_delivery_retries_after_two_500s_then_succeeds(http: HttpCapture) -> None:
    http.script(Answer(500, b"oops"), Answer(500, b"oops"))
    results: list[DeliveryResult] = []
    with Delivery(
        [WebhookReceiver("hook", http.url)], backoff_s=0.01, on_result=results.append
    ) as delivery:
        assert delivery.submit(FIRING)
        assert delivery.wait_idle(5)
        stats = delivery.stats()["hook"]
    (result,) = results
    assert (result.ok, result.attempts, result.error) == (True, 3, "")
    assert (stats.sent, stats.failed, stats.retries, stats.pending) == (1, 0, 2, 0)
    assert len({r.body for r in http.requests}) == 1 and len(http.requests) == 3


def test_a_hanging_receiver_neither_blocks_submit_nor_delays_the_others() -> None:
    with HttpCapture(Answer(hang_s=30)) as hung, HttpCapture() as fast:
        delivery = Delivery(
            [
                WebhookReceiver("hung", hung.url, timeout_s=1.0),
                WebhookReceiver("fast", fast.url, timeout_s=1.0),
            ],
            max_attempts=1,
        )
        try:
            started = time.monotonic()
            for _ in range(3):
                assert delivery.submit(notification(alert(), receiver="hung"))
            hung.wait_for(timeout=2)  # the first one is being sent, and hangs
            assert delivery.submit(notification(alert(), receiver="fast"))
            assert time.monotonic() - started < 0.5
            arrived = fast.wait_for(timeout=2)
            assert arrived.at - started < 2
            assert arrived.json()["receiver"] == "fast"
            assert delivery.stats()["hung"].pending == 3  # still stuck in its own lane
            assert _eventually(lambda: delivery.stats()["fast"].sent == 1, 1)
        finally:
            delivery.close(timeout_s=0.1)
        assert delivery.stats()["hung"].dropped == 2  # abandoned at close: logged, counted


# --- e-mail -------------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler keeping what it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        content = envelope.original_content or envelope.content
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), content, session.authenticated)
        )
        return "250 2.0.0 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"plant", b"pa55")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends 235 / 535


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def client_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[0]))


@pytest.fixture
def smtp_tls(tls_files: tuple[Path, Path]) -> Iterator[tuple[Inbox, int]]:
    """SMTP on 127.0.0.1 that requires STARTTLS and AUTH (plant / pa55)."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(*tls_files)
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=_authenticator,
    )
    controller.start()
    yield inbox, port
    controller.stop()


def email_receiver(port: int, context: ssl.SSLContext, password: str = "pa55") -> EmailReceiver:
    return EmailReceiver(
        "mail",
        host="127.0.0.1",
        port=port,
        sender="Plantwatch <plantwatch@plant.example>",
        to=["oncall@plant.example", "lead@plant.example"],
        username="plant",
        password=password,
        ssl_context=context,
        timeout_s=5,
    )


def test_email_over_starttls_with_login(
    smtp_tls: tuple[Inbox, int], client_tls: ssl.SSLContext
) -> None:
    inbox, port = smtp_tls
    email_receiver(port, client_tls).send(FIRING)

    ((mail_from, rcpt_tos, raw, authenticated),) = inbox.messages
    assert authenticated
    assert mail_from == "plantwatch@plant.example"
    assert rcpt_tos == ["oncall@plant.example", "lead@plant.example"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Subject"] == "[FIRING:2] critical vibration_zone L1-PUMP-01"
    assert msg["From"] == "Plantwatch <plantwatch@plant.example>"
    assert msg["To"] == "oncall@plant.example, lead@plant.example"
    assert msg["X-Plantwatch-Group-Key"] == FIRING.group_key
    assert msg["X-Plantwatch-Status"] == "firing"
    assert msg["Message-ID"].endswith("@plant.example>") and msg["Date"]
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    plain = text.get_content()
    for expected in (
        "L1-PUMP-01/vib_de",
        "L1-PUMP-01/vib_nde",
        "7.31",
        "6.5",
        RUNBOOK,
        "ALM-000043",
    ):
        assert expected in plain
    assert "zone C: restricted operation" in plain and "line=L1" in plain
    assert "<a href='https://wiki.example.com/runbooks/vibration?zone=C&amp;x=1'>" in (
        html.get_content()
    )


def test_email_resolved_subject(smtp_tls: tuple[Inbox, int], client_tls: ssl.SSLContext) -> None:
    inbox, port = smtp_tls
    email_receiver(port, client_tls).send(RESOLVED)
    msg = email.message_from_bytes(inbox.messages[0][2], policy=email.policy.default)
    assert msg["Subject"] == "[RESOLVED] critical vibration_zone L1-PUMP-01"
    assert msg["X-Plantwatch-Status"] == "resolved"


def test_email_wrong_password_is_a_permanent_delivery_error(
    smtp_tls: tuple[Inbox, int], client_tls: ssl.SSLContext
) -> None:
    inbox, port = smtp_tls
    with pytest.raises(DeliveryError, match=r"'mail'.*127\.0\.0\.1.*login as 'plant' refused: 535"):
        email_receiver(port, client_tls, password="wrong").send(FIRING)
    assert inbox.messages == []


def test_email_untrusted_certificate_is_refused(smtp_tls: tuple[Inbox, int]) -> None:
    _, port = smtp_tls
    with pytest.raises(DeliveryError, match="certificate"):
        email_receiver(port, ssl.create_default_context()).send(FIRING)  # system CAs only


def test_email_server_without_starttls_fails_before_any_credentials(
    client_tls: ssl.SSLContext,
) -> None:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with pytest.raises(DeliveryError, match="does not offer STARTTLS") as info:
            email_receiver(port, client_tls).send(FIRING)
    finally:
        controller.stop()
    assert not info.value.retryable
    assert inbox.messages == []


def test_email_refuses_credentials_without_tls() -> None:
    with pytest.raises(ReceiverConfigError, match="unencrypted"):
        EmailReceiver(
            "mail", host="h", sender="a@b", to=["c@d"], username="u", password="p", starttls=False
        )


# --- Alertmanager -------------------------------------------------------------------------------


def _ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def test_alertmanager_receives_firing_then_resolved(alertmanager: RunningAlertmanager) -> None:
    machine = f"T-{uuid.uuid4().hex[:10]}"
    now = int(time.time() * 1000)
    start = now - 60_000 - (now % 1000) + 123
    firing = notification(alert(machine=machine, starts_at_ms=start), receiver="am")
    am = AlertmanagerReceiver("am", alertmanager.url + "/", timeout_s=5)

    def ours(status: str) -> Any:
        return lambda p: (
            p["status"] == status
            and any(a["labels"].get("machine_id") == machine for a in p["alerts"])
        )

    am.send(firing)
    got = alertmanager.wait_for(ours("firing"), timeout=10)
    (a,) = got["alerts"]
    assert a["status"] == "firing"
    assert a["labels"] == {
        "alertname": "vibration_zone",
        "severity": "critical",
        "machine_id": machine,
        "sensor_id": "vib_de",
        "line": "L1",
        "plantwatch_alarm_id": "ALM-000042",
    }
    assert a["annotations"]["runbook_url"] == RUNBOOK
    assert _ms(a["startsAt"]) == start
    assert a["generatorURL"] == "http://plantwatch.local:8080"

    end = now + 456
    resolved = notification(
        alert(machine=machine, status="resolved", starts_at_ms=start, ends_at_ms=end),
        receiver="am",
    )
    am.send(resolved)
    got = alertmanager.wait_for(ours("resolved"), timeout=10)
    (a,) = got["alerts"]
    assert a["status"] == "resolved"
    assert _ms(a["endsAt"]) == end


def test_alertmanager_rejection_is_a_permanent_delivery_error(
    alertmanager: RunningAlertmanager,
) -> None:
    bad = AlertInstance(
        fingerprint="x",
        rule="bad rule name is fine, label name is not",
        status="firing",
        severity="info",
        labels={"not-a-label-name": "x"},
        annotations={},
        starts_at_ms=T0,
        ends_at_ms=None,
        value=1.0,
    )
    with pytest.raises(DeliveryError, match="HTTP 400") as info:
        AlertmanagerReceiver("am", alertmanager.url).send(notification(bad, receiver="am"))
    assert not info.value.retryable


# --- log receiver and configuration -------------------------------------------------------------


def test_log_receiver_writes_one_line_per_alert(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="plantwatch.notify"):
        LogReceiver("log").send(FIRING)
        LogReceiver("log").send(RESOLVED)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "plantwatch.notify"]
    assert len(lines) == 4
    assert lines[0][0] == logging.WARNING and lines[2][0] == logging.INFO
    assert lines[0][1].startswith("FIRING critical vibration_zone L1-PUMP-01/vib_de value=7.31")
    assert "alarm=ALM-000042" in lines[0][1]
    assert lines[3][1].startswith("RESOLVED critical vibration_zone L1-PUMP-01/vib_nde")


def test_build_receiver_from_config(http: HttpCapture) -> None:
    hook = build_receiver("ops", "webhook", {"url": http.url, "secret": "k", "timeout_s": 2})
    assert isinstance(hook, WebhookReceiver) and hook.name == "ops" and hook.timeout_s == 2
    hook.send(FIRING)
    assert "x-plantwatch-signature" in http.wait_for().headers
    mail = build_receiver("m", "email", {"host": "smtp", "sender": "a@b", "to": "c@d"})
    assert isinstance(mail, EmailReceiver) and mail.to == ("c@d",) and mail.port == 587
    assert isinstance(build_receiver("log", "log", {}), LogReceiver)
    assert isinstance(
        build_receiver("s", "slack", {"url": "https://h/x", "channel": None}), SlackReceiver
    )


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("pagerduty", {}, "receiver 'r': unknown kind 'pagerduty'; expected one of: webhook,"),
        ("webhook", {}, "receiver 'r' (webhook): missing required option 'url'"),
        ("webhook", {"url": "http://h", "urll": 1}, "unknown option(s) urll; expected: headers,"),
        ("email", {"host": "h", "sender": "a@b", "to": "c@d", "port": "25"}, "'port' must be int"),
        ("teams", {"url": "http://h", "timeout_s": True}, "'timeout_s' must be int or float"),
        ("slack", {"url": "ftp://h/x"}, "receiver 'r': url must look like http(s)://host/…"),
        ("webhook", {"url": "http://h", "timeout_s": 0}, "timeout_s must be > 0"),
    ],
)
def test_build_receiver_rejects_bad_config(
    kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        build_receiver("r", kind, options)
    assert isinstance(info.value, ReceiverConfigError)
