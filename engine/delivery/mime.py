"""Building the RFC 5322 message: multipart text + HTML, with the headers inbox providers require
of marketing mail (RFC 8058 one-click unsubscribe, List-Id), a stable Message-ID, and the metadata
that brings the providers' delivery reports back to their send (CONTRACT 14).

The recipient's domain is IDNA-encoded; a recipient whose local part is not ASCII makes a message
that needs SMTPUTF8 (RFC 6531/6532: the address goes raw, in UTF-8, into the envelope and To).

The message is written straight to bytes (CRLF line ends, RFC 2047 encoded words for non-ASCII
headers): the standard library's generator folds every header through `email.header` and costs
more than everything else a worker does for a message but rendering it. A body goes as it is
(`7bit` when ASCII, `8bit` UTF-8 otherwise, RFC 6152) when its lines fit SMTP's 998 octets, else
quoted-printable; a message with an 8bit body is sent with BODY=8BITMIME, and to a server that does
not offer 8BITMIME as its quoted-printable form (`Email.seven_bit`). Any MIME parser reads the
result (the tests parse it back with `email.message_from_bytes`).
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache, partial

from engine.addresses import InvalidAddress, parse_address
from engine.delivery.render import Rendered
from engine.errors import DeliveryError

CRLF = "\r\n"
#: RFC 5322's hard limit for a line; longer header values are folded (a List-Unsubscribe URL is not)
MAX_LINE = 998


def send_key(rule_id: str, step: str, customer_id: int, occurrence: int) -> str:
    return f"{rule_id}:{step}:{customer_id}:{occurrence}"


def sender_domain(mail_from: str) -> str:
    return _sender(mail_from)[2]


@lru_cache(maxsize=64)
def _key_digest(key: str) -> str:
    """SHA-256 of a send key in hex: its Message-ID, feedback token and MIME boundary are cut from
    it (made once for the three)."""
    return hashlib.sha256(key.encode()).hexdigest()


def message_id(key: str, domain: str) -> str:
    """The same on every retry of the same send, so a resend after a crash is recognisable."""
    return f"<{_key_digest(key)[:32]}@{domain}>"


#: the name of the metadata every provider echoes in its reports (CONTRACT 14)
METADATA_KEY = "journey_send_key"
#: hexadecimal digits of the send key's digest in a feedback token
TOKEN_DIGEST = 16


def feedback_token(send_id: int, key: str) -> str:
    """The value of `journey_send_key` in the providers' metadata: the send's id and a digest of
    its send key. Short, opaque and made of the characters every provider keeps (SES tags take
    letters, digits, `_` and `-` only); the digest makes it unguessable and tells apart the sends
    of two databases that report to one provider account."""
    return f"{send_id}-{_key_digest(key)[:TOKEN_DIGEST]}"


def parse_feedback_token(value: object) -> tuple[int, str] | None:
    """(send id, digest) of a `feedback_token`, or None when `value` is not one."""
    if not isinstance(value, str):
        return None
    sid, _, digest = value.strip().partition("-")
    if not sid.isdigit() or len(sid) > 18 or len(digest) != TOKEN_DIGEST:
        return None
    if any(ch not in "0123456789abcdef" for ch in digest):
        return None
    return int(sid), digest


def metadata_headers(token: str) -> list[tuple[str, str]]:
    """The send's token as each provider's metadata: SendGrid unique_args, Mailgun variables,
    Postmark metadata, an SES message tag (each provider removes its own headers)."""
    args = f'{{"{METADATA_KEY}":{json.dumps(token)}}}'
    return [
        ("X-SMTPAPI", f'{{"unique_args":{args}}}'),
        ("X-Mailgun-Variables", args),
        (f"X-PM-Metadata-{METADATA_KEY}", token),
        ("X-SES-MESSAGE-TAGS", f"{METADATA_KEY}={token}"),
    ]


@lru_cache(maxsize=8)
def _date_header(date: datetime) -> str:
    """The Date header of `date` (a batch's messages share their time: made once)."""
    return format_datetime(date)


@lru_cache(maxsize=16)
def _sender(mail_from: str) -> tuple[str, str, str]:
    """(From header, envelope address, domain) of a JOURNEY_FROM value; an international domain
    in its IDNA form."""
    name, address = parseaddr(mail_from)
    try:
        address = parse_address(address).wire
    except InvalidAddress:
        pass
    domain = address.rsplit("@", 1)[1] if "@" in address else "journey.local"
    return _address(name, address), address, domain


def _clean(value: str) -> str:
    """No line breaks inside a header value (a name or subject cannot inject headers)."""
    return " ".join(value.splitlines()).strip()


def _address(name: str | None, address: str) -> str:
    name = _clean(name or "")
    if not name:
        return address
    if address.isascii():
        return formataddr((name, address), charset="utf-8")
    # an SMTPUTF8 address goes raw (RFC 6532); formataddr takes only ASCII ones
    shown = formataddr((name, "a@b"), charset="utf-8")
    return shown[: -len("<a@b>")] + f"<{address}>"


def recipient(to_email: str) -> tuple[str, bool]:
    """(the address on the wire, whether it needs SMTPUTF8); DeliveryError when it is not one."""
    try:
        address = parse_address(_clean(to_email))
    except InvalidAddress as exc:
        raise DeliveryError(f"the address {to_email!r} {exc}: nothing was sent", permanent=True) from None
    return address.wire, address.needs_smtputf8


def _text_header(name: str, value: str) -> str:
    value = _clean(value)
    if value.isascii() and len(name) + 2 + len(value) <= MAX_LINE:
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep=CRLF)


def _qp(text: str) -> str:
    """Quoted-printable UTF-8, CRLF line ends."""
    body = text.replace("\r\n", "\n")
    encoded = binascii.b2a_qp(body.encode("utf-8"), quotetabs=False, istext=True).decode("ascii")
    return encoded.replace("\n", CRLF)


def _body(text: str, quoted: bool) -> tuple[str, str]:
    """(Content-Transfer-Encoding, the body with CRLF line ends) of a text part: as it is, `7bit`
    (ASCII) or `8bit`, when every line fits SMTP's limit and there is no stray CR or NUL; else, or
    when `quoted`, quoted-printable."""
    body = text.replace("\r\n", "\n")
    if not quoted and "\r" not in body and "\0" not in body:
        ascii_ = body.isascii()
        lines = body.encode("utf-8").split(b"\n") if not ascii_ else body.split("\n")
        if max(map(len, lines)) <= MAX_LINE:
            return ("7bit" if ascii_ else "8bit"), body.replace("\n", CRLF)
    return "quoted-printable", _qp(body)


@dataclass(frozen=True)
class Email:
    """A message ready to leave: envelope addresses, its headers, and its bytes."""

    sender: str
    recipient: str
    headers: tuple[tuple[str, str], ...]
    raw: bytes
    #: the recipient's local part is not ASCII: only a server that offers SMTPUTF8 can take it
    smtputf8: bool = False
    #: a body goes as 8bit UTF-8: sent with BODY=8BITMIME, or as `seven_bit()` to a server
    #: that does not offer 8BITMIME
    eight_bit: bool = False
    #: the same message with its bodies quoted-printable (made only when asked)
    quoted: Callable[[], Email] | None = None

    def seven_bit(self) -> Email:
        """This message for a server without 8BITMIME: every body quoted-printable."""
        return self.quoted() if self.eight_bit and self.quoted is not None else self

    def __getitem__(self, name: str) -> str | None:
        """A header as written (encoded words stay encoded), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def as_bytes(self) -> bytes:
        return self.raw


def build_email(
    *,
    rendered: Rendered,
    mail_from: str,
    to_email: str,
    to_name: str | None,
    key: str,
    rule_id: str,
    unsubscribe_url: str | None,
    unsubscribe_mailto: str | None = None,
    date: datetime,
    send_id: int | None = None,
    quoted: bool = False,
) -> Email:
    """A multipart/alternative message (text, then HTML), or text/plain when there is no HTML.

    `unsubscribe_url` is None for transactional rules: a receipt or a password reset is not
    something to unsubscribe from (the customer's unsubscribe does not stop it), so it carries no
    List-Unsubscribe / List-Unsubscribe-Post at all rather than a one-click link that would do
    nothing. List-Id, Message-ID and X-Journey-Send-Key are on every message, and with `send_id`
    the providers' metadata headers (`metadata_headers`)."""
    from_header, envelope_from, domain = _sender(mail_from)
    to_wire, smtputf8 = recipient(to_email)
    smtputf8 = smtputf8 or not envelope_from.isascii()
    mid = message_id(key, domain)
    headers: list[tuple[str, str]] = [
        ("From", from_header),
        ("To", _address(to_name, to_wire)),
        ("Subject", _text_header("Subject", rendered.subject)),
        ("Date", _date_header(date)),
        ("Message-ID", mid),
        ("List-Id", f"<{rule_id.replace('_', '-')}.{domain}>"),
        ("X-Journey-Send-Key", _clean(key)),
    ]
    if send_id is not None:
        headers += metadata_headers(feedback_token(send_id, key))
    if unsubscribe_url:
        targets = [f"<{_clean(unsubscribe_url)}>"]
        if unsubscribe_mailto:
            targets.append(f"<mailto:{_clean(unsubscribe_mailto)}?subject=unsubscribe>")
        headers.append(("List-Unsubscribe", ", ".join(targets)))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers.append(("MIME-Version", "1.0"))
    charset = "utf-8" if smtputf8 else "ascii"
    again = partial(
        build_email,
        rendered=rendered,
        mail_from=mail_from,
        to_email=to_email,
        to_name=to_name,
        key=key,
        rule_id=rule_id,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
        date=date,
        send_id=send_id,
        quoted=True,
    )
    text_cte, text_body = _body(rendered.text, quoted)
    text_part = f'Content-Type: text/plain; charset="utf-8"{CRLF}Content-Transfer-Encoding: {text_cte}'
    if rendered.html is None:
        head = CRLF.join(f"{k}: {v}" for k, v in headers)
        raw = (head + CRLF).encode(charset) + (text_part + CRLF + CRLF + text_body).encode("utf-8")
        eight = text_cte == "8bit"
        return Email(envelope_from, to_wire, tuple(headers), raw, smtputf8, eight, again if eight else None)
    boundary = "=_" + _key_digest(key)[:24]
    headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    html_cte, html_body = _body(rendered.html, quoted)
    html_part = f'Content-Type: text/html; charset="utf-8"{CRLF}Content-Transfer-Encoding: {html_cte}'
    head = CRLF.join(f"{k}: {v}" for k, v in headers)
    parts = [
        "",
        "",
        f"--{boundary}",
        text_part,
        "",
        text_body,
        f"--{boundary}",
        html_part,
        "",
        html_body,
        f"--{boundary}--",
        "",
    ]
    raw = head.encode(charset) + CRLF.join(parts).encode("utf-8")
    eight = "8bit" in (text_cte, html_cte)
    return Email(envelope_from, to_wire, tuple(headers), raw, smtputf8, eight, again if eight else None)
