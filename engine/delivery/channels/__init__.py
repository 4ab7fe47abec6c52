"""Delivery channels, side by side with one small interface each (email, webhook, stub).

A channel is opened lazily by its first message, reused for the whole batch and closed by the
deliverer at the end of the batch. Failures are `DeliveryError`s: `permanent=True` when trying again
cannot help (SMTP 5xx for the recipient, webhook 4xx), else the send is retried later as a row with
a later `due_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.delivery.mime import Email


class Channel(Protocol):
    """What every channel has: a name (the `sends.channel` value) and a batch lifetime."""

    name: str

    def open(self) -> None: ...

    def close(self) -> None: ...


class EmailSender(Channel, Protocol):
    def send(self, msg: Email) -> str:
        """Hand the message over; return the provider's answer, or raise DeliveryError."""
        ...


class WebhookSender(Channel, Protocol):
    def post(self, url: str, payload: Any, *, key: str, now: datetime) -> str:
        """POST the JSON payload with `key` as its idempotency key; return the answer."""
        ...


@dataclass(frozen=True)
class Channels:
    """The channels a deliverer hands messages to, one per `sends.channel` value."""

    email: EmailSender
    webhook: WebhookSender

    def all(self) -> tuple[EmailSender, WebhookSender]:
        return (self.email, self.webhook)
