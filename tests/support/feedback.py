"""The email providers, as the tests play them: keys generated here, the documented sample payloads
(tests/feedback/payloads) filled in with a message Journey sent, and signed as each provider signs.

The signing code is written from the providers' documents, apart from the code under test: the
SNS string to sign straight from AWS's page, SendGrid's ECDSA over timestamp + body, Mailgun's
HMAC of timestamp + token, Postmark's Basic auth.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

PAYLOADS = Path(__file__).resolve().parent.parent / "feedback" / "payloads"
CERT_URL = (
    "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
)
TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"
POSTMARK_AUTH = "postmark-hook:s3cr:et"
PROVIDERS = ("ses", "sendgrid", "postmark", "mailgun")


def load(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_bytes())


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Sent:
    """What a provider echoes of a message Journey sent: its metadata token, Message-ID, recipient."""

    token: str
    message_id: str
    recipient: str

    @classmethod
    def of(cls, msg: Message) -> Sent:
        return cls(
            token=str(msg["X-PM-Metadata-journey_send_key"]),
            message_id=str(msg["Message-ID"]).strip("<>"),
            recipient=str(msg["To"]).rsplit("<", 1)[-1].rstrip(">"),
        )


@dataclass
class Keys:
    """A fresh key per provider, as its settings hold them."""

    sns: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    sendgrid: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    mailgun: str = field(default_factory=lambda: secrets.token_hex(16))
    postmark: str = POSTMARK_AUTH

    def __post_init__(self) -> None:
        self.cert_pem = certificate(self.sns)

    @property
    def sendgrid_public(self) -> str:
        """The verification key as SendGrid shows it: base64 DER."""
        der = self.sendgrid.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def settings(self) -> dict[str, Any]:
        return {
            "sendgrid_verification_key": self.sendgrid_public,
            "postmark_webhook_auth": self.postmark,
            "mailgun_signing_key": self.mailgun,
        }

    def env(self) -> dict[str, str]:
        return {
            "JOURNEY_SENDGRID_VERIFICATION_KEY": self.sendgrid_public,
            "JOURNEY_POSTMARK_WEBHOOK_AUTH": self.postmark,
            "JOURNEY_MAILGUN_SIGNING_KEY": self.mailgun,
        }


def certificate(key: rsa.RSAPrivateKey, cn: str = "sns.amazonaws.com") -> bytes:
    """A self-signed certificate for the key, valid 2020-2099 (the tests' clocks are in between)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2099, 12, 31, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------------------------------- signing


def sns_string_to_sign(env: dict[str, Any]) -> bytes:
    """From AWS's "Verifying the signatures of Amazon SNS messages": name, newline, value, newline
    for each field, Subject only when a Notification has one."""
    if env["Type"] == "Notification":
        keys = [
            "Message",
            "MessageId",
            *(["Subject"] if "Subject" in env else []),
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{k}\n{env[k]}\n" for k in keys).encode()


def sns_sign(env: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "1") -> dict[str, Any]:
    env = dict(env, SignatureVersion=version, SigningCertURL=env.get("SigningCertURL", CERT_URL))
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    env["Signature"] = base64.b64encode(
        key.sign(sns_string_to_sign(env), padding.PKCS1v15(), algorithm)
    ).decode()
    return env


def sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes, at: datetime) -> dict[str, str]:
    stamp = str(int(at.timestamp()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def mailgun_sign(payload: dict[str, Any], key: str, at: datetime, token: str | None = None) -> dict[str, Any]:
    signed = copy.deepcopy(payload)
    stamp = str(int(at.timestamp()))
    token = token or secrets.token_hex(25)  # 50 characters, like Mailgun's
    digest = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    signed["signature"] = {"timestamp": stamp, "token": token, "signature": digest}
    return signed


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


# ------------------------------------------------------------------------ documented samples, filled

#: the sample of each (provider, kind): SES's delivery and bounces from event publishing (they carry
#: message tags), its complaint from a classic notification (matched by the original Message-ID)
SAMPLES = {
    "ses": {
        "delivered": "ses_event_delivered.json",
        "hard_bounce": "ses_event_hard_bounce.json",
        "soft_bounce": "ses_soft_bounce.json",
        "complaint": "ses_complaint.json",
        "open": "ses_open.json",
        "click": "ses_click.json",
    },
    "sendgrid": {
        "delivered": "sendgrid_delivered.json",
        "hard_bounce": "sendgrid_hard_bounce.json",
        "soft_bounce": "sendgrid_soft_bounce.json",
        "complaint": "sendgrid_complaint.json",
        "open": "sendgrid_open.json",
        "click": "sendgrid_click.json",
    },
    "postmark": {
        "delivered": "postmark_delivered.json",
        "hard_bounce": "postmark_hard_bounce.json",
        "soft_bounce": "postmark_soft_bounce.json",
        "complaint": "postmark_complaint.json",
        "open": "postmark_open.json",
        "click": "postmark_click.json",
    },
    "mailgun": {
        "delivered": "mailgun_delivered.json",
        "hard_bounce": "mailgun_hard_bounce.json",
        "soft_bounce": "mailgun_soft_bounce.json",
        "complaint": "mailgun_complaint.json",
        "open": "mailgun_open.json",
        "click": "mailgun_click.json",
    },
}


def _ses(doc: dict[str, Any], sent: Sent, at: datetime, url: str | None) -> dict[str, Any]:
    mail = doc["mail"]
    mail["destination"] = [sent.recipient]
    if "tags" in mail:  # event publishing: the X-SES-MESSAGE-TAGS header became tags
        mail["tags"]["journey_send_key"] = [sent.token]
    else:  # a classic notification with the original headers: the Message-ID Journey set
        mail["commonHeaders"]["messageId"] = f"<{sent.message_id}>"
    for part in ("bounce", "complaint", "delivery", "open", "click"):
        if part in doc:
            doc[part]["timestamp"] = iso(at)
    if "bounce" in doc:
        doc["bounce"]["bouncedRecipients"][0]["emailAddress"] = sent.recipient
    if "complaint" in doc:
        doc["complaint"]["complainedRecipients"] = [{"emailAddress": sent.recipient}]
    if "delivery" in doc:
        doc["delivery"]["recipients"] = [sent.recipient]
    if url and "click" in doc:
        doc["click"]["link"] = url
    return doc


def _sendgrid(
    events: list[dict[str, Any]], sent: Sent, at: datetime, url: str | None
) -> list[dict[str, Any]]:
    for event in events:
        event.update(email=sent.recipient, timestamp=int(at.timestamp()), journey_send_key=sent.token)
        event["sg_event_id"] = uuid.uuid4().hex
        if url and "url" in event:
            event["url"] = url
    return events


def _postmark(record: dict[str, Any], sent: Sent, at: datetime, url: str | None) -> dict[str, Any]:
    record.setdefault("Metadata", {})["journey_send_key"] = sent.token
    for name in ("Email", "Recipient"):
        if name in record:
            record[name] = sent.recipient
    for name in ("BouncedAt", "DeliveredAt", "ReceivedAt"):
        if name in record:
            record[name] = iso(at)
    if "ID" in record:
        record["ID"] = secrets.randbelow(10**9)
    if url and "OriginalLink" in record:
        record["OriginalLink"] = url
    return record


def _mailgun(payload: dict[str, Any], sent: Sent, at: datetime, url: str | None) -> dict[str, Any]:
    data = payload["event-data"]
    data.update(recipient=sent.recipient, timestamp=at.timestamp(), id=uuid.uuid4().hex[:22])
    data["user-variables"] = {"journey_send_key": sent.token}
    data.setdefault("message", {}).setdefault("headers", {})["message-id"] = sent.message_id
    if url and "url" in data:
        data["url"] = url
    return payload


def filled(provider: str, kind: str, sent: Sent, at: datetime, url: str | None = None) -> Any:
    """The documented sample of (provider, kind), about the message `sent`, happening `at`."""
    doc = load(SAMPLES[provider][kind])
    fills: dict[str, Callable[[Any, Sent, datetime, str | None], Any]] = {
        "ses": _ses,
        "sendgrid": _sendgrid,
        "postmark": _postmark,
        "mailgun": _mailgun,
    }
    fill = fills[provider]
    return fill(doc, sent, at, url)


def ses_notification(doc: dict[str, Any], at: datetime, keys: Keys, version: str = "1") -> dict[str, Any]:
    """The documented SNS Notification carrying an SES document, sent `at`, signed."""
    env = load("sns_notification.json")
    env.update(Message=json.dumps(doc), Timestamp=iso(at), MessageId=str(uuid.uuid4()))
    return sns_sign(env, keys.sns, version)


def request(provider: str, payload: Any, keys: Keys, at: datetime) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of the provider's POST of `payload`, signed `at`."""
    if provider == "ses":
        env = ses_notification(payload, at, keys)
        headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}
        return json.dumps(env).encode(), headers
    if provider == "sendgrid":
        body = json.dumps(payload).encode() + b"\r\n"
        return body, sendgrid_headers(keys.sendgrid, body, at)
    if provider == "postmark":
        return json.dumps(payload).encode(), {"Content-Type": "application/json", **basic(keys.postmark)}
    body = json.dumps(mailgun_sign(payload, keys.mailgun, at)).encode()
    return body, {"Content-Type": "application/json"}


def forged(provider: str, payload: Any, at: datetime) -> tuple[bytes, dict[str, str]]:
    """The same POST signed with keys that are not the configured ones."""
    return request(provider, payload, Keys(postmark="postmark-hook:guess"), at)


def altered(provider: str, body: bytes, headers: dict[str, str], keys: Keys) -> tuple[bytes, dict[str, str]]:
    """A signed POST with what its signature covers changed after signing: the SES document in the
    SNS message, any byte of SendGrid's body, Mailgun's timestamp (the event is not signed);
    Postmark signs nothing, so its credentials are what is altered."""
    if provider == "ses":
        env = json.loads(body)
        env["Message"] = env["Message"].replace("@example.com", "@example.org")
        return json.dumps(env).encode(), headers
    if provider == "sendgrid":
        return body.replace(b"@example.com", b"@example.org"), headers
    if provider == "mailgun":
        payload = json.loads(body)
        payload["signature"]["timestamp"] = str(int(payload["signature"]["timestamp"]) - 1)
        return json.dumps(payload).encode(), headers
    return body, headers | basic(keys.postmark + "x")
