"""Who may receive what: opt-outs and preferences.

A click on the unsubscribe link (or RFC 8058 one-click) opts a customer out of all marketing email;
the preference page turns email and each topic on or off. Opt-outs also arrive as events: a shop's
own `unsubscribed` track event (from its checkout, its own preference centre, a support tool) stops
marketing at once, as a click on our link does.

Properties: `channel` (`email` by default; `*` for every channel) and `topic` (`*`, everything, by
default; or a rule's topic). The opt-out holds from the moment it is stored, whatever the event's
timestamp; a later re-subscription goes through the preferences page. Only a newly stored event
acts: the same event again (its message_id known), from a retry or a re-import, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, select

from engine.db import customer_ids, insert_ignore, write_tx
from engine.db.schema import customers, unsubscribes
from engine.events import InternalEvent, record_events
from engine.rules.loader import RuleSet

EVENT = "unsubscribed"


def _text(value: Any, default: str, limit: int) -> str:
    return str(value)[:limit] if isinstance(value, str) and value.strip() else default


def record_opt_outs(conn: Connection, items: Iterable[tuple[str, datetime, dict[str, Any]]]) -> int:
    """Store the opt-out of each (external customer id, timestamp, properties) of an `unsubscribed`
    event, in the caller's transaction; an existing opt-out is kept as it is. Returns how many are new."""
    wanted: dict[tuple[str, str, str], datetime] = {}
    for external_id, ts, props in items:
        key = (external_id, _text(props.get("channel"), "email", 32), _text(props.get("topic"), "*", 64))
        wanted[key] = min(ts, wanted.get(key, ts))
    if not wanted:
        return 0
    ids = customer_ids(conn, sorted({k[0] for k in wanted}))
    rows = [
        {"customer_id": ids[ext], "channel": channel, "topic": topic, "at": at, "source": "event"}
        for (ext, channel, topic), at in wanted.items()
        if ext in ids
    ]
    if not rows:
        return 0
    result = conn.execute(insert_ignore(conn, unsubscribes, ["customer_id", "channel", "topic"]), rows)
    return max(0, int(result.rowcount or 0))


CHANNEL = "email"

EVERYTHING = "*"


@dataclass(frozen=True)
class Topic:
    #: the topic's name in rules and opt-outs (the form's value)
    name: str
    #: what customers read: its name in settings.yaml `topics:` ("News and offers")
    label: str
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
    """Topic -> the name customers read, for the preference page: the topics of settings.yaml that
    an enabled marketing rule names, in the file's order. Never a rule's id or its description:
    those are written for the team. A rule set without `topics:` offers the all-email switch only."""
    used = {rule.topic for rule in ruleset.enabled if not rule.transactional and rule.topic}
    return {name: label for name, label in ruleset.settings.topics.items() if name in used}


def opted_out(conn: Connection, customer_id: int) -> set[str]:
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
        off = opted_out(conn, customer_id)
    return EVERYTHING not in off, [Topic(n, label, n not in off) for n, label in topics.items()]


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
