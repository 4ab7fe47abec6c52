"""One round trip per message: the next message's envelope goes with the end of the previous
one's data (RFC 2920's own example), and a message announced that does not go is withdrawn
without ever reaching the server."""

from __future__ import annotations

from email.message import Message
from typing import Any

import pytest

from engine.delivery.channels.email import SmtpEmailChannel, email_channel
from engine.errors import DeliveryError
from tests.delivery.test_channels import email
from tests.support.smtp import PipeliningRecorder, serving


class Server(PipeliningRecorder):
    """Offers PIPELINING; records each message's connection; refuses the DATA of chosen recipients."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[int] = []
        self.refuse_data: set[str] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if set(envelope.rcpt_tos) & self.refuse_data:
            return "554 5.7.1 Message rejected as spam"
        self.sessions.append(id(session))
        return await super().handle_DATA(server, session, envelope)

    def received(self) -> list[str]:
        return [str(m["To"]).split("<")[1].rstrip(">") for m in self.messages]


def plain_text(msg: Message) -> Any:
    part = msg.get_payload(0)
    assert isinstance(part, Message)
    return part.get_payload(decode=True)


def channel(port: int) -> SmtpEmailChannel:
    made = email_channel(f"smtp://127.0.0.1:{port}")
    assert isinstance(made, SmtpEmailChannel)
    return made


def test_announced_messages_arrive_whole_in_order_over_one_connection() -> None:
    with serving(Server()) as (server, port):
        smtp = channel(port)
        mails = [email(f"c{n}@example.com", occurrence=n) for n in range(4)]
        for n, msg in enumerate(mails):
            smtp.announce(mails[n + 1] if n + 1 < len(mails) else None)
            assert smtp.send(msg).startswith("250")
        smtp.close()
    assert server.received() == [f"c{n}@example.com" for n in range(4)]
    assert len(set(server.sessions)) == 1
    assert all(plain_text(m) == b"Hello Ada" for m in server.messages)


def test_an_announced_message_that_does_not_go_never_reaches_the_server() -> None:
    with serving(Server()) as (server, port):
        smtp = channel(port)
        a, b, c = (email(f"{x}@example.com", occurrence=n) for n, x in enumerate("abc"))
        smtp.announce(b)
        smtp.send(a)
        smtp.send(c)  # b was vetoed (an unsubscribe came in): withdrawn, c goes on a new connection
        smtp.announce(b)
        smtp.send(a)
        smtp.close()  # the batch ends with b announced: withdrawn too
    assert server.received() == ["a@example.com", "c@example.com", "a@example.com"]
    assert len(set(server.sessions)) == 2


def test_an_announced_recipient_refused_is_that_message_s_error_alone() -> None:
    with serving(Server()) as (server, port):
        server.answers["gone@example.com"] = ["550 5.1.1 No such user"]
        smtp = channel(port)
        a, gone, c = (
            email("a@example.com"),
            email("gone@example.com", occurrence=2),
            email("c@example.com", occurrence=3),
        )
        smtp.announce(gone)
        smtp.send(a)
        smtp.announce(c)
        with pytest.raises(DeliveryError, match="550 5.1.1 No such user") as refused:
            smtp.send(gone)
        smtp.send(c)
        smtp.close()
    assert refused.value.permanent
    assert server.received() == ["a@example.com", "c@example.com"]


def test_a_refused_message_withdraws_the_one_announced_behind_it_which_still_goes_later() -> None:
    with serving(Server()) as (server, port):
        server.refuse_data.add("spam@example.com")
        smtp = channel(port)
        spam, b = email("spam@example.com"), email("b@example.com", occurrence=2)
        smtp.announce(b)
        with pytest.raises(DeliveryError, match="554 5.7.1") as refused:
            smtp.send(spam)
        assert smtp.send(b).startswith("250")
        smtp.close()
    assert refused.value.permanent
    assert server.received() == ["b@example.com"]


def test_pipelining_can_be_turned_off_for_a_relay_that_mishandles_it() -> None:
    with serving(Server()) as (server, port):
        smtp = email_channel(f"smtp://127.0.0.1:{port}?pipelining=0")
        assert isinstance(smtp, SmtpEmailChannel) and smtp.pipelining is False
        a, b = email("a@example.com"), email("b@example.com", occurrence=2)
        smtp.announce(b)
        smtp.send(a)
        assert smtp._pipelining is False and smtp._announced is None  # plain SMTP, nothing announced
        smtp.send(b)
        smtp.close()
    assert server.received() == ["a@example.com", "b@example.com"]
    assert email_channel(f"smtp://127.0.0.1:{port}").pipelining is True  # type: ignore[union-attr]


class Without8Bit(PipeliningRecorder):
    """A server that offers PIPELINING but not 8BITMIME (RFC 6152); records MAIL's options."""

    def __init__(self, offer_8bit: bool) -> None:
        super().__init__()
        self.offer_8bit = offer_8bit
        self.options: list[list[str]] = []

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        offered = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [r for r in offered if self.offer_8bit or r != "250-8BITMIME"]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.options.append(list(envelope.mail_options))
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("offer_8bit", [True, False])
@pytest.mark.parametrize("pipelining", [True, False])
def test_an_8bit_body_goes_as_the_server_can_take_it(offer_8bit: bool, pipelining: bool) -> None:
    text = "Grüße, Zoë!\n.a line that starts with a dot\n"
    mails = [email(f"c{n}@example.com", occurrence=n, text=text, html="<p>Grüße</p>") for n in range(3)]
    assert all(m.eight_bit for m in mails)
    with serving(Without8Bit(offer_8bit)) as (server, port):
        smtp = email_channel(f"smtp://127.0.0.1:{port}?pipelining={int(pipelining)}")
        assert isinstance(smtp, SmtpEmailChannel)
        for n, msg in enumerate(mails):
            smtp.announce(mails[n + 1] if n + 1 < len(mails) else None)
            assert smtp.send(msg).startswith("250")
        smtp.close()
    assert len(server.messages) == 3
    for options, received in zip(server.options, server.messages, strict=True):
        assert ("BODY=8BITMIME" in options) is offer_8bit
        encodings = [p["Content-Transfer-Encoding"] for p in received.walk() if not p.is_multipart()]
        assert encodings == (["8bit", "8bit"] if offer_8bit else ["quoted-printable"] * 2)
        plain, html = (p.get_payload(decode=True) for p in received.walk() if not p.is_multipart())
        assert isinstance(plain, bytes) and isinstance(html, bytes)
        assert plain.decode().replace("\r\n", "\n") == text and html.decode() == "<p>Grüße</p>"
