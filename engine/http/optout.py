"""Unsubscribe (RFC 8058 one-click, and a confirm page) and the preference centre.

A GET never changes anything: mail scanners and link previews fetch links on their own. A POST
to the signed unsubscribe link is enough, without cookies or login, as RFC 8058 requires.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from engine.consent import (
    EVERYTHING,
    customer_exists,
    opted_out,
    preferences,
    save_preferences,
    topics_of,
    unsubscribe,
)
from engine.http.pages import FORM_LIMIT, Pages, read_limited
from engine.http.service import Service

# ----------------------------------------------------------------------------------------- routes


async def _body(request: Request) -> bytes:
    return await read_limited(request, FORM_LIMIT)


def router(service: Service, pages: Pages) -> APIRouter:
    r = APIRouter()

    def preferences_token(customer_id: int) -> str:
        return service.signer().sign("preferences", {"c": customer_id})

    @r.get("/u/{token}")
    def unsubscribe_page(token: str) -> Response:
        """The confirm page: a button that POSTs; this GET changes nothing."""
        payload = service.verify("unsubscribe", token, ("c", "s", "r"))
        if payload is None:
            return pages.invalid_link()
        with service.engine.connect() as conn:
            if not customer_exists(conn, payload["c"]):
                return pages.invalid_link()
            done = EVERYTHING in opted_out(conn, payload["c"])
        return pages.render(
            "unsubscribe.html", token=token, done=done, preferences=preferences_token(payload["c"])
        )

    @r.post("/u/{token}")
    def unsubscribe_post(token: str, body: Annotated[bytes, Depends(_body)]) -> Response:
        """RFC 8058 one-click (`List-Unsubscribe=One-Click`) or the confirm page's button."""
        payload = service.verify("unsubscribe", token, ("c", "s", "r"))
        if payload is None:
            return pages.invalid_link()
        if service.is_preview(payload):
            return pages.preview()
        one_click = b"List-Unsubscribe" in body and b"One-Click" in body
        result = unsubscribe(
            service.engine,
            payload["c"],
            now=service.now(),
            source="one-click" if one_click else "page",
            rule=str(payload["r"]),
            send_id=payload["s"],
        )
        if result is None:
            return pages.invalid_link()
        return pages.render(
            "unsubscribe.html", token=token, done=True, preferences=preferences_token(payload["c"])
        )

    @r.get("/preferences/{token}")
    def preferences_page(token: str) -> Response:
        payload = service.verify("preferences", token, ("c",))
        if payload is None:
            return pages.invalid_link()
        state = preferences(service.engine, payload["c"], topics_of(service.ruleset()))
        if state is None:
            return pages.invalid_link()
        email, topics = state
        return pages.render("preferences.html", token=token, email=email, topics=topics, saved=False)

    @r.post("/preferences/{token}")
    def preferences_post(token: str, body: Annotated[bytes, Depends(_body)]) -> Response:
        payload = service.verify("preferences", token, ("c",))
        if payload is None:
            return pages.invalid_link()
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        topics = topics_of(service.ruleset())
        saved = save_preferences(
            service.engine,
            payload["c"],
            email="email" in form,
            wanted=set(form.get("topic", [])),
            topics=topics,
            now=service.now(),
        )
        state = preferences(service.engine, payload["c"], topics) if saved else None
        if state is None:
            return pages.invalid_link()
        email, listed = state
        return pages.render("preferences.html", token=token, email=email, topics=listed, saved=True)

    return r
