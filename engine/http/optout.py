"""Unsubscribe (RFC 8058 one-click, and a confirm page) and the preference centre.

A GET never changes anything: mail scanners and link previews fetch links on their own. A POST
to the signed unsubscribe link is enough, without cookies or login, as RFC 8058 requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends
from sqlalchemy import Connection, Engine, delete, select
from starlette.requests import Request
from starlette.responses import Response

from engine.db import insert_ignore, write_tx
from engine.http.pages import FORM_LIMIT, Pages, read_limited
from engine.http.service import Service
from engine.ingest import InternalEvent, record_events
from engine.rules.loader import RuleSet
from engine.schema import customers, unsubscribes

CHANNEL = "email"
EVERYTHING = "*"


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    subscribed: bool


def _unsubscribed_event(
    customer_id: int, topic: str, now: datetime, rule: str | None = None, send_id: int | None = None
) -> InternalEvent:
    props: dict[str, Any] = {"channel": CHANNEL, "topic": topic}
    if rule is not None:
        props["rule"] = rule
    if send_id is not None:
        props["send_id"] = send_id
    return InternalEvent(
        customer_id=customer_id,
        name="unsubscribed",
        ts=now,
        properties=props,
        # one event per opt-out: a customer who comes back and leaves again is counted again
        message_id=f"unsubscribed:{customer_id}:{CHANNEL}:{topic}:{now.isoformat()}",
    )


def _opt_out(conn: Connection, customer_id: int, topic: str, now: datetime, source: str) -> bool:
    """Insert the opt-out row unless it exists; True when it was new."""
    stmt = insert_ignore(conn, unsubscribes, ["customer_id", "channel", "topic"]).values(
        customer_id=customer_id, channel=CHANNEL, topic=topic, at=now, source=source
    )
    return bool(conn.execute(stmt).rowcount)


def customer_exists(conn: Connection, customer_id: int) -> bool:
    return conn.execute(select(customers.c.id).where(customers.c.id == customer_id)).first() is not None


def unsubscribe(
    engine: Engine, customer_id: int, *, now: datetime, source: str, rule: str | None, send_id: int | None
) -> bool | None:
    """Opt the customer out of all marketing email. True: done now; False: already was; None: no
    such customer. A repeated click records one `unsubscribed` event."""
    with write_tx(engine) as conn:
        if not customer_exists(conn, customer_id):
            return None
        new = _opt_out(conn, customer_id, EVERYTHING, now, source)
        if new:  # a repeated click changes nothing and records nothing
            record_events(conn, [_unsubscribed_event(customer_id, EVERYTHING, now, rule, send_id)])
        return new


def topics_of(ruleset: RuleSet) -> dict[str, str]:
    """Topic -> description, for every enabled marketing rule (a topic defaults to the rule id)."""
    found: dict[str, list[str]] = {}
    for rule in ruleset.enabled:
        if rule.transactional:
            continue
        texts = found.setdefault(rule.topic or rule.id, [])
        if rule.description and rule.description not in texts:
            texts.append(rule.description)
    return {name: " ".join(texts) for name, texts in found.items()}


def _opted_out(conn: Connection, customer_id: int) -> set[str]:
    rows = conn.execute(
        select(unsubscribes.c.topic).where(
            unsubscribes.c.customer_id == customer_id, unsubscribes.c.channel.in_([CHANNEL, "*"])
        )
    )
    return {t for (t,) in rows}


def preferences(engine: Engine, customer_id: int, topics: dict[str, str]) -> tuple[bool, list[Topic]] | None:
    """(email on, topics) for the preference page; None when there is no such customer."""
    with engine.connect() as conn:
        if not customer_exists(conn, customer_id):
            return None
        off = _opted_out(conn, customer_id)
    return EVERYTHING not in off, [Topic(n, d, n not in off) for n, d in topics.items()]


def save_preferences(
    engine: Engine,
    customer_id: int,
    *,
    email: bool,
    wanted: set[str],
    topics: dict[str, str],
    now: datetime,
) -> bool:
    """Apply the page's choices: email off adds the '*' opt-out (topic choices are kept for a
    later return); email on removes it and sets each known topic as ticked. False: no customer."""
    with write_tx(engine) as conn:
        if not customer_exists(conn, customer_id):
            return False
        events: list[InternalEvent] = []
        if not email:
            if _opt_out(conn, customer_id, EVERYTHING, now, "preferences"):
                events.append(_unsubscribed_event(customer_id, EVERYTHING, now))
        else:
            conn.execute(
                delete(unsubscribes).where(
                    unsubscribes.c.customer_id == customer_id,
                    unsubscribes.c.channel == CHANNEL,
                    unsubscribes.c.topic == EVERYTHING,
                )
            )
            for name in topics:
                if name in wanted:
                    conn.execute(
                        delete(unsubscribes).where(
                            unsubscribes.c.customer_id == customer_id,
                            unsubscribes.c.channel == CHANNEL,
                            unsubscribes.c.topic == name,
                        )
                    )
                elif _opt_out(conn, customer_id, name, now, "preferences"):
                    events.append(_unsubscribed_event(customer_id, name, now))
        record_events(conn, events)
    return True


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
            done = EVERYTHING in _opted_out(conn, payload["c"])
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
