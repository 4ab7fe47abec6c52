"""Parsing events: one reader for every source (a JSON-lines file, an HTTP body, a simulation).

`read_lines` turns a stream of JSON lines into (line number, ParsedEvent or IngestError); `parse_event`
checks one decoded object. A bad item becomes an IngestError with a reason a person can act on.
"""

from __future__ import annotations

import json
import math
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
#: the longest value each string trait may hold: the database's column, the same on both databases
TRAIT_LENGTHS = {
    "email": 320,
    "phone": 64,
    "timezone": 64,
    "locale": 32,
    "first_name": 255,
    "referral_code": 32,
    "referred_by": 32,
}
#: how deep traits and properties may nest (objects in lists in objects …)
MAX_DEPTH = 32


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

    `check_nul=False` skips the walk through every value (NUL characters, lone surrogates, depth,
    numbers JSON cannot carry), for a caller that knows the JSON text holds none of them: no
    `\\u` escape (the only way a NUL or a lone surrogate reaches a decoded string), shallow, and
    decoded by orjson (which refuses 1e400). `received_at` is when a Segment item without
    `timestamp` arrived; `aliases` maps an event's other names to its catalogue name;
    `batch_context` and `sent_at` are a Segment batch's top-level fields.
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
    if check_nul and (problem := _bad_text(cid)):
        raise IngestError(f"'customer_id' {problem}")
    ts = parse_timestamp(obj.get("timestamp"))
    name = obj.get("event")
    if kind == "track":
        if not isinstance(name, str) or not name.strip():
            raise IngestError("a track event needs 'event': the event name, like 'order_placed'")
        if len(name) > 128:
            raise IngestError("'event' is longer than 128 characters")
        if check_nul and (problem := _bad_text(name)):
            raise IngestError(f"'event' {problem}")
        if aliases:
            name = aliases.get(name, name)
    else:
        name = None
    mid = obj.get("message_id")
    if mid is not None and (not isinstance(mid, str) or not mid or len(mid) > 255):
        raise IngestError("'message_id' must be a non-empty string of at most 255 characters")
    if check_nul and mid is not None and (problem := _bad_text(mid)):
        raise IngestError(f"'message_id' {problem}")
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
    if check_nul:
        _check_values("traits", traits, 1)
        _check_values("properties", props, 1)
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
    for key, longest in TRAIT_LENGTHS.items():
        value = traits.get(key)
        if value is not None and len(value) > longest:
            raise IngestError(f"trait '{key}' is longer than {longest} characters")
    email = traits.get("email")
    if email is not None:
        problem = check_address(email)
        if problem is not None:
            raise IngestError(f"trait 'email' {email[:100]!r} is not a valid email address: it {problem}")


def _bad_text(text: str) -> str | None:
    """What makes a string unstorable (a NUL, a lone surrogate), or None."""
    if text.isascii():
        return "holds a NUL character (\\u0000), which databases cannot store" if "\x00" in text else None
    if "\x00" in text:
        return "holds a NUL character (\\u0000), which databases cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not text"
    return None


def _check_values(where: str, value: Any, depth: int) -> None:
    """Every value inside traits or properties: storable text, finite numbers, bounded depth."""
    if depth > MAX_DEPTH:
        raise IngestError(f"{where} nest deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            label = f"{where}.{key}" if len(where) < 80 else where
            if isinstance(key, str) and (problem := _bad_text(key)):
                raise IngestError(f"a key in {where} {problem}")
            _check_values(label, item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_values(where, item, depth + 1)
    elif isinstance(value, str):
        if problem := _bad_text(value):
            raise IngestError(f"'{where}' {problem}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise IngestError(f"'{where}' is {value}: not a number JSON can carry")


def parse_item(
    obj: object,
    *,
    check_nul: bool = True,
    received_at: datetime | None = None,
    aliases: Mapping[str, str] | None = None,
    batch_context: Mapping[str, Any] | None = None,
    sent_at: Any = None,
) -> ParsedEvent | IngestError:
    """One item, parsed (an item parsed already passes through), or the reason it is bad. This is
    an item's failure boundary: an exception of any kind becomes its reason."""
    if type(obj) is ParsedEvent:
        return obj
    if isinstance(obj, IngestError):  # an item that could not even be decoded (see split_items)
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
    except RecursionError:
        return IngestError(f"nested deeper than {MAX_DEPTH} levels")
    except Exception as exc:  # a value no check foresaw: that item fails, the others go on
        return IngestError(f"cannot be read: {type(exc).__name__}: {str(exc)[:200]}")


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


def split_items(text: str) -> list[str]:
    """The texts of a JSON array's items, found by brackets and strings alone, without decoding
    them: a body too deep to decode as a whole is decoded item by item. Not an array: the text."""
    body = text.strip()
    if not body.startswith("["):
        return [body]
    items: list[str] = []
    depth, start, in_string, escaped = 0, 1, False, False
    for i, char in enumerate(body):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                items.append(body[start:i])
                break
        elif char == "," and depth == 1:
            items.append(body[start:i])
            start = i + 1
    return [item for item in items if item.strip()]


def finite_float(text: str) -> float:
    """`parse_float` for json.loads: 1e400 is refused, not read as infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is too large for JSON")
    return value


def loads(line: str) -> Any:
    """One JSON text, decoded with orjson, a few times faster than the standard library. What
    orjson refuses, and an event where it rounded a number (an integer beyond 64 bits), is decoded
    by the standard library, which keeps such numbers exact and words the error for a bad line.
    NaN and Infinity are refused: they are not JSON, and a JSON column cannot store them."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line, parse_constant=no_json_constants, parse_float=finite_float)
    if type(obj) is dict and (
        _rounded(obj.get("properties"))
        or _rounded(obj.get("traits"))
        or _rounded(obj.get("context_traits"))
        or type(obj.get("customer_id")) is float
    ):
        return json.loads(line, parse_constant=no_json_constants, parse_float=finite_float)
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
        if not line.isascii() and (problem := _not_utf8(line)):
            yield number, IngestError(problem)
            continue
        try:
            obj = loads(line)
        except json.JSONDecodeError as exc:
            yield number, IngestError(f"not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        except RecursionError:
            yield number, IngestError(f"not valid JSON: nested deeper than {MAX_DEPTH} levels")
            continue
        except ValueError as exc:
            yield number, IngestError(f"not valid JSON: {exc}")
            continue
        # JSON text can carry a NUL or a lone surrogate only as a \u escape, and nest deep only
        # with many brackets: without them, skip the walk through every value
        deep = "\\u" in line or line.count("[") + line.count("{") > MAX_DEPTH
        yield number, parse_item(obj, check_nul=deep, received_at=received_at, aliases=aliases)


def _not_utf8(line: str) -> str | None:
    """A line read with errors='surrogateescape' holds each byte that is not UTF-8 as a surrogate."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = ord(line[exc.start])
        byte = f"byte 0x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"character U+{char:04X}"
        return f"not UTF-8: {byte} at column {exc.start + 1}"
    return None
