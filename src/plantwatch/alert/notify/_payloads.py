"""What each receiver sends, as pure functions of a Notification (no I/O).

Public names are re-exported by :mod:`plantwatch.alert.notify.receivers`.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as _default_policy
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

from plantwatch.alert.notify.model import AlertInstance, Notification

#: Alertmanager's endsAt of an alert that is not resolved
ZERO_TIME = "0001-01-01T00:00:00Z"
#: most severe first
SEVERITIES = ("critical", "major", "minor", "warning", "info")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_SLACK_MAX_ALERTS = 45  # Slack allows 50 blocks per message
_TEAMS_MAX_ALERTS = 20  # a Teams card must stay under ~28 KB
#: RFC 5322's line limit: headers are not folded, so parsers do not see a leading space
_EMAIL_POLICY = _default_policy.clone(max_line_length=998)


def rfc3339(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds: ``2026-01-02T03:04:05.678Z``."""
    seconds, milli = divmod(ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{milli:03d}Z"


def subject(n: Notification) -> str:
    """One line: ``[FIRING:2] critical vibration_zone L1-PUMP-01`` or ``[RESOLVED] …``.

    The worst severity, the rule (or how many rules) and the machine (or the group labels'
    values), of the firing alerts — of all alerts once resolved.
    """
    firing = [a for a in n.alerts if a.status == "firing"]
    head = f"[FIRING:{len(firing)}]" if n.status == "firing" else "[RESOLVED]"
    alerts = firing or n.alerts
    severity = min((a.severity for a in alerts), key=lambda s: _RANK.get(s, 99), default="")
    rules = sorted({a.rule for a in alerts})
    machines = {a.labels.get("machine_id", "") for a in alerts}
    what = rules[0] if len(rules) == 1 else f"{len(rules)} rules" if rules else ""
    where = machines.pop() if len(machines) == 1 else ""
    where = where or " ".join(n.group_labels.values())
    return " ".join(p for p in (head, severity, what, where) if p)


def where(a: AlertInstance) -> str:
    """``machine/sensor`` from the labels (``-`` if neither is set)."""
    parts = (a.labels.get("machine_id", ""), a.labels.get("sensor_id", ""))
    return "/".join(p for p in parts if p) or "-"


def _fields(a: AlertInstance) -> list[tuple[str, str]]:
    """An alert as (title, text) rows, empty ones left out: the e-mail and Teams use these."""
    ann = a.annotations
    rows = [
        ("Status", f"{a.status} ({a.severity})"),
        ("Rule", a.rule),
        ("Machine/sensor", where(a)),
        ("Value", f"{a.value:.6g}"),
        ("Summary", ann.get("summary", "")),
        ("Description", ann.get("description", "")),
        ("Runbook", ann.get("runbook_url", "")),
        ("Alarm ID", a.alarm_id),
        ("Acknowledged", "yes" if a.acknowledged else ""),
        ("Started", rfc3339(a.starts_at_ms)),
        ("Ended", rfc3339(a.ends_at_ms) if a.ends_at_ms is not None else ""),
        ("Labels", ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()))),
    ]
    return [(k, v) for k, v in rows if v]


def webhook_payload(n: Notification) -> dict[str, Any]:
    """The webhook JSON: Alertmanager's version 4 shape plus plantwatch fields.

    Top level: ``version`` ("4"), ``receiver``, ``status``, ``groupKey``, ``groupLabels``,
    ``commonLabels``, ``commonAnnotations``, ``externalURL``, ``reason``, ``escalationStep``,
    ``alerts``. Each alert: ``status``, ``labels``, ``annotations``, ``startsAt``, ``endsAt``
    (RFC 3339 UTC with ms; ``0001-01-01T00:00:00Z`` while not resolved), ``fingerprint``,
    ``alarmId``, ``acknowledged``, ``value`` (null if not finite), ``severity``, ``rule``.
    """
    return {
        "version": "4",
        "receiver": n.receiver,
        "status": n.status,
        "groupKey": n.group_key,
        "groupLabels": dict(n.group_labels),
        "commonLabels": dict(n.common_labels),
        "commonAnnotations": dict(n.common_annotations),
        "externalURL": n.external_url,
        "reason": n.reason,
        "escalationStep": n.escalation_step,
        "alerts": [
            {
                "status": a.status,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": rfc3339(a.starts_at_ms),
                "endsAt": rfc3339(a.ends_at_ms) if a.ends_at_ms is not None else ZERO_TIME,
                "fingerprint": a.fingerprint,
                "alarmId": a.alarm_id,
                "acknowledged": a.acknowledged,
                "value": a.value if math.isfinite(a.value) else None,  # JSON has no NaN
                "severity": a.severity,
                "rule": a.rule,
            }
            for a in n.alerts
        ],
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_alert(a: AlertInstance) -> str:
    e = _slack_escape
    lines = [
        f"*{e(a.severity.upper())}* · {a.status} · `{e(a.rule)}`",
        f"*Machine/sensor:* {e(where(a))}",
        f"*Value:* {a.value:.6g}",
    ]
    if summary := a.annotations.get("summary"):
        lines.append(f"*Summary:* {e(summary)}")
    if runbook := a.annotations.get("runbook_url"):
        lines.append(f"*Runbook:* <{e(runbook)}|open the runbook>")
    if a.alarm_id:
        lines.append(f"*Alarm ID:* {e(a.alarm_id)}")
    return "\n".join(lines)[:3000]  # Slack's limit for a section's text


def slack_payload(n: Notification, channel: str | None = None) -> dict[str, Any]:
    """A Slack incoming-webhook message: fallback ``text``, a header block, a section per
    alert (at most 45, then a "… and N more" line), and ``channel`` when given."""
    title = subject(n)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}}
    ]
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_alert(a)}}
        for a in n.alerts[:_SLACK_MAX_ALERTS]
    ]
    if (more := len(n.alerts) - _SLACK_MAX_ALERTS) > 0:
        text = f"… and {more} more alert(s)"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
    payload: dict[str, Any] = {"text": title, "blocks": blocks}
    if channel:
        payload["channel"] = channel
    return payload


def teams_payload(n: Notification) -> dict[str, Any]:
    """A Teams message with an Adaptive Card 1.4: a title TextBlock, a FactSet per alert (at
    most 20) and an Action.OpenUrl per distinct runbook."""
    shown = n.alerts[:_TEAMS_MAX_ALERTS]
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": subject(n),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "color": "Attention" if n.status == "firing" else "Good",
        }
    ]
    for a in shown:
        facts = [{"title": k, "value": v} for k, v in _fields(a) if k != "Labels"]
        body.append({"type": "FactSet", "facts": facts, "separator": True})
    if (more := len(n.alerts) - len(shown)) > 0:
        body.append({"type": "TextBlock", "text": f"… and {more} more alert(s)", "wrap": True})
    runbooks = dict.fromkeys(a.annotations.get("runbook_url", "") for a in shown)
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [
            {"type": "Action.OpenUrl", "title": "Runbook", "url": u} for u in runbooks if u
        ],
    }
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": card,
    }
    return {"type": "message", "attachments": [attachment]}


def alertmanager_payload(n: Notification, *, now_ms: int | None = None) -> list[dict[str, Any]]:
    """The alerts for Alertmanager's ``POST /api/v2/alerts``.

    Labels gain ``alertname`` (the rule), ``severity`` and ``plantwatch_alarm_id`` (when set).
    Resolved alerts carry ``endsAt``; firing ones none, so Alertmanager resolves them itself
    after its ``resolve_timeout`` unless they are sent again: repeat more often than that.
    """
    out = []
    for a in n.alerts:
        labels = {**a.labels, "alertname": a.rule, "severity": a.severity}
        if a.alarm_id:
            labels["plantwatch_alarm_id"] = a.alarm_id
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": dict(a.annotations),
            "startsAt": rfc3339(a.starts_at_ms),
        }
        if a.status == "resolved":
            ends = a.ends_at_ms
            if ends is None:
                ends = int(time.time() * 1000) if now_ms is None else now_ms
            alert["endsAt"] = rfc3339(max(ends, a.starts_at_ms))
        if n.external_url:
            alert["generatorURL"] = n.external_url
        out.append(alert)
    return out


def _header(value: str) -> str:
    return " ".join(value.split())  # no CR/LF: header injection, and EmailMessage refuses them


def email_message(n: Notification, *, sender: str, to: Sequence[str]) -> EmailMessage:
    """A multipart/alternative e-mail: Subject :func:`subject`, From, To, Date, Message-ID,
    ``X-Plantwatch-Group-Key`` and ``X-Plantwatch-Status``; a plain-text body and an HTML
    one listing every alert's labels, value, summary, description, runbook and alarm ID."""
    title = subject(n)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "plantwatch.invalid"
    msg = EmailMessage(policy=_EMAIL_POLICY)
    msg["Subject"] = _header(title)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=domain)  # a domain: no per-message DNS lookup
    msg["X-Plantwatch-Group-Key"] = _header(n.group_key)
    msg["X-Plantwatch-Status"] = n.status
    context = [f"Reason: {n.reason}"]
    if n.escalation_step:
        context.append(f"escalation step {n.escalation_step}")
    if n.group_labels:
        context.append("group " + ", ".join(f"{k}={v}" for k, v in n.group_labels.items()))
    text = [title, "", "; ".join(context)]
    if n.external_url:
        text.append(n.external_url)
    page = [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape('; '.join(context))}</p>"]
    for i, a in enumerate(n.alerts, 1):
        rows = _fields(a)
        text += ["", f"{i}. {a.status.upper()} {a.severity} {a.rule} on {where(a)}"]
        text += [f"   {k}: {v}" for k, v in rows]
        cells = "".join(
            f"<tr><th align='left'>{html.escape(k)}</th><td>{_html_value(k, v)}</td></tr>"
            for k, v in rows
        )
        heading = f"{a.status.upper()} {a.severity} {a.rule} on {where(a)}"
        page.append(f"<h3>{html.escape(heading)}</h3><table>{cells}</table>")
    if n.external_url:
        url = html.escape(n.external_url, quote=True)
        page.append(f"<p><a href='{url}'>{html.escape(n.external_url)}</a></p>")
    msg.set_content("\n".join(text) + "\n")
    msg.add_alternative(
        f"<html><body style='font-family:sans-serif'>{''.join(page)}</body></html>\n",
        subtype="html",
    )
    return msg


def _html_value(title: str, value: str) -> str:
    if title == "Runbook" and value.startswith(("https://", "http://")):
        return f"<a href='{html.escape(value, quote=True)}'>{html.escape(value)}</a>"
    return html.escape(value)
