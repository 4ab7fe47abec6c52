"""Simulated readers for the demo: some open the emails they were sent, fewer click, a few
unsubscribe, as the tracking links would record it. Deterministic by seed and send, so the same
demo gives the same report. Never used outside `journey demo`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from engine.db import write_tx
from engine.db.schema import sends
from engine.events import InternalEvent, record_events

#: share of sent emails opened, clicked (a click is also an open) and followed by an unsubscribe
OPEN_RATE = 0.42
CLICK_RATE = 0.09
UNSUBSCRIBE_RATE = 0.004


@dataclass
class Engagement:
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0


def _draw(seed: int, send_id: int) -> tuple[float, float]:
    digest = hashlib.blake2b(f"{seed}:{send_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "big") / 2**32, int.from_bytes(digest[4:], "big") / 2**32


def engage(engine: Engine, *, since: datetime, now: datetime, step: timedelta, seed: int) -> Engagement:
    """Readers' answers to the emails sent in (since, now], stamped within the next `step`."""
    from engine.consent import unsubscribe  # the same path as a click on the link

    out = Engagement()
    with engine.connect() as conn:
        sent = conn.execute(
            select(sends.c.id, sends.c.customer_id, sends.c.rule_id, sends.c.transactional).where(
                sends.c.status == "sent",
                sends.c.channel == "email",
                sends.c.sent_at > since,
                sends.c.sent_at <= now,
            )
        ).all()
    recorded: list[InternalEvent] = []
    leaving: list[tuple[int, int, str, datetime]] = []
    for send_id, customer_id, rule_id, transactional in sent:
        u, later = _draw(seed, send_id)
        at = now + step * (0.05 + 0.9 * later)
        props = {"send_id": send_id, "rule": rule_id}
        if u < OPEN_RATE:
            recorded.append(InternalEvent(customer_id, "email_opened", at, props, f"email_opened:{send_id}"))
            out.opened += 1
        if u < CLICK_RATE:
            url = "https://shop.example.com/"
            recorded.append(
                InternalEvent(
                    customer_id, "email_clicked", at, {**props, "url": url}, f"email_clicked:{send_id}"
                )
            )
            out.clicked += 1
        if u > 1 - UNSUBSCRIBE_RATE and not transactional:
            leaving.append((customer_id, send_id, rule_id, at))
    with write_tx(engine) as conn:
        record_events(conn, recorded)
    for customer_id, send_id, rule_id, at in leaving:
        if unsubscribe(engine, customer_id, now=at, source="demo", rule=rule_id, send_id=send_id):
            out.unsubscribed += 1
    return out
