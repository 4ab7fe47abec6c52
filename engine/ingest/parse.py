"""Parsing events: one reader for every source (a JSON-lines file, an HTTP body, a simulation).

`read_lines` turns a stream of JSON lines into (line number, ParsedEvent or IngestError); `parse_event`
checks one decoded object. A bad item becomes an IngestError with a reason a person can act on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from engine.addresses import check_address
from engine.errors import IngestError

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


def parse_event(obj: object, *, check_nul: bool = True) -> ParsedEvent:
    """Validate one decoded event; raise IngestError with a reason a person can act on.

    `check_nul=False` skips the search for NUL characters, for a caller that knows the JSON text
    holds no `\\u0000` escape (the only way a NUL can reach a decoded value).
    """
    if not isinstance(obj, dict):
        raise IngestError(f"an event is a JSON object, not {type(obj).__name__}")
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


def parse_item(obj: object, *, check_nul: bool = True) -> ParsedEvent | IngestError:
    """One item, parsed (an item parsed already passes through), or the reason it is bad."""
    if type(obj) is ParsedEvent:
        return obj
    try:
        return parse_event(obj, check_nul=check_nul)
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
    stream: TextIO, progress: Callable[[int], None] | None = None
) -> Iterator[tuple[int, ParsedEvent | IngestError]]:
    """Each line of a JSON-lines stream as (line number, parsed event or the reason it is bad);
    blank lines are skipped. `progress` gets each line's size in bytes."""
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
        yield number, parse_item(obj, check_nul="\\u0000" in line)
