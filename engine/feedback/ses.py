"""Amazon SES reports, delivered by Amazon SNS to `POST /feedback/ses`.

SNS signs each message (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) with the key of a
certificate it publishes at `SigningCertURL`. That URL is fetched only when it is `https` on an
`sns.<region>.amazonaws.com` host and names a `.pem` (the rule of AWS's own validators), and the
certificate is cached by URL. A SubscriptionConfirmation is verified the same way, then confirmed
by a GET of its SubscribeURL (under the same host rule). Inside a Notification, the SES document
(`notificationType` or, with event publishing, `eventType`) becomes reports.

Sources: "Verifying the signatures of Amazon SNS messages" and "Parsing message formats" (SNS
Developer Guide); "Contents of notifications" and "Event publishing" (SES Developer Guide).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from engine.delivery.mime import METADATA_KEY
from engine.feedback.report import BadPayload, Kind, Refused, Report, bare_message_id, header, iso_time, text

PROVIDER = "ses"
#: the SNS endpoints' hosts, in every partition (as aws-js-sns-message-validator has it)
SNS_HOST = re.compile(r"^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$")
#: the fields each message type signs, in the order AWS documents
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
HASHES: dict[str, type[hashes.SHA1] | type[hashes.SHA256]] = {"1": hashes.SHA1, "2": hashes.SHA256}
#: a message older than this is refused: SNS retries a delivery for at most an hour, each retry
#: with the message's first Timestamp; a repeat inside the window is recorded once anyway
MAX_AGE = timedelta(hours=24)
#: the most certificates kept (SNS rotates its signing certificate now and then)
CACHE_SIZE = 16

#: fetches a URL and returns its body (raises on any failure); tests pass their own
Get = Callable[[str], bytes]


def https_get(url: str) -> bytes:
    """GET an SNS URL over verified TLS (no redirects, ten seconds, at most 64 KiB)."""
    import httpx

    with httpx.stream("GET", url, timeout=10.0, follow_redirects=False) as response:
        response.raise_for_status()
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > 65536:
                raise ValueError(f"{url} answered more than 64 KiB")
        return body


def string_to_sign(envelope: Mapping[str, Any]) -> bytes:
    """`name\\nvalue\\n` for each signed field; Subject only when a Notification has one."""
    kind = envelope.get("Type")
    keys = NOTIFICATION_KEYS if kind == "Notification" else CONFIRMATION_KEYS
    out = []
    for key in keys:
        value = envelope.get(key)
        if value is None and key == "Subject":
            continue
        if not isinstance(value, str):
            raise Refused(f"the SNS message has no {key}")
        out.append(f"{key}\n{value}\n")
    return "".join(out).encode("utf-8")


def check_sns_url(url: Any, what: str, *, pem: bool) -> str:
    """`url` when it is plain https on an SNS host (and names a .pem, for a certificate)."""
    if not isinstance(url, str):
        raise Refused(f"the SNS message has no {what}")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "https" or parts.username or parts.password or port not in (None, 443):
        raise Refused(f"{what} is not a plain https URL: {url[:200]}")
    if not parts.hostname or not SNS_HOST.match(parts.hostname):
        raise Refused(f"{what} is not on an sns.<region>.amazonaws.com host: {url[:200]}")
    if pem and not parts.path.endswith(".pem"):
        raise Refused(f"{what} does not name a .pem certificate: {url[:200]}")
    return url


class Certificates:
    """SNS signing certificates by URL, fetched with `get` once and kept (a few at most)."""

    def __init__(self, get: Get) -> None:
        self.get = get
        self._cache: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def __call__(self, url: str) -> x509.Certificate:
        cert = self._cache.get(url)
        if cert is not None:
            return cert
        try:
            cert = x509.load_pem_x509_certificate(self.get(url))
        except Exception as exc:  # any failure to fetch or read it: the message cannot be trusted
            raise Refused(f"cannot load the SNS signing certificate {url[:200]}: {exc}"[:400]) from None
        with self._lock:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[url] = cert
        return cert


def verify(
    body: bytes,
    headers: Mapping[str, str],
    certificates: Callable[[str], x509.Certificate],
    *,
    now: datetime,
    topics: Iterable[str] = (),
) -> dict[str, Any]:
    """The SNS message of a request, once its signature, certificate, topic and age check out;
    Refused otherwise (nothing is fetched from a URL that breaks the host rule)."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused("the body is not an SNS message (not JSON)") from None
    if not isinstance(envelope, dict) or envelope.get("Type") not in TYPES:
        raise Refused("the body is not an SNS message (no known Type)")
    for name, key in (("x-amz-sns-message-type", "Type"), ("x-amz-sns-message-id", "MessageId")):
        given = header(headers, name)
        if given is not None and given != envelope.get(key):
            raise Refused(f"the {name} header does not match the message's {key}")
    allowed = set(topics)
    if allowed and envelope.get("TopicArn") not in allowed:
        raise Refused(
            f"the topic {str(envelope.get('TopicArn'))[:200]} is not in JOURNEY_SES_TOPIC_ARNS", 403
        )
    algorithm = HASHES.get(str(envelope.get("SignatureVersion")))
    if algorithm is None:
        raise Refused(f"unknown SignatureVersion {str(envelope.get('SignatureVersion'))[:20]!r}")
    signed = string_to_sign(envelope)
    cert = certificates(check_sns_url(envelope.get("SigningCertURL"), "SigningCertURL", pem=True))
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise Refused("the SNS signing certificate is not valid now")
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise Refused("the SNS signing certificate holds no RSA key")
    try:
        signature = base64.b64decode(str(envelope.get("Signature", "")), validate=True)
        public_key.verify(signature, signed, padding.PKCS1v15(), algorithm())
    except (InvalidSignature, binascii.Error, ValueError):
        raise Refused("the SNS signature does not match the message") from None
    sent = iso_time(envelope.get("Timestamp"))
    if sent is None or abs(now - sent) > MAX_AGE:
        raise Refused(f"the SNS message is from {envelope.get('Timestamp')}, outside the {MAX_AGE} allowed")
    return envelope


def confirm(envelope: Mapping[str, Any], get: Get) -> None:
    """Confirm a verified SubscriptionConfirmation: GET its SubscribeURL (an SNS host only)."""
    url = check_sns_url(envelope.get("SubscribeURL"), "SubscribeURL", pem=False)
    get(url)


def _headers(mail: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        (h["name"], h["value"])
        for h in mail.get("headers") or []
        if isinstance(h, dict) and isinstance(h.get("name"), str) and isinstance(h.get("value"), str)
    ]


def _message_id(mail: Mapping[str, Any]) -> str | None:
    common = mail.get("commonHeaders")
    found = bare_message_id(common.get("messageId")) if isinstance(common, dict) else None
    if found:
        return found
    return next((bare_message_id(v) for n, v in _headers(mail) if n.lower() == "message-id"), None)


def _send_token(mail: Mapping[str, Any]) -> str | None:
    """The `journey_send_key` message tag: in `mail.tags` (event publishing), else in the
    X-SES-MESSAGE-TAGS header when the original headers are included."""
    tags = mail.get("tags")
    if isinstance(tags, dict):
        values = tags.get(METADATA_KEY)
        if isinstance(values, list) and values and isinstance(values[0], str):
            return values[0]
    for name, value in _headers(mail):
        if name.lower() == "x-ses-message-tags":
            for part in value.split(","):
                tag, sep, tag_value = part.strip().partition("=")
                if sep and tag.strip() == METADATA_KEY:
                    return tag_value.strip()
    return None


def reports(envelope: Mapping[str, Any]) -> list[Report]:
    """The reports in a verified Notification: one per recipient. Delivery, Bounce (Permanent:
    hard; Transient and Undetermined: soft), Complaint (not one whose feedback type is
    `not-spam`), Open and Click (SES does not say which recipient: each of the message's); the
    other event types are not about one message's fate and give none."""
    raw = envelope.get("Message")
    try:
        doc = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        if isinstance(raw, str) and raw.startswith("Successfully validated SNS topic"):
            return []  # sent once when an SES event destination is created
        raise BadPayload("the SNS message does not carry an SES notification")
    kind = doc.get("eventType") or doc.get("notificationType")
    found_mail = doc.get("mail")
    mail: dict[str, Any] = found_mail if isinstance(found_mail, dict) else {}
    common: dict[str, Any] = {
        "provider": PROVIDER,
        "message_id": _message_id(mail),
        "send_token": _send_token(mail),
    }
    sns_id = str(envelope.get("MessageId"))
    fallback = iso_time(envelope.get("Timestamp"))

    def when(part: Mapping[str, Any]) -> datetime:
        found = iso_time(part.get("timestamp")) or fallback
        if found is None:
            raise BadPayload("the SES notification has no time")
        return found

    out: list[Report] = []
    if kind == "Bounce":
        bounce = doc.get("bounce") or {}
        hard = bounce.get("bounceType") == "Permanent"
        summary = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
        for r in bounce.get("bouncedRecipients") or []:
            address = text(r.get("emailAddress"), 320)
            reason = text(r.get("diagnosticCode")) or summary
            out.append(
                Report(
                    kind=Kind.BOUNCED,
                    event_id=f"{sns_id}:{address}",
                    occurred_at=when(bounce),
                    recipient=address,
                    bounce_type="hard" if hard else "soft",
                    reason=reason,
                    **common,
                )
            )
    elif kind == "Complaint":
        complaint = doc.get("complaint") or {}
        feedback_type = text(complaint.get("complaintFeedbackType"))
        if feedback_type == "not-spam":
            return []
        for r in complaint.get("complainedRecipients") or []:
            address = text(r.get("emailAddress"), 320)
            out.append(
                Report(
                    kind=Kind.COMPLAINED,
                    event_id=f"{sns_id}:{address}",
                    occurred_at=when(complaint),
                    recipient=address,
                    reason=feedback_type or text(complaint.get("complaintSubType")),
                    **common,
                )
            )
    elif kind == "Delivery":
        delivery = doc.get("delivery") or {}
        for address in delivery.get("recipients") or []:
            out.append(
                Report(
                    kind=Kind.DELIVERED,
                    event_id=f"{sns_id}:{address}",
                    occurred_at=when(delivery),
                    recipient=text(address, 320),
                    reason=text(delivery.get("smtpResponse")),
                    **common,
                )
            )
    elif kind in ("Open", "Click"):
        part = doc.get(kind.lower()) or {}
        for address in mail.get("destination") or [None]:
            out.append(
                Report(
                    kind=Kind.OPENED if kind == "Open" else Kind.CLICKED,
                    event_id=f"{sns_id}:{address}",
                    occurred_at=when(part),
                    recipient=text(address, 320),
                    url=text(part.get("link"), 2000) if kind == "Click" else None,
                    **common,
                )
            )
    return out
