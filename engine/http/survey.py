"""The NPS survey: a score link in the email records `survey_answered` once per send; a second
click changes the score of that same event, and an optional comment is added to it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends
from sqlalchemy import Engine, or_, select, update
from starlette.requests import Request
from starlette.responses import Response

from engine.db import write_tx
from engine.http.pages import FORM_LIMIT, Pages, read_limited
from engine.http.service import Service
from engine.ingest import InternalEvent, record_events
from engine.schema import customers, event_summary, events

#: the longest comment kept, in characters
COMMENT_LIMIT = 2000
SCORES = range(0, 11)


def answer(
    engine: Engine,
    customer_id: int,
    *,
    send_id: int,
    survey: str,
    now: datetime,
    score: int | None = None,
    comment: str | None = None,
) -> dict[str, Any] | None:
    """Record or amend the answer to one survey email; returns the answer's properties, or None
    when there is nothing to amend and no score to start with (or no such customer)."""
    message_id = f"survey_answered:{send_id}"
    changes: dict[str, Any] = {}
    if score is not None:
        changes["score"] = score
    if comment is not None:
        changes["comment"] = comment
    with write_tx(engine) as conn:
        if conn.execute(select(customers.c.id).where(customers.c.id == customer_id)).first() is None:
            return None
        for _ in range(2):
            row = conn.execute(
                select(events.c.id, events.c.customer_id, events.c.properties).where(
                    events.c.message_id == message_id
                )
            ).first()
            if row is not None:
                break
            if score is None:
                return None
            props = {"survey": survey, "score": score, "send_id": send_id, **changes}
            event = InternalEvent(customer_id, "survey_answered", now, props, message_id)
            if record_events(conn, [event]):
                return props
            # another request stored it first: amend theirs
        if row is None or row.customer_id != customer_id:
            return None
        old = row.properties or {}
        props = {**old, **changes}
        if "score" in changes and changes["score"] != old.get("score"):
            # A changed score is a new answer: stamped now, the next tick sees the event again (same
            # id, so a rule it already triggered is not entered twice) and the stage follows it.
            conn.execute(update(events).where(events.c.id == row.id).values(properties=props, ts=now))
            summary = event_summary.c
            conn.execute(
                update(event_summary)
                .where(
                    summary.customer_id == customer_id,
                    summary.name == "survey_answered",
                    or_(summary.last_event_id == row.id, summary.last_at <= now),
                )
                .values(last_properties=props, last_event_id=row.id, last_at=now)
            )
            return props
        conn.execute(update(events).where(events.c.id == row.id).values(properties=props))
        conn.execute(
            update(event_summary)
            .where(
                event_summary.c.customer_id == customer_id,
                event_summary.c.name == "survey_answered",
                event_summary.c.last_event_id == row.id,
            )
            .values(last_properties=props)
        )
        return props


def parse_score(raw: str | None) -> int | None:
    if raw is None or not raw.strip().isdigit():
        return None
    value = int(raw.strip())
    return value if value in SCORES else None


async def _body(request: Request) -> bytes:
    return await read_limited(request, FORM_LIMIT)


def router(service: Service, pages: Pages) -> APIRouter:
    r = APIRouter()
    keys = ("c", "s", "v")

    def bad_score() -> Response:
        return pages.problem(
            400, "Please pick a score", "A score is a whole number from 0 to 10: pick one from the email."
        )

    @r.get("/s/{token}")
    def survey_click(token: str, score: str | None = None) -> Response:
        payload = service.verify("survey", token, keys)
        if payload is None:
            return pages.invalid_link()
        value = parse_score(score)
        if value is None:
            return bad_score()
        if service.is_preview(payload):
            return pages.preview()
        props = answer(
            service.engine,
            payload["c"],
            send_id=payload["s"],
            survey=str(payload["v"]),
            score=value,
            now=service.now(),
        )
        if props is None:
            return pages.invalid_link()
        return pages.render(
            "survey.html",
            token=token,
            score=value,
            scores=list(SCORES),
            comment=str(props.get("comment", "")),
            commented=False,
            limit=COMMENT_LIMIT,
        )

    @r.post("/s/{token}")
    def survey_comment(token: str, body: Annotated[bytes, Depends(_body)]) -> Response:
        payload = service.verify("survey", token, keys)
        if payload is None:
            return pages.invalid_link()
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        comment = (form.get("comment") or [""])[0].strip()
        score_field = form["score"][0] if form.get("score") else None
        score = parse_score(score_field)
        if score_field is not None and score is None:
            return bad_score()
        if len(comment) > COMMENT_LIMIT:
            return pages.problem(
                400,
                "That comment is too long",
                f"Please keep it under {COMMENT_LIMIT:,} characters and send it again.",
            )
        if service.is_preview(payload):
            return pages.preview()
        props = answer(
            service.engine,
            payload["c"],
            send_id=payload["s"],
            survey=str(payload["v"]),
            score=score,
            comment=comment or None,
            now=service.now(),
        )
        if props is None:
            return bad_score() if score is None else pages.invalid_link()
        shown = props.get("score")
        return pages.render(
            "survey.html",
            token=token,
            score=shown if isinstance(shown, int) else None,
            scores=list(SCORES),
            comment=str(props.get("comment", "")),
            commented=bool(comment),
            limit=COMMENT_LIMIT,
        )

    return r
