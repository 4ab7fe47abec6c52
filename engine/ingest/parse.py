"""Parsing events: one reader for every source (a JSON-lines file, an HTTP body, a simulation).

`read_lines` turns a stream of JSON lines into (line number, ParsedEvent or IngestError); `parse_event`
checks one decoded object. A bad item becomes an IngestError with a reason a person can act on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from engine.addresses import check_address
from engine.errors import IngestError
from engine.ingest.segment import is_segment, to_internal
from engine.ingest.times import parse_timestamp

KNOWN_TRAITS = ("email", "phone", "timezone", "locale", "first_name")


#: not frozen: ingest makes one per line, and a frozen dataclass sets each field the slow way
@dataclass(slots=True)
class ParsedEvent:
    type: str
    customer_id: str
    timestamp: datetime
    event: str | None
    message_id: str | None
    traits: dict[str, Any]
    properties: dict[str, Any]
    #: a profile merged into `customer_id` by this call (Segment's `anonymousId` beside a
    #: `userId`, or an alias's `previousId`)
    anonymous_id: str | None = None


def parse_event(
    obj: object,
    *,
    check_nul: bool = True,
    received_at: datetime | None = None,
    aliases: Mapping[str, str] | None = None,
    batch_context: Mapping[str, Any] | None = None,
    sent_at: Any = None,
) -> ParsedEvent:
    """Validate one decoded event, in section 2's shape or Segment's; raise IngestError with a
    reason a person can act on.

    `check_nul=False` skips the search for NUL characters, for a caller that knows the JSON text
    holds no `\\u0000` escape (the only way a NUL can reach a decoded value). `received_at` is
    when a Segment item without `timestamp` arrived; `aliases` maps an event's other names to its
    catalogue name; `batch_context` and `sent_at` are a Segment batch's top-level fields.
    """
    if not isinstance(obj, dict):
        raise IngestError(f"an event is a JSON object, not {type(obj).__name__}")
    anonymous_id: str | None = None
    if is_segment(obj):
        obj = to_internal(
            obj, received_at=received_at, batch_context=batch_context, sent_at=sent_at, aliases=aliases
        )
        anonymous_id = obj.get("anonymous_id")
        if obj["type"] == "alias":
            return ParsedEvent(
                type="alias",
                customer_id=obj["customer_id"],
                timestamp=parse_timestamp(obj["timestamp"]),
                event=None,
                message_id=None,
                traits={},
                properties={},
                anonymous_id=anonymous_id,
            )
    kind = obj.get("type")
    if kind not in ("identify", "track"):
        raise IngestError(
            "'type' must be 'identify' or 'track'" + (f", not {kind!r}" if kind else " (missing)")
        )
    cid = obj.get("customer_id")
    if type(cid) is not str:
        if isinstance(cid, bool) or not isinstance(cid, str | int):
            raise IngestError("'customer_id' is required: a non-empty string")
        cid = str(cid)
    if not cid:
        raise IngestError("'customer_id' is required: a non-empty string")
    if len(cid) > 255:
        raise IngestError("'customer_id' is longer than 255 characters")
    ts = parse_timestamp(obj.get("timestamp"))
    name = obj.get("event")
    if kind == "track":
        if not isinstance(name, str) or not name.strip():
            raise IngestError("a track event needs 'event': the event name, like 'order_placed'")
        if len(name) > 128:
            raise IngestError("'event' is longer than 128 characters")
        if aliases:
            name = aliases.get(name, name)
    else:
        name = None
    mid = obj.get("message_id")
    if mid is not None and (not isinstance(mid, str) or not mid or len(mid) > 255):
        raise IngestError("'message_id' must be a non-empty string of at most 255 characters")
    traits = obj.get("traits", {}) if kind == "identify" else obj.get("context_traits", {})
    props = obj.get("properties", {})
    if traits is None:
        traits = {}
    if props is None:
        props = {}
    if not isinstance(traits, dict):
        raise IngestError("'traits' must be a JSON object")
    if not isinstance(props, dict):
        raise IngestError("'properties' must be a JSON object")
    if check_nul and "\\u0000" in json.dumps(
        [traits, props]
    ):  # JSON escapes NUL; PostgreSQL refuses it in text
        raise IngestError("a trait or property holds a NUL character (\\u0000), which databases cannot store")
    if kind == "identify" and obj.get("properties"):
        raise IngestError("an identify carries 'traits', not 'properties'")
    if traits:
        _check_traits(traits)
    return ParsedEvent(
        type=kind,
        customer_id=cid,
        timestamp=ts,
        event=name,
        message_id=mid,
        traits=dict(traits),
        properties=dict(props),
        anonymous_id=anonymous_id,
    )


def _check_traits(traits: dict[str, Any]) -> None:
    tz = traits.get("timezone")
    if tz is not None:
        if not isinstance(tz, str):
            raise IngestError("trait 'timezone' must be a name like 'Europe/Berlin'")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise IngestError(
                f"trait 'timezone' {tz!r} is not a known time zone (like 'Europe/Berlin')"
            ) from None
    for key in ("email", "phone", "locale", "first_name", "referral_code", "referred_by"):
        value = traits.get(key)
        if value is not None and not isinstance(value, str):
            raise IngestError(f"trait '{key}' must be a string")
    email = traits.get("email")
    if email is not None:
        problem = check_address(email)
        if problem is not None:
            raise IngestError(f"trait 'email' {email[:100]!r} is not a valid email address: it {problem}")


def parse_item(
    obj: object,
    *,
    check_nul: bool = True,
    received_at: datetime | None = None,
    aliases: Mapping[str, str] | None = None,
    batch_context: Mapping[str, Any] | None = None,
    sent_at: Any = None,
) -> ParsedEvent | IngestError:
    """One item, parsed (an item parsed already passes through), or the reason it is bad."""
    if type(obj) is ParsedEvent:
        return obj
    try:
        return parse_event(
            obj,
            check_nul=check_nul,
            received_at=received_at,
            aliases=aliases,
            batch_context=batch_context,
            sent_at=sent_at,
        )
    except IngestError as exc:
        return exc


#: orjson decodes an integer beyond 64 bits as a float: from this size on, decode exactly
_HUGE = 2.0**63


def _rounded(value: Any) -> bool:
    """Whether a decoded value holds a float as large as a 64-bit integer: what orjson makes of
    an integer literal beyond 64 bits (a float literal that large decodes the same either way)."""
    if type(value) is dict:
        value = value.values()
    elif type(value) is not list:
        return type(value) is float and not -_HUGE < value < _HUGE
    for v in value:
        kind = type(v)
        if kind is float:
            if not -_HUGE < v < _HUGE:
                return True
        elif (kind is dict or kind is list) and _rounded(v):
            return True
    return False


def no_json_constants(name: str) -> Any:
    """`parse_constant` for json.loads: NaN and Infinity are not JSON, and a JSON column cannot
    store them."""
    raise ValueError(f"{name} is not a JSON number")


def loads(line: str) -> Any:
    """One JSON text, decoded with orjson, a few times faster than the standard library. What
    orjson refuses, and an event where it rounded a number (an integer beyond 64 bits), is decoded
    by the standard library, which keeps such numbers exact and words the error for a bad line.
    NaN and Infinity are refused: they are not JSON, and a JSON column cannot store them."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line, parse_constant=no_json_constants)
    if type(obj) is dict and (
        _rounded(obj.get("properties"))
        or _rounded(obj.get("traits"))
        or _rounded(obj.get("context_traits"))
        or type(obj.get("customer_id")) is float
    ):
        return json.loads(line, parse_constant=no_json_constants)
    return obj


def read_lines(
    stream: TextIO,
    progress: Callable[[int], None] | None = None,
    *,
    received_at: datetime | None = None,
    aliases: Mapping[str, str] | None = None,
) -> Iterator[tuple[int, ParsedEvent | IngestError]]:
    """Each line of a JSON-lines stream, in section 2's shape or Segment's, as (line number,
    parsed event or the reason it is bad); blank lines are skipped. `progress` gets each line's
    size in bytes."""
    for number, line in enumerate(stream, start=1):
        if progress is not None:
            progress(len(line.encode()))
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except json.JSONDecodeError as exc:
            yield number, IngestError(f"not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        except ValueError as exc:
            yield number, IngestError(f"not valid JSON: {exc}")
            continue
        # JSON text can carry a NUL only as the escape \u0000: without one, skip the search
        yield number, parse_item(obj, check_nul="\\u0000" in line, received_at=received_at, aliases=aliases)
