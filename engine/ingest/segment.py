"""Segment's shape (CONTRACT section 9), turned into section 2's: `userId`/`anonymousId` become
the customer, `messageId` the message id, `page`/`screen` the events `page_viewed` and
`screen_viewed`, `group` traits on the customer, `alias` a merge; a missing `timestamp` is
corrected for the sender's clock from `sentAt`.

`to_internal` only rewrites the item; `engine.ingest.parse.parse_event` validates the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import IngestError
from engine.ingest.times import parse_timestamp

#: the types of Segment's tracking API
SEGMENT_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
#: the keys that mark an item as Segment-shaped
_MARKERS = ("userId", "anonymousId", "previousId", "messageId", "groupId")
PAGE_VIEWED = "page_viewed"
SCREEN_VIEWED = "screen_viewed"


def is_segment(obj: Mapping[str, Any]) -> bool:
    """Whether an item is Segment-shaped rather than section 2's (which has `customer_id`)."""
    if "customer_id" in obj:
        return False
    return obj.get("type") in ("page", "screen", "group", "alias") or any(k in obj for k in _MARKERS)


def _id(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise IngestError(f"'{key}' must be a non-empty string")
    text = str(value)
    if len(text) > 255:
        raise IngestError(f"'{key}' is longer than 255 characters")
    return text


def _object(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise IngestError(f"'{key}' must be a JSON object")
    return value


def _time(value: Any, key: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except IngestError as exc:
        raise IngestError(str(exc).replace("'timestamp'", f"'{key}'")) from None


def _timestamp(obj: Mapping[str, Any], received_at: datetime | None) -> str:
    """The item's time: its `timestamp`; else, as Segment does, `receivedAt - (sentAt -
    originalTimestamp)`; else the time it was received."""
    if obj.get("timestamp") is not None:
        return obj["timestamp"]  # type: ignore[no-any-return]
    received = _time(obj.get("receivedAt"), "receivedAt") or received_at
    if received is None:
        raise IngestError("'timestamp' is required: an ISO 8601 string like 2026-11-01T10:00:00Z")
    original = _time(obj.get("originalTimestamp"), "originalTimestamp")
    sent = _time(obj.get("sentAt"), "sentAt")
    if original is not None and sent is not None:
        received = received - (sent - original)
    return received.isoformat()


def _context_fields(context: Mapping[str, Any]) -> dict[str, Any]:
    """`context.timezone` and `context.locale`, where they are usable (a bad one is ignored: it
    is the device's, not something the sender chose)."""
    out: dict[str, Any] = {}
    tz = context.get("timezone")
    if isinstance(tz, str) and tz:
        try:
            ZoneInfo(tz)
            out["timezone"] = tz
        except (ZoneInfoNotFoundError, ValueError):
            pass
    locale = context.get("locale")
    if isinstance(locale, str) and 0 < len(locale) <= 32:
        out["locale"] = locale
    return out


def to_internal(
    obj: Mapping[str, Any],
    *,
    received_at: datetime | None = None,
    batch_context: Mapping[str, Any] | None = None,
    sent_at: Any = None,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Section 2's shape of a Segment item, plus `anonymous_id` (merged into the customer) and,
    for `alias`, type `alias`. `batch_context` and `sent_at` are a batch's top-level fields."""
    kind = obj.get("type")
    if kind not in SEGMENT_TYPES:
        raise IngestError(
            "'type' must be one of "
            + ", ".join(sorted(SEGMENT_TYPES))
            + (f", not {kind!r}" if kind else " (missing)")
        )
    context = {**(batch_context or {}), **_object(obj, "context")}
    if sent_at is not None and "sentAt" not in obj:
        obj = {**obj, "sentAt": sent_at}
    user = _id(obj, "userId")
    anonymous = _id(obj, "anonymousId")
    out: dict[str, Any] = {"timestamp": _timestamp(obj, received_at), "message_id": obj.get("messageId")}
    if kind == "alias":
        previous = _id(obj, "previousId")
        if user is None or previous is None:
            raise IngestError("an alias needs 'previousId' and 'userId'")
        out.update(type="alias", customer_id=user, anonymous_id=previous)
        return out
    if user is None and anonymous is None:
        raise IngestError("'userId' or 'anonymousId' is required: a non-empty string")
    out["customer_id"] = user if user is not None else anonymous
    if user is not None and anonymous is not None and anonymous != user:
        out["anonymous_id"] = anonymous
    if kind == "identify":
        traits = {**_object(context, "traits"), **_object(obj, "traits")}
        for key, value in _context_fields(context).items():
            traits.setdefault(key, value)
        out.update(type="identify", traits=traits)
    elif kind == "group":
        group = _id(obj, "groupId")
        if group is None:
            raise IngestError("a group call needs 'groupId'")
        out.update(type="identify", traits={"group_id": group, "group": _object(obj, "traits")})
    else:
        fields = _context_fields(context)
        if fields:  # the device's zone and language: they fill the customer's, never replace them
            out["context_traits"] = fields
    if kind == "track":
        name = obj.get("event")
        if isinstance(name, str) and aliases:
            name = aliases.get(name, name)
        out.update(type="track", event=name, properties=_object(obj, "properties"))
    elif kind in ("page", "screen"):
        props: dict[str, Any] = {}
        if kind == "page":
            props.update(_object(context, "page"))
        else:
            props.update(_object(context, "screen"))
        props.update(_object(obj, "properties"))
        for key in ("name", "category"):
            if obj.get(key) is not None:
                props[key] = obj[key]
        out.update(type="track", event=PAGE_VIEWED if kind == "page" else SCREEN_VIEWED, properties=props)
    return out
