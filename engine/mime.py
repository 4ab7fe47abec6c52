"""Building the RFC 5322 message: multipart text + HTML, with the headers inbox providers require
of marketing mail (RFC 8058 one-click unsubscribe, List-Id) and a stable Message-ID.

The message is written straight to bytes (CRLF line ends, quoted-printable UTF-8 bodies, RFC 2047
encoded words for non-ASCII headers): the standard library's generator folds every header through
`email.header` and costs more than everything else a worker does for a message but rendering it.
Any MIME parser reads the result (the tests parse it back with `email.message_from_bytes`).
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

from engine.render import Rendered

CRLF = "\r\n"
#: RFC 5322's hard limit for a line; longer header values are folded (a List-Unsubscribe URL is not)
MAX_LINE = 998


def send_key(rule_id: str, step: str, customer_id: int, occurrence: int) -> str:
    return f"{rule_id}:{step}:{customer_id}:{occurrence}"


def sender_domain(mail_from: str) -> str:
    return _sender(mail_from)[2]


def message_id(key: str, domain: str) -> str:
    """The same on every retry of the same send, so a resend after a crash is recognisable."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


@lru_cache(maxsize=16)
def _sender(mail_from: str) -> tuple[str, str, str]:
    """(From header, envelope address, domain) of a JOURNEY_FROM value."""
    name, address = parseaddr(mail_from)
    domain = address.rsplit("@", 1)[1] if "@" in address else "journey.local"
    return _address(name, address), address, domain


def _clean(value: str) -> str:
    """No line breaks inside a header value (a name or subject cannot inject headers)."""
    return " ".join(value.splitlines()).strip()


def _address(name: str | None, address: str) -> str:
    name = _clean(name or "")
    if not name:
        return address
    return formataddr((name, address), charset="utf-8")


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


@dataclass(frozen=True)
class Email:
    """A message ready to leave: envelope addresses, its headers, and its bytes."""

    sender: str
    recipient: str
    headers: tuple[tuple[str, str], ...]
    raw: bytes

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
) -> Email:
    """A multipart/alternative message (text, then HTML), or text/plain when there is no HTML.

    `unsubscribe_url` is None for transactional rules: a receipt or a password reset is not
    something to unsubscribe from (the customer's unsubscribe does not stop it), so it carries no
    List-Unsubscribe / List-Unsubscribe-Post at all rather than a one-click link that would do
    nothing. List-Id, Message-ID and X-Journey-Send-Key are on every message."""
    from_header, envelope_from, domain = _sender(mail_from)
    to_email = _clean(to_email)
    mid = message_id(key, domain)
    headers: list[tuple[str, str]] = [
        ("From", from_header),
        ("To", _address(to_name, to_email)),
        ("Subject", _text_header("Subject", rendered.subject)),
        ("Date", format_datetime(date)),
        ("Message-ID", mid),
        ("List-Id", f"<{rule_id.replace('_', '-')}.{domain}>"),
        ("X-Journey-Send-Key", _clean(key)),
    ]
    if unsubscribe_url:
        targets = [f"<{_clean(unsubscribe_url)}>"]
        if unsubscribe_mailto:
            targets.append(f"<mailto:{_clean(unsubscribe_mailto)}?subject=unsubscribe>")
        headers.append(("List-Unsubscribe", ", ".join(targets)))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers.append(("MIME-Version", "1.0"))
    text_part = (
        'Content-Type: text/plain; charset="utf-8"' + CRLF + "Content-Transfer-Encoding: quoted-printable"
    )
    if rendered.html is None:
        head = CRLF.join(f"{k}: {v}" for k, v in headers)
        body = text_part + CRLF + CRLF + _qp(rendered.text)
        return Email(envelope_from, to_email, tuple(headers), (head + CRLF + body).encode("ascii"))
    boundary = "=_" + hashlib.sha256(key.encode()).hexdigest()[:24]
    headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    html_part = (
        'Content-Type: text/html; charset="utf-8"' + CRLF + "Content-Transfer-Encoding: quoted-printable"
    )
    parts = [
        CRLF.join(f"{k}: {v}" for k, v in headers),
        "",
        f"--{boundary}",
        text_part,
        "",
        _qp(rendered.text),
        f"--{boundary}",
        html_part,
        "",
        _qp(rendered.html),
        f"--{boundary}--",
        "",
    ]
    return Email(envelope_from, to_email, tuple(headers), CRLF.join(parts).encode("ascii"))
