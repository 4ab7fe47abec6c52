"""The NPS survey: a score link in the email records `survey_answered` once per send; a second
click changes the score of that same event, and an optional comment is added to it."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from engine.http.pages import FORM_LIMIT, Pages, read_limited
from engine.http.service import Service
from engine.ingest.links import record_survey_answer

#: the longest comment kept, in characters
COMMENT_LIMIT = 2000
SCORES = range(0, 11)


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
        props = record_survey_answer(
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
        props = record_survey_answer(
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
