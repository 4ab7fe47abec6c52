"""The event model: the names the product reserves, recording an event, and the summary fold.

Every event lands in `events` (history, `where:` filters, replays) and is folded into
`event_summary`, one row per (customer, event name): first and last time, count and the latest
properties, which is what conditions read through an index. Ingest, delivery and the HTTP links
all record events through here.
"""

from __future__ import annotations

import json
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


#: what a merge of profiles records on the surviving customer (engine.ingest.identity)
MERGED = "profile_merged"


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
    if conn.dialect.name == "postgresql" and all(r.message_id is not None for r in rows):
        return _record_keyed_pg(conn, rows)
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


def _record_keyed_pg(conn: Connection, rows: Sequence[InternalEvent]) -> int:
    """record_events in one statement on PostgreSQL, for events that all carry a message id (what a
    worker records for its sends): the rows as arrays, the insert, the summary fold as above."""
    params = {
        "customer_id": [r.customer_id for r in rows],
        "name": [r.name for r in rows],
        "ts": [r.ts for r in rows],
        "message_id": [r.message_id for r in rows],
        "properties": [_JSON.encode(r.properties) for r in rows],
    }
    return int(conn.exec_driver_sql(_PG_RECORD_KEYED, params).scalar_one())


#: event_summary's fold of new rows (aliased `s`) on PostgreSQL, as upsert_summary does it: first
#: and last times, counts added, the newest event's id and properties kept
PG_SUMMARY_FOLD = """ON CONFLICT (customer_id, name) DO UPDATE SET
    first_at = LEAST(s.first_at, excluded.first_at),
    last_at = GREATEST(s.last_at, excluded.last_at),
    count = s.count + excluded.count,
    last_event_id = CASE WHEN (excluded.last_at, excluded.last_event_id) > (s.last_at, s.last_event_id)
                         THEN excluded.last_event_id ELSE s.last_event_id END,
    last_properties = CASE WHEN (excluded.last_at, excluded.last_event_id) > (s.last_at, s.last_event_id)
                           THEN excluded.last_properties ELSE s.last_properties END"""

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

#: insert_events + fold_summary for keyed rows: a message id already stored (or twice in the
#: batch: the first wins) is skipped, and only the stored rows are folded, newest properties kept.
#: The arrays go in binary (`%(x)b`): as text, the driver quotes and escapes every element
_PG_RECORD_KEYED = f"""WITH given AS (
    SELECT DISTINCT ON (g.message_id) g.*
    FROM unnest(%(customer_id)b::bigint[], %(name)b::text[], %(ts)b::timestamptz[],
                %(message_id)b::text[], %(properties)b::jsonb[])
         WITH ORDINALITY AS g (customer_id, name, ts, message_id, properties, ord)
    ORDER BY g.message_id, g.ord
), stored AS (
    INSERT INTO events (customer_id, name, ts, received_at, message_id, properties)
    SELECT customer_id, name, ts, ts, message_id, properties FROM given ORDER BY ord
    ON CONFLICT (message_id) DO NOTHING
    RETURNING id, customer_id, name, ts, properties
), folded AS (
    SELECT DISTINCT ON (customer_id, name) customer_id, name,
           min(ts) OVER w AS first_at, max(ts) OVER w AS last_at, count(*) OVER w AS count,
           id AS last_event_id, properties AS last_properties
    FROM stored WINDOW w AS (PARTITION BY customer_id, name)
    ORDER BY customer_id, name, ts DESC, id DESC
), summary AS (
    INSERT INTO event_summary AS s (customer_id, name, first_at, last_at, count, last_event_id,
                                    last_properties)
    SELECT customer_id, name, first_at, last_at, count, last_event_id, last_properties FROM folded
    ORDER BY customer_id, name
    {PG_SUMMARY_FOLD}
    RETURNING 1
)
SELECT count(*) FROM stored"""
