"""Postmark's webhooks at `POST /feedback/postmark`.

Postmark signs nothing: a webhook is authenticated by the HTTP Basic credentials set on it
(`https://user:password@…/feedback/postmark`, `JOURNEY_POSTMARK_WEBHOOK_AUTH`). A wrong one is
answered 401, never 403: a 403 stops Postmark's retries for good, so a mistyped password would lose
reports. One POST carries one record, told apart by `RecordType`; the message's
`X-PM-Metadata-journey_send_key` header comes back in `Metadata`.

Sources: postmarkapp.com/developer/webhooks (overview, delivery, bounce, spam complaint, open,
click), and the bounce types of ActiveCampaign/postmark.js.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from typing import Any

from engine.delivery.mime import METADATA_KEY
from engine.feedback.report import BadPayload, Kind, Refused, Report, header, iso_time, text

PROVIDER = "postmark"
HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
SOFT = frozenset({"SoftBounce", "Transient", "DnsError", "Unknown", "Blocked", "SMTPApiError", "DMARCPolicy"})
COMPLAINT = frozenset({"SpamComplaint", "SpamNotification"})
#: bounce records that are not about the message's delivery (auto-replies, subscription mail, …)
IGNORED = frozenset(
    {
        "AutoResponder",
        "AddressChange",
        "Subscribe",
        "Unsubscribe",
        "OpenRelayTest",
        "ChallengeVerification",
        "InboundError",
        "VirusNotification",
        "Unconfirmed",
        "TemplateRenderingFailed",
    }
)


def verify(body: bytes, headers: Mapping[str, str], auth: str) -> dict[str, Any]:
    """The record of a request whose Basic credentials are `auth` (`user:password`)."""
    scheme, _, token = (header(headers, "Authorization") or "").partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Refused("no Basic credentials: set them on the Postmark webhook's URL")
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Refused("the Basic credentials are not base64") from None
    if not hmac.compare_digest(given, auth.encode("utf-8")):
        raise Refused("wrong Basic credentials for the Postmark webhook")
    try:
        record = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("the body is not JSON") from None
    if not isinstance(record, dict):
        raise BadPayload("the body is not a JSON object")
    return record


def report(record: Mapping[str, Any]) -> Report | None:
    """The record as a report; None for the records that are not about a message's fate."""
    kind_name = record.get("RecordType")
    bounce_type = None
    url = None
    if kind_name == "Delivery":
        kind, when, reason = Kind.DELIVERED, record.get("DeliveredAt"), text(record.get("Details"))
    elif kind_name in ("Bounce", "SpamComplaint"):
        name = record.get("Type")
        when = record.get("BouncedAt")
        reason = text(record.get("Details")) or text(record.get("Description")) or text(name)
        if kind_name == "SpamComplaint" or name in COMPLAINT:
            kind = Kind.COMPLAINED
        elif name in IGNORED:
            return None
        else:
            kind = Kind.BOUNCED
            bounce_type = "hard" if name in HARD else "soft"
    elif kind_name == "Open":
        kind, when, reason = Kind.OPENED, record.get("ReceivedAt"), None
    elif kind_name == "Click":
        kind, when, reason = Kind.CLICKED, record.get("ReceivedAt"), None
        url = text(record.get("OriginalLink"), 2000)
    else:  # SubscriptionChange, Inbound, …
        return None
    occurred = iso_time(when)
    if occurred is None:
        raise BadPayload(f"the {kind_name} record has no time")
    recipient = record.get("Email") if kind_name in ("Bounce", "SpamComplaint") else record.get("Recipient")
    message = text(record.get("MessageID"), 100)
    if record.get("ID") is not None:  # bounces and complaints have an id of their own
        event = f"{kind_name}:{record['ID']}"
    else:  # deliveries, opens, clicks have none: the message, the recipient and the time make one
        event = f"{kind_name}:{message}:{recipient}:{when}"
    metadata = record.get("Metadata")
    token = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    return Report(
        provider=PROVIDER,
        kind=kind,
        event_id=event,
        occurred_at=occurred,
        recipient=text(recipient, 320),
        send_token=text(token, 100),
        bounce_type=bounce_type,
        reason=reason,
        url=url,
    )
