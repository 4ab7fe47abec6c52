"""SendGrid's Event Webhook, signed, at `POST /feedback/sendgrid`.

SendGrid signs `timestamp + body` (the raw bytes) with ECDSA P-256 / SHA-256; the signature (base64
DER) and the timestamp come in the `X-Twilio-Email-Event-Webhook-Signature` and `…-Timestamp`
headers, the public key is the one the Event Webhook settings show (base64 DER,
`JOURNEY_SENDGRID_VERIFICATION_KEY`). The body is a JSON list of events; the `unique_args` of the
message (`journey_send_key`) come back as top-level keys of each event.

Sources: "Event Webhook Security Features", "Event Webhook Reference" (SendGrid docs) and
sendgrid-python's `helpers/eventwebhook`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.delivery.mime import METADATA_KEY
from engine.errors import ConfigError
from engine.feedback.report import (
    BadPayload,
    Kind,
    Refused,
    Report,
    bare_message_id,
    epoch_time,
    header,
    text,
)

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
#: a batch signed longer ago than this is refused: SendGrid retries a failed POST for up to a day
#: and does not say whether a retry is signed again; a repeat inside the window is recorded once
MAX_AGE = timedelta(hours=36)


def load_key(value: str) -> ec.EllipticCurvePublicKey:
    """The Event Webhook's verification key (base64 DER of an ECDSA P-256 public key)."""
    try:
        der = base64.b64decode("".join(value.split()), validate=True)
        key = serialization.load_der_public_key(der)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(
            f"JOURNEY_SENDGRID_VERIFICATION_KEY is not a public key in base64 DER ({exc}): copy it "
            "from SendGrid's Event Webhook settings"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("JOURNEY_SENDGRID_VERIFICATION_KEY is not an ECDSA P-256 public key")
    return key


def verify(
    body: bytes, headers: Mapping[str, str], key: ec.EllipticCurvePublicKey, *, now: datetime
) -> list[Any]:
    """The events of a request whose signature checks out and that was signed recently."""
    signature = header(headers, SIGNATURE_HEADER)
    stamp = header(headers, TIMESTAMP_HEADER)
    if not signature or not stamp:
        raise Refused(f"no {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} headers")
    try:
        key.verify(
            base64.b64decode(signature.strip(), validate=True),
            stamp.encode("utf-8") + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise Refused("the SendGrid signature does not match the body") from None
    signed = epoch_time(stamp) if stamp.strip().isdigit() else None
    if signed is None or abs(now - signed) > MAX_AGE:
        raise Refused(f"the SendGrid batch was signed at {stamp[:20]}, outside the {MAX_AGE} allowed")
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("the body is not JSON") from None
    if not isinstance(events, list):
        raise BadPayload("the body is not a JSON list of events")
    return events


def _event_id(event: Mapping[str, Any]) -> str:
    found = text(event.get("sg_event_id"), 200)
    if found:
        return found
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def report(event: Any) -> Report | None:
    """One event as a report; None for the events that are not about a message's fate
    (processed, deferred, dropped, unsubscribes). `bounce` of type `bounce` is hard, of type
    `blocked` (refused for now) soft. BadPayload for an event that cannot be read."""
    if not isinstance(event, dict):
        raise BadPayload("an event is not a JSON object")
    name = event.get("event")
    bounce_type = None
    url = None
    reason = None
    if name == "delivered":
        kind, reason = Kind.DELIVERED, text(event.get("response"))
    elif name == "bounce":
        kind, reason = Kind.BOUNCED, text(event.get("reason"))
        bounce_type = "soft" if event.get("type") == "blocked" else "hard"
    elif name == "spamreport":
        kind = Kind.COMPLAINED
    elif name == "open":
        kind = Kind.OPENED
    elif name == "click":
        kind, url = Kind.CLICKED, text(event.get("url"), 2000)
    else:
        return None
    occurred = epoch_time(event.get("timestamp"))
    if occurred is None:
        raise BadPayload(f"a {name} event has no timestamp")
    return Report(
        provider=PROVIDER,
        kind=kind,
        event_id=_event_id(event),
        occurred_at=occurred,
        recipient=text(event.get("email"), 320),
        message_id=bare_message_id(event.get("smtp-id")),
        send_token=text(event.get(METADATA_KEY), 100),
        bounce_type=bounce_type,
        reason=reason,
        url=url,
    )
