"""Mailgun's webhooks (JSON) at `POST /feedback/mailgun`.

Mailgun signs only `timestamp + token` (HMAC-SHA256 with the webhook signing key,
`JOURNEY_MAILGUN_SIGNING_KEY`), not the event: a captured signature would carry any body. So a
token is taken once (the caller stores it in the same transaction as the report: a token seen
twice is refused) and a signature older than `MAX_AGE` is refused, which bounds how long tokens
must be kept. The message's `X-Mailgun-Variables` come back as `user-variables`.

Sources: Mailgun's user manual ("Webhooks", "Securing Webhooks") and Events API ("Event Structure").
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

from engine.delivery.mime import METADATA_KEY
from engine.feedback.report import BadPayload, Kind, Refused, Report, bare_message_id, epoch_time, text

PROVIDER = "mailgun"
#: a signature older than this is refused. Mailgun retries a webhook for about eight hours and
#: does not say whether a retry is signed again; its tokens are kept this long to refuse a replay
MAX_AGE = timedelta(hours=9)


def signature(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode("utf-8"), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()


def verify(body: bytes, key: str, *, now: datetime) -> tuple[str, dict[str, Any]]:
    """(the signature's token, the event data) of a request whose signature checks out and is
    recent. The caller refuses a token it has seen before."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused("the body is not a Mailgun webhook (not JSON)") from None
    sig = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(sig, dict):
        raise Refused("the body has no Mailgun signature")
    stamp, token, given = (sig.get(k) for k in ("timestamp", "token", "signature"))
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        stamp = str(stamp)
    if not (isinstance(stamp, str) and isinstance(token, str) and isinstance(given, str) and token):
        raise Refused("the Mailgun signature lacks its timestamp, token or signature")
    if not hmac.compare_digest(given.lower().encode(), signature(key, stamp, token).encode()):
        raise Refused("the Mailgun signature does not match")
    signed = epoch_time(stamp) if stamp.isdigit() else None
    if signed is None or abs(now - signed) > MAX_AGE:
        raise Refused(f"the Mailgun signature is from {stamp[:20]}, outside the {MAX_AGE} allowed")
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise BadPayload("the webhook has no event-data")
    return token, data


def report(data: dict[str, Any]) -> Report | None:
    """The event as a report; None for events that are not about a message's fate (accepted,
    rejected, unsubscribed, stored, list events). `failed` is a hard bounce when `permanent`, else
    soft (Mailgun's own word for temporary failures)."""
    name = data.get("event")
    found = data.get("delivery-status")
    status: dict[str, Any] = found if isinstance(found, dict) else {}
    bounce_type = None
    reason = None
    url = None
    if name == "delivered":
        kind, reason = Kind.DELIVERED, text(status.get("message")) or text(status.get("description"))
    elif name == "failed":
        kind = Kind.BOUNCED
        bounce_type = "hard" if data.get("severity") == "permanent" else "soft"
        reason = text(status.get("message")) or text(status.get("description")) or text(data.get("reason"))
    elif name == "complained":
        kind = Kind.COMPLAINED
    elif name in ("opened", "clicked"):
        kind = Kind.OPENED if name == "opened" else Kind.CLICKED
        url = text(data.get("url"), 2000) if kind is Kind.CLICKED else None
    else:
        return None
    occurred = epoch_time(data.get("timestamp"))
    if occurred is None:
        raise BadPayload(f"the {name} event has no timestamp")
    message: Any = data.get("message")
    headers: Any = message.get("headers") if isinstance(message, dict) else None
    if not isinstance(headers, dict):
        headers = {}
    variables = data.get("user-variables")
    token = variables.get(METADATA_KEY) if isinstance(variables, dict) else None
    return Report(
        provider=PROVIDER,
        kind=kind,
        # the id is unique within a day only: the event's time makes it unique
        event_id=f"{data.get('id')}@{data.get('timestamp')}",
        occurred_at=occurred,
        recipient=text(data.get("recipient"), 320),
        message_id=bare_message_id(headers.get("message-id")),
        send_token=text(token, 100),
        bounce_type=bounce_type,
        reason=reason,
        url=url,
    )
