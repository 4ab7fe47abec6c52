"""An in-memory email channel for tests and simulation: it keeps what it was given."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.delivery.mime import Email
from engine.errors import DeliveryError


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
            raise DeliveryError(f"{code} refused", permanent=permanent, smtp_code=code)
        self.messages.append(msg)
        return "250 stored"


class StubWebhookChannel:
    """Posts nothing: keeps what it was given and answers as a receiving team would (simulation,
    tests)."""

    name = "webhook"

    def __init__(self) -> None:
        self.posts: list[Any] = []

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def post(self, url: str, payload: Any, *, key: str, now: datetime) -> str:
        self.posts.append(payload)
        return "200 simulated"
