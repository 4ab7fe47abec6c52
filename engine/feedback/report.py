"""What every provider's payload is normalised into, and the errors of a webhook request."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from engine.errors import JourneyError


class Kind(StrEnum):
    """What a report says happened to a message."""

    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    OPENED = "opened"
    CLICKED = "clicked"


class Refused(JourneyError):
    """The request is not provably from the provider: answer `status` (401 or 403), record nothing."""

    def __init__(self, message: str, status: int = 401) -> None:
        self.status = status
        super().__init__(message)


class BadPayload(JourneyError):
    """The request is the provider's, but its body cannot be read (answered 400)."""


@dataclass(frozen=True)
class Report:
    """One provider report about one message to one recipient."""

    provider: str
    kind: Kind
    #: the provider's id of this report: the same report twice is recorded once
    event_id: str
    #: when the provider says it happened (aware)
    occurred_at: datetime
    recipient: str | None = None
    #: the Message-ID Journey set, bare (no <>), where the provider echoes it
    message_id: str | None = None
    #: the `journey_send_key` metadata (engine.delivery.mime.feedback_token), where echoed
    send_token: str | None = None
    #: hard or soft, for a bounce
    bounce_type: str | None = None
    #: the provider's words: a bounce's diagnostic, a complaint's type
    reason: str | None = None
    #: the URL clicked
    url: str | None = None

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be aware")
        if self.bounce_type not in (None, "hard", "soft"):
            raise ValueError(f"bounce_type {self.bounce_type!r}")


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header, whatever its case."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def bare_message_id(value: Any) -> str | None:
    """'<abc@x>' or ' abc@x ' -> 'abc@x'."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text or None


def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 time (`Z`, seven-digit fractions), UTC when it has no zone; None if not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def epoch_time(value: Any) -> datetime | None:
    """Seconds since the epoch (milliseconds from 1e11 on, as SendGrid's Single Sends use)."""
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if seconds > 1e11:
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def text(value: Any, limit: int = 500) -> str | None:
    """A non-empty string, cut to `limit`, else None."""
    return value[:limit] if isinstance(value, str) and value.strip() else None


def event_id(value: str) -> str:
    """A provider's event id as stored: as it is when it fits, else its hash."""
    if len(value) <= 200:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()
