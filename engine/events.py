"""The event model: the names the product reserves, recording an event, and the summary fold.

Every event lands in `events` (history, `where:` filters, replays) and is folded into
`event_summary`, one row per (customer, event name): first and last time, count and the latest
properties, which is what conditions read through an index. Ingest, delivery and the HTTP links
all record events through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case

from engine.db import greatest, insert_ignore, least, upsert
from engine.db.schema import event_summary, events

#: the product's own events: ingest accepts them too (imports), they are what reports read
RESERVED_EVENTS = (
    "email_sent",
    "email_opened",
    "email_clicked",
    #: delivery feedback from the email provider (engine.feedback), stamped with the provider's time
    "email_delivered",
    "email_bounced",
    "email_complained",
    "unsubscribed",
    "survey_answered",
    "referral_clicked",
    "referral_converted",
    #: Segment's page and screen calls (CONTRACT 9)
    "page_viewed",
    "screen_viewed",
    #: another profile was merged into this customer (properties: `previous_id`)
    "profile_merged",
)


@dataclass(frozen=True)
class InternalEvent:
    """An event the product itself records (email_sent, survey_answered, …)."""

    customer_id: int
    name: str
    ts: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = None


def insert_events(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert event rows, skipping known message ids; returns the rows actually stored (with id)."""
    stored: list[dict[str, Any]] = []
    keyed: dict[str, dict[str, Any]] = {}
    plain: list[dict[str, Any]] = []
    for r in rows:
        if r["message_id"] is None:
            plain.append(r)
        else:
            keyed.setdefault(r["message_id"], r)  # a duplicate inside one batch: the first wins
    if keyed:
        stmt = insert_ignore(conn, events, ["message_id"]).returning(events.c.id, events.c.message_id)
        for rid, mid in conn.execute(stmt, list(keyed.values())):
            stored.append({**keyed[mid], "id": rid})
    if plain:
        stmt = events.insert().returning(events.c.id, sort_by_parameter_order=True)
        for (rid,), row in zip(conn.execute(stmt, plain).all(), plain, strict=True):
            stored.append({**row, "id": rid})
    return stored


def fold_summary(conn: Connection, stored: Sequence[dict[str, Any]]) -> None:
    """Fold stored events into event_summary: one upsert per batch, order-independent."""
    agg: dict[tuple[int, str], dict[str, Any]] = {}
    for r in stored:
        key = (r["customer_id"], r["name"])
        cur = agg.get(key)
        if cur is None:
            agg[key] = {
                "customer_id": r["customer_id"],
                "name": r["name"],
                "first_at": r["ts"],
                "last_at": r["ts"],
                "count": 1,
                "last_event_id": r["id"],
                "last_properties": r["properties"],
            }
            continue
        cur["count"] += 1
        cur["first_at"] = min(cur["first_at"], r["ts"])
        if (r["ts"], r["id"]) > (cur["last_at"], cur["last_event_id"]):
            cur["last_at"], cur["last_event_id"], cur["last_properties"] = r["ts"], r["id"], r["properties"]
    upsert_summary(conn, list(agg.values()))


def upsert_summary(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Fold summary rows into event_summary: first and last times, counts added, the latest
    properties kept (what ingest does per batch, and an identity merge per merged profile)."""
    if not rows:
        return
    stmt = upsert(conn, event_summary)
    x = stmt.excluded
    s = event_summary.c
    newer = (x.last_at > s.last_at) | ((x.last_at == s.last_at) & (x.last_event_id > s.last_event_id))
    stmt = stmt.on_conflict_do_update(
        index_elements=["customer_id", "name"],
        set_={
            "first_at": least(conn, s.first_at, x.first_at),
            "last_at": greatest(conn, s.last_at, x.last_at),
            "count": s.count + x.count,
            "last_event_id": case((newer, x.last_event_id), else_=s.last_event_id),
            "last_properties": case((newer, x.last_properties), else_=s.last_properties),
        },
    )
    conn.execute(stmt, sorted(rows, key=lambda r: (r["customer_id"], r["name"])))


def record_events(conn: Connection, rows: Sequence[InternalEvent]) -> int:
    """Record events the product emits, in the caller's transaction; idempotent on message_id."""
    if not rows:
        return 0
    event_rows = [
        {
            "customer_id": r.customer_id,
            "name": r.name,
            "ts": r.ts,
            "received_at": r.ts,
            "message_id": r.message_id,
            "properties": r.properties,
        }
        for r in rows
    ]
    stored = insert_events(conn, event_rows)
    fold_summary(conn, stored)
    return len(stored)
