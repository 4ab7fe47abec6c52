"""`POST /v1/events`: one event object or a list of them, in the shape of CONTRACT section 2.

Answers 202 with what was accepted, what was already stored (same message_id) and each rejected
item's index and reason; the good items of a batch are stored even when some are bad.
"""

from __future__ import annotations

import json
import random
import time
from contextlib import nullcontext
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.requests import Request
from starlette.responses import JSONResponse

from engine.db import is_retryable
from engine.errors import IngestError
from engine.http.pages import read_limited
from engine.http.service import Service
from engine.ingest.parse import MAX_DEPTH, no_json_constants, split_items
from engine.ingest.store import IngestResult

#: the largest body accepted, in bytes
BODY_LIMIT = 1024 * 1024
#: the most events one request may carry
ITEM_LIMIT = 1000
#: attempts at a batch that hit a deadlock or serialization failure
RETRIES = 4


class ApiError(Exception):
    """Answered as JSON `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.headers = headers or {}
        super().__init__(message)


def api_error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


def decode(body: bytes) -> list[Any]:
    """The body as a list of items; ApiError(400) for JSON that does not parse."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not UTF-8: byte {exc.start} is invalid") from None
    if not text.strip():
        raise ApiError(400, "the body is empty: send one event object or a list of them, as JSON")
    try:
        data = json.loads(text, parse_constant=no_json_constants)
    except RecursionError:
        # too deep to decode as a whole: decode the list item by item, so one item fails alone
        data = [_decode_item(part) for part in split_items(text)]
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise ApiError(400, f"not valid JSON: {exc}") from None
    items = data if isinstance(data, list) else [data]
    if len(items) > ITEM_LIMIT:
        raise ApiError(
            413,
            f"{len(items):,} events in one request: the limit is {ITEM_LIMIT:,} events "
            f"(and {BODY_LIMIT:,} bytes); send them in several requests",
        )
    return items


def _decode_item(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=no_json_constants)
    except RecursionError:
        return IngestError(f"nested deeper than {MAX_DEPTH} levels")
    except ValueError as exc:
        return IngestError(f"not valid JSON: {exc}")


def ingest_items(service: Service, items: list[Any], *, chunk_size: int = ITEM_LIMIT) -> IngestResult:
    """One request is one transaction (at most ITEM_LIMIT items), so a rolled-back attempt can
    simply be repeated; concurrent batches touching the same customers may deadlock on PostgreSQL."""
    from engine.ingest.writer import ingest_events

    # SQLite has one writer at a time: waiting on a lock here is quicker than its busy-retry loop
    serial = service.write_lock if service.engine.dialect.name == "sqlite" else nullcontext()
    for attempt in range(1, RETRIES + 1):
        try:
            with serial:
                return ingest_events(service.engine, items, received_at=service.now(), chunk_size=chunk_size)
        except DBAPIError as exc:
            reason = str(exc.orig or exc).splitlines()[0][:300]
            if is_retryable(exc) and attempt < RETRIES:
                service.observer.log.warning("ingest retried", error=reason, attempt=attempt)
                time.sleep(random.uniform(0.005, 0.05) * attempt)
                continue
            if isinstance(exc, DataError):
                raise ApiError(
                    422, f"the database refused a value, so nothing of this request was stored: {reason}"
                ) from None
            if isinstance(exc, OperationalError):
                service.observer.log.error("database error", error=reason)
                raise ApiError(
                    503, "the database is not answering: retry later", {"Retry-After": "5"}
                ) from None
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def router(service: Service) -> APIRouter:
    r = APIRouter()

    def authorize(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not service.accepts_api_key(given.strip()):
            raise ApiError(
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                "with the key in JOURNEY_API_KEY (or the one `journey serve` printed on first run)",
                {"WWW-Authenticate": 'Bearer realm="journey"'},
            )

    async def body(request: Request) -> bytes:
        return await read_limited(request, BODY_LIMIT)

    @r.post("/v1/events", status_code=202)
    def post_events(_auth: None = Depends(authorize), raw: bytes = Depends(body)) -> JSONResponse:
        """Runs in the thread pool: the event loop stays free while the database works."""
        items = decode(raw)
        result = ingest_items(service, items)
        accepted = len(items) - len(result.rejected) - result.duplicates
        obs = service.observer
        obs.events_accepted.inc(accepted)
        obs.events_duplicates.inc(result.duplicates)
        obs.events_rejected.inc(len(result.rejected))
        return JSONResponse(
            {
                "accepted": accepted,
                "duplicates": result.duplicates,
                "rejected": [{"index": i, "reason": reason} for i, reason in result.rejected],
            },
            status_code=202,
        )

    return r
