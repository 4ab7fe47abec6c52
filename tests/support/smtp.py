"""A real SMTP server for tests (aiosmtpd), recording every message and able to refuse recipients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any, TypeVar

from aiosmtpd.controller import Controller

from tests.support.services import free_port


@dataclass
class Recorder:
    messages: list[Message] = field(default_factory=list)
    #: recipient -> list of SMTP answers to give, one per attempt (then accept)
    answers: dict[str, list[str]] = field(default_factory=dict)
    #: seconds to wait before accepting each message (to land a kill mid-batch)
    delay: float = 0.0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        queue = self.answers.get(address)
        if queue:
            return queue.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def by_message_id(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.messages:
            out[str(m["Message-ID"])] = out.get(str(m["Message-ID"]), 0) + 1
        return out


class PipeliningRecorder(Recorder):
    """A Recorder whose EHLO offers PIPELINING (RFC 2920), as postfix does; aiosmtpd reads the
    commands a client sends together one after the other, answering each in turn."""

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


R = TypeVar("R", bound=Recorder)


@contextmanager
def serving(recorder: R, **options: Any) -> Iterator[tuple[R, int]]:
    """`recorder` answering SMTP on a free port of 127.0.0.1 (`options` go to aiosmtpd's
    Controller: an authenticator, enable_SMTPUTF8, …); (recorder, port)."""
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


@contextmanager
def smtp_server(**options: Any) -> Iterator[tuple[Recorder, int]]:
    """A recording SMTP server (see `serving`)."""
    with serving(Recorder(), **options) as server:
        yield server
