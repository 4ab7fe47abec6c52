"""Event times: ISO 8601 with a zone, read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.errors import IngestError


def parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        raise IngestError("'timestamp' must be an ISO 8601 string like 2026-11-01T10:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)  # reads a trailing Z as UTC
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("z", "+00:00"))
        except ValueError:
            raise IngestError(f"'timestamp' {value!r} is not ISO 8601 (like 2026-11-01T10:00:00Z)") from None
    if parsed.tzinfo is UTC:
        return parsed
    if parsed.tzinfo is None:
        raise IngestError(f"'timestamp' {value!r} has no time zone: add Z or +01:00")
    return parsed.astimezone(UTC)


__all__ = ["parse_timestamp"]
