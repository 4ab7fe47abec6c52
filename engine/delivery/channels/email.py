"""The email channel: SMTP (one connection per batch) or `.eml` files in a directory."""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from engine.delivery.mime import Email
from engine.errors import ConfigError, DeliveryError


class FileEmailChannel:
    """One RFC 5322 `.eml` file per message, named by its Message-ID (a retry overwrites, never adds)."""

    name = "email"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        pass

    def send(self, msg: Email) -> str:
        self.open()
        stem = re.sub(r"[^A-Za-z0-9@._-]", "", str(msg["Message-ID"])) or "message"
        target = self.directory / f"{stem}.eml"
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(msg.raw)
        os.replace(tmp, target)
        return f"written {target.name}"


class SmtpEmailChannel:
    """SMTP with optional implicit TLS (smtps://), STARTTLS (?starttls=1) and AUTH; the connection
    is opened on first use and reused for the whole batch."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        user: str | None,
        password: str | None,
        tls: bool,
        starttls: bool,
        timeout: float = 30.0,
        pipelining: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.tls, self.starttls = tls, starttls
        self.timeout = timeout
        #: False (`?pipelining=0`): never pipeline, even to a server that offers it (a relay that
        #: advertises PIPELINING and mishandles it)
        self.pipelining = pipelining
        self._smtp: smtplib.SMTP | None = None
        #: whether this connection's server offers PIPELINING (RFC 2920); None until asked
        self._pipelining: bool | None = None
        #: the message `announce` named, to go with the end of the next one sent
        self._next: Email | None = None
        #: the message whose envelope went with the end of the previous one, its replies unread
        self._announced: Email | None = None

    def open(self) -> None:
        if self._smtp is not None:
            return
        try:
            if self.tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
            if self.user:
                smtp.login(self.user, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"SMTP login refused: {exc.smtp_code} {_text(exc.smtp_error)}; "
                "check the user and password in JOURNEY_EMAIL_URL (smtp://USER:PASS@HOST:PORT)"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"cannot reach SMTP server {self.host}:{self.port}: {exc}") from None
        self._smtp = smtp

    def close(self) -> None:
        self._next = None
        if self._smtp is not None:
            try:
                self._withdraw()
                if self._smtp is not None:
                    self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._drop()
            self._smtp = None
            self._pipelining = None

    def announce(self, msg: Email | None) -> None:
        """The message to send right after the next one, when it is known: to a server that
        offers PIPELINING its envelope (MAIL, RCPT, DATA) goes with the end of the next one's
        data, as RFC 2920's own example pipelines them, so that a message takes one round trip
        instead of two. Nothing of its content leaves before `send(msg)`; one announced and then
        not sent is withdrawn (`_withdraw`)."""
        self._next = msg

    def _withdraw(self) -> None:
        """An announced message that is not sent now: read its envelope's replies, then RSET; a
        server that opened DATA for it (354) can only be left by dropping the connection, which
        completes no message."""
        announced, self._announced = self._announced, None
        if announced is None or self._smtp is None:
            return
        try:
            replies = [self._smtp.getreply() for _ in range(3)]
            if replies[2][0] == 354:
                self._drop()
            else:
                _reset_or_close(self._smtp, replies[2][0])
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        """Close the socket without QUIT (inside DATA, QUIT would be message text)."""
        if self._smtp is not None:
            self._smtp.close()
        self._smtp = None
        self._pipelining = None
        self._announced = None

    def _options(self, msg: Email) -> tuple[str, ...]:
        """MAIL FROM options: SMTPUTF8 for an address that needs it, when the server offers it; a
        server that does not cannot take that one message (DeliveryError, permanent)."""
        if not msg.smtputf8:
            return ()
        assert self._smtp is not None
        self._smtp.ehlo_or_helo_if_needed()
        if not self._smtp.has_extn("smtputf8"):
            raise DeliveryError(
                f"{msg.recipient} has non-ASCII characters before the @, which need SMTPUTF8, and "
                f"the SMTP server {self.host}:{self.port} does not offer it",
                permanent=True,
            )
        return ("SMTPUTF8",)

    def send(self, msg: Email) -> str:
        following, self._next = self._next, None
        for attempt in (1, 2):
            if self._announced is not None and self._announced is not msg:
                self._withdraw()  # may drop the connection: open() makes a new one
            self.open()
            assert self._smtp is not None
            try:
                options = self._options(msg)
                if self._pipelining is None:
                    self._smtp.ehlo_or_helo_if_needed()
                    self._pipelining = self.pipelining and self._smtp.has_extn("pipelining")
                if self._pipelining and not options:
                    refused = self._pipelined(msg, following)
                else:
                    raw, body = _on_wire(self._smtp, msg)
                    refused = self._smtp.sendmail(
                        msg.sender, [msg.recipient], raw, mail_options=options + body
                    )
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                raise DeliveryError(
                    f"{code} {_text(text)}", permanent=500 <= code < 600, smtp_code=code
                ) from None
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code in (421,):
                    self.close()
                raise DeliveryError(
                    f"{exc.smtp_code} {_text(exc.smtp_error)}",
                    permanent=500 <= exc.smtp_code < 600,
                    smtp_code=exc.smtp_code,
                ) from None
            except (smtplib.SMTPServerDisconnected, ConnectionError, OSError) as exc:
                self.close()
                if attempt == 1:
                    continue  # the reused connection dropped: reconnect once
                raise DeliveryError(f"SMTP connection lost: {exc}") from None
            if refused:
                code, text = next(iter(refused.values()))
                raise DeliveryError(f"{code} {_text(text)}", permanent=500 <= code < 600, smtp_code=code)
            return f"250 accepted by {self.host}"
        raise DeliveryError("SMTP connection lost")  # pragma: no cover - the loop returns or raises

    def _pipelined(self, msg: Email, following: Email | None) -> dict[str, Any]:
        """One message as RFC 2920 allows: MAIL, RCPT and DATA in one write (or already sent with
        the previous message's end, when it was announced), their three replies read together,
        then the message, with the next message's envelope when one is announced, and its reply.
        Raises what smtplib's `sendmail` raises for the same replies (and leaves the connection
        as it does)."""
        smtp = self._smtp
        assert smtp is not None
        if self._announced is msg:
            self._announced = None  # its envelope went with the previous message's end
        else:
            smtp.send(_envelope(smtp, msg))
        mail, rcpt, data = smtp.getreply(), smtp.getreply(), smtp.getreply()
        if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
            smtp.close()  # a server that opened DATA without a sender or recipient: leave without a message
        if mail[0] != 250:
            _reset_or_close(smtp, mail[0])
            raise smtplib.SMTPSenderRefused(mail[0], mail[1], msg.sender)
        if rcpt[0] not in (250, 251):
            _reset_or_close(smtp, rcpt[0])
            raise smtplib.SMTPRecipientsRefused({msg.recipient: rcpt})
        if data[0] != 354:
            _reset_or_close(smtp, data[0])
            raise smtplib.SMTPDataError(data[0], data[1])
        body = _dot_stuffed(_on_wire(smtp, msg)[0])
        body += b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n"
        if following is not None and following is not msg and not following.smtputf8:
            body += _envelope(smtp, following).encode("ascii")
            self._announced = following
        smtp.send(body)
        code, reply = smtp.getreply()
        if code != 250:
            self._withdraw()  # the announced envelope's replies come after this one
            if self._smtp is not None:
                _reset_or_close(smtp, code)
            raise smtplib.SMTPDataError(code, reply)
        return {}


def _dot_stuffed(raw: bytes) -> bytes:
    """Every line that starts with a dot gets a second one (RFC 5321 4.5.2), as smtplib's
    `data` does, without a regular expression over the whole message."""
    body = raw.replace(b"\n.", b"\n..")
    return b"." + body if body.startswith(b".") else body


#: a bare address (no display name, comment, quotes or brackets): quoteaddr would only bracket it
_BARE = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")


def _on_wire(smtp: smtplib.SMTP, msg: Email) -> tuple[bytes, tuple[str, ...]]:
    """The bytes of `msg` as this server takes them, and the MAIL FROM option they need: a message
    with an 8bit body goes with BODY=8BITMIME (RFC 6152) to a server that offers it, and with its
    bodies quoted-printable to one that does not."""
    if not msg.eight_bit:
        return msg.raw, ()
    if smtp.has_extn("8bitmime"):
        return msg.raw, ("BODY=8BITMIME",)
    return msg.seven_bit().raw, ()


def _envelope(smtp: smtplib.SMTP, msg: Email) -> str:
    """MAIL, RCPT and DATA for `msg`, as one write."""
    raw, body = _on_wire(smtp, msg)
    size = f" SIZE={len(raw)}" if smtp.has_extn("size") else ""
    params = size + "".join(f" {option}" for option in body)
    return f"MAIL FROM:{_angled(msg.sender)}{params}\r\nRCPT TO:{_angled(msg.recipient)}\r\nDATA\r\n"


def _angled(address: str) -> str:
    """`smtplib.quoteaddr(address)`, without parsing a bare address again for every message."""
    return f"<{address}>" if _BARE.fullmatch(address) else smtplib.quoteaddr(address)


def _reset_or_close(smtp: smtplib.SMTP, code: int) -> None:
    """After a refusal, as smtplib does: 421 (the server is closing) closes, anything else RSETs."""
    if code == 421:
        smtp.close()
    elif smtp.sock is not None:
        try:
            smtp.rset()
        except smtplib.SMTPServerDisconnected:
            pass


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def email_channel(url: str) -> FileEmailChannel | SmtpEmailChannel:
    """The channel for JOURNEY_EMAIL_URL: `file://DIR`, `smtp://user:pass@host:port`, `smtps://…`."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = (
            unquote(parts.netloc + parts.path)
            if parts.netloc in (".", "..")
            else unquote(parts.path or parts.netloc)
        )
        return FileEmailChannel(Path(path or "outbox"))
    if parts.scheme in ("smtp", "smtps"):
        query = parse_qs(parts.query)
        starttls = query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
        pipelining = query.get("pipelining", ["1"])[0].lower() not in ("0", "false", "no")
        return SmtpEmailChannel(
            parts.hostname or "localhost",
            parts.port or (465 if parts.scheme == "smtps" else 25),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "smtps",
            starttls=starttls,
            pipelining=pipelining,
        )
    raise ConfigError(f"JOURNEY_EMAIL_URL {url!r}: use smtp://host:port, smtps://…, or file://DIR")
