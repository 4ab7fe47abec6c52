"""Events that arrive through the links of an email or a shared referral link: an NPS survey's
answer (amended by a second click or a comment), an open, a click, a referral click. The HTTP
routes verify the signed link and call these."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, select, update

from engine.db import write_tx
from engine.db.schema import customers, event_summary, events
from engine.events import InternalEvent, record_events

#: referral codes are short; anything longer is not one
CODE_LIMIT = 64
#: a code holds no control character (a NUL never reaches the database)
CODE_CHARS = re.compile(r"[^\x00-\x1f\x7f]+")


def record_survey_answer(
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


def record_if_customer(engine: Engine, event: InternalEvent) -> bool:
    """Record a product event for a customer who still exists; True when it was stored."""
    with write_tx(engine) as conn:
        found = conn.execute(select(customers.c.id).where(customers.c.id == event.customer_id)).first()
        return found is not None and record_events(conn, [event]) > 0


def click_message_id(send_id: int, url: str) -> str:
    return f"email_clicked:{send_id}:{hashlib.sha1(url.encode()).hexdigest()[:12]}"


#: a visitor's clicks on one referral link count once within this window
CLICK_WINDOW = timedelta(days=1)


def credit_referral_click(engine: Engine, code: str, now: datetime, visitor: str = "") -> str | None:
    """Record `referral_clicked` on the code's owner, once per `visitor` (an opaque digest of who
    clicked) per link per CLICK_WINDOW; returns the code as stored, or None (an unknown code, or
    one that cannot be a code)."""
    if not code or len(code) > CODE_LIMIT or not CODE_CHARS.fullmatch(code):
        return None
    with write_tx(engine) as conn:
        row = conn.execute(
            select(customers.c.id, customers.c.referral_code).where(
                customers.c.referral_code.in_({code, code.upper()})
            )
        ).first()
        if row is None:
            return None
        window = int(now.timestamp() // CLICK_WINDOW.total_seconds())
        key = hashlib.sha1(f"{row.referral_code}:{visitor}:{window}".encode()).hexdigest()[:24]
        record_events(
            conn,
            [
                InternalEvent(
                    row.id, "referral_clicked", now, {"code": row.referral_code}, f"referral_clicked:{key}"
                )
            ],
        )
        return str(row.referral_code)
