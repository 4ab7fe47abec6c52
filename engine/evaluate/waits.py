"""`wait_for` steps as a few set-based statements per step and tick (CONTRACT section 11).

An enrollment that reaches the step records `waiting_since` (the moment it reached it) and its
`due_at` becomes the timeout. It is released, down `then:`, at the first tick that sees an awaited
event stamped in (waiting_since, timeout]; `released_by` keeps that event for `journey explain`.
One that is still waiting when its timeout has come goes down `timeout:`.

Statements per step: arrival (which also releases those whose event came already), release of
the customers with a new awaited event in this tick (through the tick's new-events table and the
enrollments' customer index, so their cost follows what changed), the move of the released, the
move of the timed out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, literal, or_, select

from engine.db import add_seconds, json_field
from engine.db.schema import enrollments, events
from engine.evaluate.conditions import Ctx, property_filter
from engine.evaluate.window import Window, new_events
from engine.rules.model import Rule, WaitFor, WaitForStep
from engine.rules.walk import first_of

e = enrollments


def same_properties(
    conn: Connection, names: list[str], props: Any, other_props: Any
) -> list[ColumnElement[bool]]:
    """`match:`: each named property of one event equals the other's. An event without the
    property is tied to none in particular and matches any (a shop that sends no cart ids keeps
    one cart per customer)."""
    out: list[ColumnElement[bool]] = []
    for name in names:
        mine, theirs = json_field(conn, props, name, "any"), json_field(conn, other_props, name, "any")
        out.append(or_(mine == theirs, mine.is_(None), theirs.is_(None)))
    return out


def _awaited(
    conn: Connection, wf: WaitFor, w: Window, start: Any, deadline: Any
) -> tuple[Any, list[ColumnElement[bool]]]:
    """The awaited events of the enrollment row being updated, stamped in (start, deadline]."""
    ev = events.alias("awaited")
    filters: list[ColumnElement[bool]] = [
        ev.c.customer_id == e.c.customer_id,
        ev.c.name == wf.event,
        ev.c.ts > start,
        ev.c.ts <= deadline,
        ev.c.ts <= literal(w.now, events.c.ts.type),
        ev.c.id <= w.event_seq,
    ]
    if wf.match:
        trig = events.alias("trig")
        filters.append(
            exists()
            .where(
                trig.c.id == e.c.trigger_event_id,
                *same_properties(conn, wf.match, ev.c.properties, trig.c.properties),
            )
            .correlate_except(trig)  # to the enrollment row two levels up, not to its own FROM
        )
    if wf.where:
        filters += property_filter(wf.where, Ctx(conn=conn, now=w.now), props=ev.c.properties)
    return ev, filters


def _first(conn: Connection, wf: WaitFor, w: Window, start: Any, deadline: Any) -> Any:
    ev, filters = _awaited(conn, wf, w, start, deadline)
    return select(ev.c.id).where(*filters).order_by(ev.c.ts, ev.c.id).limit(1).scalar_subquery()


def _to(target: str | None) -> dict[str, Any]:
    return {"position": target, "status": "active" if target else "done"}


def wait_for(conn: Connection, rule: Rule, path: str, step: WaitForStep, w: Window) -> int:
    """Run one `wait_for` step for the rule's enrollments; returns how many moved or arrived."""
    wf = step.wait_for
    within = wf.within.total_seconds()
    at = and_(e.c.rule_id == rule.id, e.c.status == "active", e.c.position == path)
    waiting = and_(at, e.c.waiting_since.is_not(None))
    moved = 0
    # arrival: the timeout counts from the moment the step is reached; an awaited event that
    # came already (a late tick) releases at once
    deadline = add_seconds(conn, e.c.due_at, within)
    moved += (
        conn.execute(
            e.update()
            .where(at, e.c.waiting_since.is_(None), e.c.due_at <= w.now)
            .values(
                waiting_since=e.c.due_at,
                due_at=deadline,
                released_by=_first(conn, wf, w, e.c.due_at, deadline),
            )
        ).rowcount
        or 0
    )
    # release: only customers with a new awaited event can have been released since the last tick
    ev, filters = _awaited(conn, wf, w, e.c.waiting_since, e.c.due_at)
    which = [waiting, e.c.released_by.is_(None), exists().where(*filters)]
    if not w.full:
        which.append(
            e.c.customer_id.in_(select(new_events.c.customer_id).where(new_events.c.name == wf.event))
        )
    conn.execute(
        e.update().where(*which).values(released_by=_first(conn, wf, w, e.c.waiting_since, e.c.due_at))
    )
    released_at = select(events.c.ts).where(events.c.id == e.c.released_by).scalar_subquery()
    then_to = first_of(rule, path, "then")
    timeout_to = first_of(rule, path, "timeout")
    moved += (
        conn.execute(
            e.update()
            .where(waiting, e.c.released_by.is_not(None))
            .values(waiting_since=None, due_at=released_at, **_to(then_to))
        ).rowcount
        or 0
    )
    moved += (
        conn.execute(
            e.update()
            .where(waiting, e.c.released_by.is_(None), e.c.due_at <= w.now)
            .values(waiting_since=None, **_to(timeout_to))
        ).rowcount
        or 0
    )
    return moved


__all__ = ["same_properties", "wait_for"]
