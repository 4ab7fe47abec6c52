"""Segments: recompute the membership of customers whose data changed, and record each entry and
exit once (CONTRACT sections 11 and 14).

Like stages, a tick looks only at candidates: customers with new events, new customers, those
for whom a `within` of the segment's condition ran out in the window, and those whose stage or
membership of a segment it uses changed in this tick. Segments are computed in the loader's order,
each after the segments it uses. A segment first seen (or whose definition changed) records its
members silently: `segment_entered` fires for changes after that, so adding a segment mails no one.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    MetaData,
    Table,
    and_,
    false,
    literal,
    select,
    text,
    true,
    union,
)

from engine.db import insert_ignore, is_postgres
from engine.db.schema import (
    customers,
    event_summary,
    events,
    segment_history,
    segment_members,
    segment_state,
    stage_history,
    unsubscribes,
)
from engine.evaluate.conditions import (
    Ctx,
    compile_condition,
    last_between,
    segment_member,
    time_thresholds,
    uses_attributes,
)
from engine.evaluate.window import Window, customers_with_new
from engine.rules.conditions import (
    AttributeCondition,
    EventCondition,
    StageCondition,
    event_names,
    segment_names,
    walk,
)
from engine.rules.model import Segment

_candidates = Table("tick_segment_candidates", MetaData(), Column("id", BigInteger))


def digest(segment: Segment) -> str:
    return hashlib.sha256(segment.model_dump_json(by_alias=True).encode()).hexdigest()


def _candidates_of(segment: Segment, w: Window) -> Any:
    new_customers: ColumnElement[bool]
    if w.prev_customer_seq is None:
        new_customers = customers.c.id > 0
    else:
        new_customers = and_(customers.c.id > w.prev_customer_seq, customers.c.id <= w.customer_seq)
    parts: list[Any] = [
        customers_with_new(event_names(segment.when)),
        select(customers.c.id.label("id")).where(new_customers),
    ]
    for name, seconds in sorted(time_thresholds(segment.when)):
        crossed = timedelta(seconds=seconds)
        parts.append(
            select(event_summary.c.customer_id.label("id")).where(
                *last_between(name, w.start - crossed, w.now - crossed)
            )
        )
    for name, seconds in sorted(_counted_thresholds(segment.when)):
        # a count within a time flips when any counted event leaves the window, not only the last
        crossed = timedelta(seconds=seconds)
        parts.append(
            select(events.c.customer_id.label("id")).where(
                events.c.name == name, events.c.ts > w.start - crossed, events.c.ts <= w.now - crossed
            )
        )
    if any(isinstance(c, StageCondition) for c in walk(segment.when)):
        parts.append(
            select(stage_history.c.customer_id.label("id")).where(stage_history.c.tick_id == w.tick_id)
        )
    if uses_attributes(segment.when):  # `subscribed:`: opt-outs and suppressions of the window
        parts.append(select(unsubscribes.c.customer_id.label("id")).where(unsubscribes.c.at > w.start))
        parts.append(select(customers.c.id.label("id")).where(customers.c.email_suppressed_at > w.start))
    used = segment_names(segment.when)
    if used:
        h = segment_history
        parts.append(
            select(h.c.customer_id.label("id")).where(h.c.tick_id == w.tick_id, h.c.segment.in_(used))
        )
    return union(*parts)


def _reads_attributes(cond: Any) -> bool:
    """Attributes change without an event (an identify): such a segment looks at everyone."""
    return any(isinstance(c, AttributeCondition) for c in walk(cond))


def _counted_thresholds(cond: Any) -> set[tuple[str, float]]:
    return {
        (c.event, c.within.total_seconds())
        for c in walk(cond)
        if isinstance(c, EventCondition) and c.within is not None and c.count is not None
    }


def _materialise(conn: Connection, query: Any) -> None:
    if is_postgres(conn):
        conn.execute(
            text("CREATE TEMP TABLE IF NOT EXISTS tick_segment_candidates (id bigint) ON COMMIT DROP")
        )
        conn.execute(text("TRUNCATE tick_segment_candidates"))
    else:
        conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS tick_segment_candidates (id INTEGER)"))
        conn.execute(text("DELETE FROM tick_segment_candidates"))
    conn.execute(_candidates.insert().from_select(["id"], query))
    if is_postgres(conn):
        conn.execute(text("ANALYZE tick_segment_candidates"))


def recompute(conn: Connection, segments: list[Segment], w: Window, *, full: bool = False) -> dict[str, int]:
    """Record every entry and exit of this window; returns the number of changes per segment."""
    known = {row.segment: row.digest for row in conn.execute(select(segment_state))}
    out: dict[str, int] = {}
    for seg in segments:
        fresh = known.get(seg.name) != digest(seg)
        out[seg.name] = _recompute_one(conn, seg, w, full=full or fresh, silent=fresh)
        if seg.name not in known:
            conn.execute(
                insert_ignore(conn, segment_state, ["segment"]).values(
                    segment=seg.name, first_tick_at=w.now, digest=digest(seg)
                )
            )
        elif fresh:
            conn.execute(
                segment_state.update().where(segment_state.c.segment == seg.name).values(digest=digest(seg))
            )
    return out


def _recompute_one(conn: Connection, seg: Segment, w: Window, *, full: bool, silent: bool) -> int:
    holds = compile_condition(seg.when, Ctx(conn=conn, now=w.now))
    was = segment_member(seg.name)
    which: list[ColumnElement[bool]] = []
    if not full and not _reads_attributes(seg.when):
        _materialise(conn, _candidates_of(seg, w))
        which.append(customers.c.id.in_(select(_candidates.c.id)))
    h = segment_history
    changed = 0
    for entered, filters in ((True, [holds, ~was]), (False, [~holds, was])):
        changed += (
            conn.execute(
                h.insert().from_select(
                    ["segment", "customer_id", "entered", "at", "fires", "tick_id"],
                    select(
                        literal(seg.name),
                        customers.c.id,
                        true() if entered else false(),
                        literal(w.now, h.c.at.type),
                        false() if silent else true(),
                        literal(w.tick_id, BigInteger),
                    ).where(*which, *filters),
                )
            ).rowcount
            or 0
        )
    if not changed:
        return 0
    now_here = and_(h.c.tick_id == w.tick_id, h.c.segment == seg.name)
    conn.execute(
        segment_members.insert().from_select(
            ["segment", "customer_id", "since"],
            select(h.c.segment, h.c.customer_id, h.c.at).where(now_here, h.c.entered.is_(True)),
        )
    )
    conn.execute(
        segment_members.delete().where(
            segment_members.c.segment == seg.name,
            segment_members.c.customer_id.in_(
                select(h.c.customer_id).where(now_here, h.c.entered.is_(False))
            ),
        )
    )
    return changed
