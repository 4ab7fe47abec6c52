"""`journey events export`: the database's customers and events as JSON lines that `journey ingest`
and `journey simulate` read back (CONTRACT section 14).

Each exported customer is one `identify` with their traits (known fields, attributes and referral
code), stamped at their first activity, then their events, oldest first; the whole file is in time
order (a customer's identify comes before their first event), so `simulate` streams it as it is.
Ingested into an empty database it gives the same customers and the same event summaries.

Each identity merge is one Segment `alias` call (`previousId` -> `userId`) at the merge's time, in
place of the `profile_merged` event it made: ingested, it records the same merge, so later events
under the old id still land on the survivor.

Two things are not carried: who referred whom (`customers.referred_by`: the `referral_converted`
events are exported, and ingesting a `referred_by` trait would credit the referrer a second time),
and an opt-out taken back on the preference page (its `unsubscribed` event is exported, and opts
the customer out again when ingested).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, case, exists, func, select, type_coerce

from engine.db import is_postgres
from engine.db.schema import customer_aliases, customers, event_summary, events
from engine.db.types import UTCDateTime

KNOWN = ("email", "phone", "timezone", "locale", "first_name")


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _identify(row: Any) -> dict[str, Any]:
    traits: dict[str, Any] = dict(row.attributes or {})
    for key in KNOWN:
        value = getattr(row, key)
        if value is not None:
            traits[key] = value
    if row.referral_code:
        traits["referral_code"] = row.referral_code
    return {"type": "identify", "customer_id": row.external_id, "timestamp": _iso(row.at), "traits": traits}


def _track(row: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "track",
        "customer_id": row.external_id,
        "event": row.name,
        "timestamp": _iso(row.ts),
        "properties": row.properties or {},
    }
    if row.message_id is not None:
        item["message_id"] = row.message_id
    return item


def _alias(row: Any) -> dict[str, Any]:
    return {
        "type": "alias",
        "previousId": row.alias,
        "userId": row.external_id,
        "timestamp": _iso(row.merged_at),
    }


def export_events(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    customer_ids: Sequence[str] = (),
    leave_out: Sequence[str] = (),
) -> Iterator[dict[str, Any]]:
    """The export's items in time order, read as they are written (two streamed queries merged):
    events with `since <= timestamp < until`, of the customers named (all by default), each
    customer's identify before their first event; events named in `leave_out` are not read.
    Merges are `alias` calls, in place of their `profile_merged` events."""
    from engine.events import MERGED

    leave_out = [*leave_out, MERGED]
    in_range = [events.c.ts >= since] if since is not None else []
    if until is not None:
        in_range.append(events.c.ts < until)
    first_event = (
        select(func.min(event_summary.c.first_at)).where(event_summary.c.customer_id == customers.c.id)
    ).scalar_subquery()
    seen = func.coalesce(customers.c.first_seen_at, customers.c.created_at)
    at = type_coerce(
        case(
            (first_event.is_(None), seen),
            (customers.c.first_seen_at.is_(None), first_event),
            (first_event < customers.c.first_seen_at, first_event),
            else_=customers.c.first_seen_at,
        ),
        UTCDateTime(),
    ).label("at")
    who = [customers.c.external_id.in_(list(customer_ids))] if customer_ids else []
    people = select(
        customers.c.id,
        customers.c.external_id,
        customers.c.attributes,
        customers.c.referral_code,
        *(customers.c[k] for k in KNOWN),
        at,
    ).where(*who)
    if in_range:
        # those with an event in the range, or who arrived in it with none
        active = exists().where(events.c.customer_id == customers.c.id, *in_range)
        arrived = and_(
            *([seen >= since] if since is not None else []), *([seen < until] if until is not None else [])
        )
        people = people.where(active | (~exists().where(events.c.customer_id == customers.c.id) & arrived))
    track = (
        select(
            events.c.id,
            events.c.name,
            events.c.ts,
            events.c.message_id,
            events.c.properties,
            customers.c.external_id,
        )
        .join(customers, customers.c.id == events.c.customer_id)
        .where(*in_range, *who, *([events.c.name.not_in(list(leave_out))] if leave_out else []))
        .order_by(events.c.ts, events.c.id)
    )
    merged_in = [customer_aliases.c.merged_at >= since] if since is not None else []
    if until is not None:
        merged_in.append(customer_aliases.c.merged_at < until)
    merges = (
        select(customer_aliases.c.alias, customer_aliases.c.merged_at, customers.c.external_id)
        .join(customers, customers.c.id == customer_aliases.c.customer_id)
        .where(*merged_in, *who)
        .order_by(customer_aliases.c.merged_at, customer_aliases.c.alias)
    )
    options: dict[str, Any] = {"yield_per": 2000} if is_postgres(engine) else {}
    with engine.connect() as c1, engine.connect() as c2, engine.connect() as c3:
        identifies = (
            ((r.at, 0, r.id), _identify(r))
            for r in c1.execution_options(**options).execute(people.order_by(at, customers.c.id))
        )
        tracks = (((r.ts, 2, r.id), _track(r)) for r in c2.execution_options(**options).execute(track))
        # a merge after the survivor's identify, before the events at its time
        aliases = (((r.merged_at, 1, i), _alias(r)) for i, r in enumerate(c3.execute(merges)))
        for _, item in heapq.merge(identifies, aliases, tracks, key=lambda pair: pair[0]):
            yield item


def write_export(items: Iterator[dict[str, Any]], out: Any) -> tuple[int, int]:
    """Write items as JSON lines; (customers, events) written."""
    people = tracked = 0
    for item in items:
        out.write(json.dumps(item, ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
        if item["type"] == "identify":
            people += 1
        elif item["type"] == "track":
            tracked += 1
    return people, tracked
