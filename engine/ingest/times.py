"""Event times: ISO 8601 with a zone, read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.errors import IngestError

#: the years a timestamp may name
YEARS = (1900, 2999)


def parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        raise IngestError("'timestamp' must be an ISO 8601 string like 2026-11-01T10:00:00Z")
    shown = value if len(value) <= 40 else value[:40] + "…"
    try:
        parsed = datetime.fromisoformat(value)  # reads a trailing Z as UTC
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("z", "+00:00"))
        except ValueError:
            raise IngestError(f"'timestamp' {shown!r} is not ISO 8601 (like 2026-11-01T10:00:00Z)") from None
    if parsed.tzinfo is None:
        raise IngestError(f"'timestamp' {shown!r} has no time zone: add Z or +01:00")
    if not YEARS[0] <= parsed.year <= YEARS[1]:
        raise IngestError(f"'timestamp' {shown!r} is out of range: years {YEARS[0]} to {YEARS[1]}")
    if parsed.tzinfo is UTC:
        return parsed
    return parsed.astimezone(UTC)


__all__ = ["YEARS", "parse_timestamp"]
