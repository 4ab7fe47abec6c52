"""Identity merge (CONTRACT 9, DESIGN "Identity is a set-based merge").

A call that carries both `userId` and `anonymousId`, or an `alias`, merges the first profile
into the second. Inside the ingest transaction, `resolve` rewrites a batch so that every item
of a merged id names its survivor (ids merged earlier are read from `customer_aliases`, the
batch's own merges are applied whatever their order in it), and `apply_merges` moves what an
earlier batch stored under the old id: its events, summary rows (folded), stage history and
opt-outs go to the survivor with one statement per table; its active enrollments end; its row
is removed and the old id is recorded as an alias, with the time of the call that merged it.
Sends keep their customer id: a send key is never sent twice because two profiles became one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, select, update

from engine.db import customer_ids, insert_ignore
from engine.db.schema import (
    customer_aliases,
    customers,
    enrollments,
    event_summary,
    events,
    stage_history,
    unsubscribes,
)
from engine.events import MERGED, InternalEvent, record_events, upsert_summary
from engine.ingest.parse import KNOWN_TRAITS, ParsedEvent


@dataclass(frozen=True, slots=True)
class Merge:
    old: str
    new: str
    at: datetime


def _has_aliases(conn: Connection) -> bool:
    return conn.execute(select(customer_aliases.c.alias).limit(1)).first() is not None


def resolve(conn: Connection, batch: list[ParsedEvent]) -> tuple[list[ParsedEvent], list[Merge]]:
    """The batch with each id replaced by its survivor, and the merges the batch asks for.

    Without merges in the batch and none recorded, the batch comes back as it is, after one
    look at `customer_aliases`: a batch without identities to merge pays nothing more."""
    pairs = [ev for ev in batch if ev.anonymous_id is not None]
    known = _has_aliases(conn)
    if not pairs and not known:
        return batch, []
    parent: dict[str, str] = {}
    if known:
        ids = {ev.customer_id for ev in batch} | {ev.anonymous_id for ev in pairs if ev.anonymous_id}
        rows = conn.execute(
            select(customer_aliases.c.alias, customers.c.external_id)
            .join(customers, customers.c.id == customer_aliases.c.customer_id)
            .where(customer_aliases.c.alias.in_(sorted(ids)))
        )
        parent.update({alias: survivor for alias, survivor in rows})

    def find(cid: str) -> str:
        seen = set()
        while cid in parent and cid not in seen:
            seen.add(cid)
            cid = parent[cid]
        return cid

    merges: list[Merge] = []
    batch_merged: set[str] = set()
    # earliest first: the first call that names an id decides where it goes, as in the sorted replay
    for ev in sorted(pairs, key=lambda e: (e.timestamp, e.customer_id, e.anonymous_id or "")):
        old = ev.anonymous_id
        assert old is not None
        if old in parent:  # merged already (earlier in the batch, or before): the first merge holds,
            if old not in batch_merged:  # but the earliest call names its time, in any order
                merges.append(Merge(old, parent[old], ev.timestamp))
                batch_merged.add(old)
            continue
        batch_merged.add(old)
        target = find(ev.customer_id)
        if target == old:
            continue
        parent[old] = target
        merges.append(Merge(old, target, ev.timestamp))
    if not parent:
        return batch, merges
    out: list[ParsedEvent] = []
    for ev in batch:
        cid = find(ev.customer_id)
        if ev.type == "alias":  # the survivor exists from the alias on, like after an identify
            ev = replace(ev, type="identify", customer_id=cid, anonymous_id=None)
        elif cid != ev.customer_id or ev.anonymous_id is not None:
            ev = replace(ev, customer_id=cid, anonymous_id=None)
        out.append(ev)
    return out, [Merge(m.old, find(m.new), m.at) for m in merges]


def apply_merges(conn: Connection, merges: Sequence[Merge], received_at: datetime) -> int:
    """Move what was stored under each old id to its survivor (which the batch has created);
    returns how many profiles were merged."""
    merged = 0
    for m in merges:
        ids = customer_ids(conn, [m.old, m.new])
        new = ids.get(m.new)
        if new is None:  # pragma: no cover - the batch names the survivor, so it exists
            continue
        added = conn.execute(
            insert_ignore(conn, customer_aliases, ["alias"]).values(
                alias=m.old, customer_id=new, merged_at=m.at, recorded_at=received_at
            )
        ).rowcount
        if not added:
            _earlier(conn, m)
            continue
        old = ids.get(m.old)
        if old is not None and old != new:
            _move(conn, old, new, m)
        if added:
            # whether the old id's events came in this batch or before: the same history either way
            record_events(
                conn,
                [
                    InternalEvent(
                        new, MERGED, m.at, {"previous_id": m.old}, message_id=f"journey:merge:{m.old}"
                    )
                ],
            )
            merged += 1
    return merged


def _earlier(conn: Connection, m: Merge) -> None:
    """A merge recorded already, named again by a call: the earliest call's time is the merge's,
    whatever order the calls came in (its `profile_merged` event and summary row follow)."""
    row = conn.execute(
        select(customer_aliases.c.customer_id, customer_aliases.c.merged_at).where(
            customer_aliases.c.alias == m.old
        )
    ).one()
    if row.merged_at <= m.at:
        return
    conn.execute(update(customer_aliases).where(customer_aliases.c.alias == m.old).values(merged_at=m.at))
    mid = f"journey:merge:{m.old}"
    conn.execute(update(events).where(events.c.message_id == mid).values(ts=m.at))
    who = row.customer_id
    first, last, n = conn.execute(
        select(func.min(events.c.ts), func.max(events.c.ts), func.count()).where(
            events.c.customer_id == who, events.c.name == MERGED
        )
    ).one()
    latest = conn.execute(
        select(events.c.id, events.c.properties)
        .where(events.c.customer_id == who, events.c.name == MERGED)
        .order_by(events.c.ts.desc(), events.c.id.desc())
        .limit(1)
    ).one()
    conn.execute(
        update(event_summary)
        .where(event_summary.c.customer_id == who, event_summary.c.name == MERGED)
        .values(
            first_at=first, last_at=last, count=n, last_event_id=latest.id, last_properties=latest.properties
        )
    )


def _move(conn: Connection, old: int, new: int, m: Merge) -> None:
    # PostgreSQL: a concurrent batch that created or identified the old profile holds its row;
    # waiting for it lets the statements below see that batch's events and move them too. (A
    # concurrent batch of tracks alone under the old id takes no lock: its events may stay behind.)
    conn.execute(select(customers.c.id).where(customers.c.id == old).with_for_update())
    conn.execute(update(events).where(events.c.customer_id == old).values(customer_id=new))
    rows = [
        dict(r._mapping)
        for r in conn.execute(select(event_summary).where(event_summary.c.customer_id == old))
    ]
    conn.execute(delete(event_summary).where(event_summary.c.customer_id == old))
    upsert_summary(conn, [{**r, "customer_id": new} for r in rows])
    conn.execute(update(stage_history).where(stage_history.c.customer_id == old).values(customer_id=new))
    u = unsubscribes.alias("u")
    conn.execute(
        update(unsubscribes)
        .where(
            unsubscribes.c.customer_id == old,
            ~exists().where(
                and_(
                    u.c.customer_id == new,
                    u.c.channel == unsubscribes.c.channel,
                    u.c.topic == unsubscribes.c.topic,
                )
            ),
        )
        .values(customer_id=new)
    )
    conn.execute(delete(unsubscribes).where(unsubscribes.c.customer_id == old))
    conn.execute(
        update(enrollments)
        .where(enrollments.c.customer_id == old, enrollments.c.status == "active")
        .values(status="exited", ended_at=m.at, position=None)
    )
    _fold_customer(conn, old, new)
    conn.execute(update(customers).where(customers.c.referred_by == old).values(referred_by=new))
    conn.execute(
        update(customer_aliases).where(customer_aliases.c.customer_id == old).values(customer_id=new)
    )
    conn.execute(delete(customers).where(customers.c.id == old))


def _fold_customer(conn: Connection, old: int, new: int) -> None:
    """The survivor keeps its own traits and takes the old profile's where it has none."""
    o = conn.execute(select(customers).where(customers.c.id == old)).one()
    values: dict[str, Any] = {}
    n = conn.execute(select(customers).where(customers.c.id == new)).one()
    for key in (*KNOWN_TRAITS, "referred_by"):
        if getattr(n, key) is None and getattr(o, key) is not None:
            values[key] = getattr(o, key)
    if o.attributes:
        values["attributes"] = {**o.attributes, **(n.attributes or {})}
    firsts = [t for t in (o.first_seen_at, n.first_seen_at) if t is not None]
    if firsts:
        values["first_seen_at"] = min(firsts)
    if values:
        conn.execute(update(customers).where(customers.c.id == new).values(**values))


__all__ = ["MERGED", "Merge", "apply_merges", "resolve"]
