"""The Segment-compatible tracking API (CONTRACT 9, 14): `POST /v1/batch`, `/v1/track`,
`/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`.

Answers as the SDKs read them: 200 `{"success": true}` once the batch is stored (a bad item is
skipped, logged and counted); 400 with `code` and `message` for a body that is not JSON, too
large or a gzip bomb; 401 for a wrong write key; 503 with `Retry-After` when the database
cannot take the batch, and then nothing of it is stored (one batch is one transaction).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import JSONResponse

from engine.http.events import ApiError, ingest_items
from engine.http.pages import BodyTooLarge, read_limited
from engine.http.service import Service
from engine.ingest.parse import ParsedEvent, no_json_constants, parse_item

#: the most a request may inflate to, in bytes (the contract asks for at least 4 MiB)
INFLATED_LIMIT = 16 * 1024 * 1024
#: the most a request may send on the wire, in bytes
WIRE_LIMIT = INFLATED_LIMIT
#: the most items one batch may carry
BATCH_LIMIT = 2500
#: the largest item, in bytes of JSON
ITEM_BYTES = 32 * 1024
ROUTES = ("track", "identify", "page", "screen", "group", "alias")


class TrackingError(Exception):
    """Answered as `{"code": …, "message": …}` with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        super().__init__(message)


def tracking_error_response(exc: TrackingError) -> JSONResponse:
    return JSONResponse(
        {"code": exc.code, "message": exc.message}, status_code=exc.status, headers=exc.headers
    )


def inflate(raw: bytes, encoding: str) -> bytes:
    """The body, gunzipped where it says so; refused as soon as it inflates past the cap."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(raw) > INFLATED_LIMIT:
            raise TrackingError(400, "body_too_large", f"the body is larger than {INFLATED_LIMIT:,} bytes")
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise TrackingError(400, "unsupported_encoding", f"Content-Encoding {encoding!r}: send gzip or none")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, INFLATED_LIMIT + 1)
    except zlib.error as exc:
        raise TrackingError(400, "bad_gzip", f"the body is not valid {encoding}: {exc}") from None
    if len(out) > INFLATED_LIMIT or inflater.unconsumed_tail:
        raise TrackingError(
            400,
            "body_too_large",
            f"the body inflates to more than {INFLATED_LIMIT:,} bytes: send smaller batches",
        )
    return out


def decode(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(body, parse_constant=no_json_constants)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
            raise TrackingError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TrackingError(400, "invalid_json", "the body must be a JSON object")
    return data


def _basic_user(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, _password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user


def given_keys(header: str, body: dict[str, Any]) -> list[str]:
    """The write keys a request offers: the Basic user name, the Bearer token, body `writeKey`."""
    keys: list[str] = []
    user = _basic_user(header)
    if user:
        keys.append(user)
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    if isinstance(body.get("writeKey"), str) and body["writeKey"]:
        keys.append(body["writeKey"])
    return keys


def _valid(service: Service, offered: list[str]) -> bool:
    def matches(accepted: list[str] | tuple[str, ...]) -> bool:
        return any(hmac.compare_digest(k.encode(), a.encode()) for k in offered for a in accepted)

    # the configured keys first: the generated API key is read from the database
    return bool(offered) and (
        matches(service.settings.write_keys) or any(service.accepts_api_key(k) for k in offered)
    )


def items_of(path_kind: str, body: dict[str, Any]) -> list[Any]:
    if path_kind == "batch":
        items = body.get("batch")
        if not isinstance(items, list):
            raise TrackingError(400, "invalid_batch", 'a batch is {"batch": [...]}: a list of calls')
        if len(items) > BATCH_LIMIT:
            raise TrackingError(
                400, "batch_too_large", f"{len(items):,} items: the limit is {BATCH_LIMIT:,} per batch"
            )
        return items
    return [{**body, "type": path_kind}]


def parse_batch(service: Service, kind: str, body: dict[str, Any]) -> tuple[list[ParsedEvent], list[str]]:
    """The good items, parsed, and the reasons of the bad ones."""
    items = items_of(kind, body)
    context = body.get("context") if kind == "batch" and isinstance(body.get("context"), dict) else None
    sent_at = body.get("sentAt")
    received = service.now()
    aliases = service.event_aliases()
    good: list[ParsedEvent] = []
    bad: list[str] = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            if len(orjson.dumps(item)) > ITEM_BYTES:
                bad.append(f"item {index}: larger than {ITEM_BYTES:,} bytes")
                continue
            if kind == "batch" and "writeKey" in item:
                item = {k: v for k, v in item.items() if k != "writeKey"}
        parsed = parse_item(
            item, received_at=received, aliases=aliases, batch_context=context, sent_at=sent_at
        )
        if isinstance(parsed, ParsedEvent):
            good.append(parsed)
        else:
            bad.append(f"item {index}: {parsed}")
    return good, bad


def router(service: Service) -> APIRouter:
    r = APIRouter()

    async def raw(request: Request) -> tuple[bytes, str, str]:
        try:
            data = await read_limited(request, WIRE_LIMIT)
        except BodyTooLarge:
            raise TrackingError(
                400, "body_too_large", f"the body is larger than {WIRE_LIMIT:,} bytes"
            ) from None
        return data, request.headers.get("content-encoding", ""), request.headers.get("authorization", "")

    def handle(kind: str, request: tuple[bytes, str, str]) -> JSONResponse:
        data, encoding, header = request
        body = decode(inflate(data, encoding))
        if not _valid(service, given_keys(header, body)):
            raise TrackingError(
                401,
                "invalid_write_key",
                "missing or wrong write key: send it as the Basic user name, as 'writeKey' in the body "
                "or as a Bearer token (JOURNEY_WRITE_KEYS or JOURNEY_API_KEY)",
                {"WWW-Authenticate": 'Basic realm="journey"'},
            )
        good, bad = parse_batch(service, kind, body)
        obs = service.observer
        for reason in bad:
            obs.log.warning("tracking item skipped", route=f"/v1/{kind}", reason=reason[:300])
        obs.events_rejected.inc(len(bad))
        if good:
            try:
                result = ingest_items(service, list(good), chunk_size=len(good) + 1)
            except ApiError as exc:
                if exc.status == 503:
                    raise TrackingError(
                        503, "database_unavailable", exc.message, {"Retry-After": "5"}
                    ) from None
                raise TrackingError(400, "refused", exc.message) from None
            obs.events_accepted.inc(result.stored + result.identified)
            obs.events_duplicates.inc(result.duplicates)
        return JSONResponse({"success": True})

    def route(kind: str) -> Any:
        def endpoint(request: tuple[bytes, str, str] = Depends(raw)) -> JSONResponse:
            """Runs in the thread pool: the event loop stays free while the database works."""
            return handle(kind, request)

        return endpoint

    for kind in ("batch", *ROUTES):
        r.add_api_route(f"/v1/{kind}", route(kind), methods=["POST"], name=f"tracking_{kind}")
    return r
