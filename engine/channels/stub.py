"""An in-memory email channel for tests and simulation: it keeps what it was given."""

from __future__ import annotations

from engine.errors import DeliveryError
from engine.mime import Email


class StubEmailChannel:
    name = "email"

    def __init__(self) -> None:
        self.messages: list[Email] = []
        #: recipient address -> (code, permanent) to refuse it with
        self.refuse: dict[str, tuple[int, bool]] = {}

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, msg: Email) -> str:
        if msg.recipient in self.refuse:
            code, permanent = self.refuse[msg.recipient]
            raise DeliveryError(f"{code} refused", permanent=permanent)
        self.messages.append(msg)
        return "250 stored"
