"""Triggers as SQL: each produces the set of (customer, occurrence) that enter a rule in a tick.

Every trigger is a SELECT of `customer_id, occurrence, trigger_event_id, entered_at`; `enroll`
inserts them into `enrollments` with ON CONFLICT DO NOTHING on (rule, customer, occurrence), so
running a tick again, or two at once, enrolls nobody twice.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    and_,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    true,
)

from engine.db import add_seconds, insert_ignore, json_field
from engine.db.schema import customers, enrollments, event_summary, events, segment_history, stage_history
from engine.evaluate.conditions import Ctx, compile_all, compile_condition, last_between, property_filter
from engine.evaluate.window import Window, new_events
from engine.rules.cron import cron_times
from engine.rules.model import Rule
from engine.rules.triggers import (
    AnniversaryTrigger,
    EventTrigger,
    InactivityTrigger,
    ScheduleTrigger,
    SegmentEnteredTrigger,
    SegmentExitedTrigger,
    StageTrigger,
)
from engine.rules.walk import first_of, past_waits

#: an event trigger fires for a late event at most this long after it happened
LATE_LIMIT = timedelta(hours=24)


def rule_hash(rule_id: str) -> int:
    return int(hashlib.sha256(rule_id.encode()).hexdigest()[:8], 16) % 1_000_003


def _ts(value: datetime) -> Any:
    return literal(value, enrollments.c.entered_at.type)


def trigger_select(conn: Connection, rule: Rule, w: Window, *, default_tz: str = "UTC") -> list[Select[Any]]:
    """The trigger's SELECTs for this window (a schedule gives one per timezone and fire time)."""
    t = rule.trigger
    if isinstance(t, EventTrigger):
        oldest = min(w.start, w.now - LATE_LIMIT)
        filters = [
            new_events.c.name == t.event,
            new_events.c.ts > oldest,
            customers.c.id == new_events.c.customer_id,
        ]
        if t.where:  # the new event's row, read once for all of its properties
            ctx = Ctx(conn=conn, now=w.now)
            filters += [
                events.c.id == new_events.c.id,
                *property_filter(t.where, ctx, props=events.c.properties),
            ]
        return [
            select(
                new_events.c.customer_id.label("customer_id"),
                new_events.c.id.label("occurrence"),
                new_events.c.id.label("trigger_event_id"),
                new_events.c.ts.label("entered_at"),
            ).where(*filters)
        ]
    if isinstance(t, StageTrigger):
        filters = [
            stage_history.c.tick_id == w.tick_id,
            stage_history.c.to_stage == t.stage_entered,
            stage_history.c.fires.is_(True),
            customers.c.id == stage_history.c.customer_id,
        ]
        if t.from_ is not None:
            filters.append(stage_history.c.from_stage == t.from_)
        return [
            select(
                stage_history.c.customer_id.label("customer_id"),
                stage_history.c.id.label("occurrence"),
                literal(None, BigInteger).label("trigger_event_id"),
                stage_history.c.at.label("entered_at"),
            ).where(*filters)
        ]
    if isinstance(t, SegmentEnteredTrigger | SegmentExitedTrigger):
        h = segment_history
        entered = isinstance(t, SegmentEnteredTrigger)
        name = t.segment_entered if isinstance(t, SegmentEnteredTrigger) else t.segment_exited
        return [
            select(
                h.c.customer_id.label("customer_id"),
                h.c.id.label("occurrence"),
                literal(None, BigInteger).label("trigger_event_id"),
                h.c.at.label("entered_at"),
            ).where(
                h.c.tick_id == w.tick_id,
                h.c.segment == name,
                h.c.entered.is_(entered),
                h.c.fires.is_(True),
                customers.c.id == h.c.customer_id,
            )
        ]
    if isinstance(t, InactivityTrigger) and t.inactivity.match:
        return [_inactivity_matched(conn, t, w)]
    if isinstance(t, InactivityTrigger):
        ina = t.inactivity
        s = event_summary
        later = event_summary.alias("later")
        filters = [
            *last_between(ina.event, w.start - ina.for_, w.now - ina.for_),
            customers.c.id == s.c.customer_id,
        ]
        # the trigger event itself in `until` means "no later one": a later one already moves last_at
        stoppers = [name for name in ina.until if name != ina.event]
        if stoppers:
            filters.append(
                ~exists().where(
                    later.c.customer_id == s.c.customer_id,
                    later.c.name.in_(stoppers),
                    later.c.last_at >= s.c.last_at,
                    later.c.last_at <= w.now,
                )
            )
        return [
            select(
                s.c.customer_id.label("customer_id"),
                s.c.last_event_id.label("occurrence"),
                s.c.last_event_id.label("trigger_event_id"),
                add_seconds(conn, s.c.last_at, ina.for_.total_seconds()).label("entered_at"),
            ).where(*filters)
        ]
    if isinstance(t, ScheduleTrigger):
        return _schedule(conn, t, w, default_tz)
    assert isinstance(t, AnniversaryTrigger)
    return _anniversary(conn, t, w)


def _inactivity_matched(conn: Connection, t: InactivityTrigger, w: Window) -> Select[Any]:
    """Inactivity with `match:`: each occurrence whose matched properties no later occurrence and
    no `until` event shares within `for` (two carts: the one not checked out). Reads the events
    crossing the threshold in this window through ix_events_name_ts, not the summary, which only
    holds the latest occurrence of a name."""
    from engine.evaluate.waits import same_properties

    ina = t.inactivity
    ev = events.alias("quiet")
    again = events.alias("again")
    stop = events.alias("stop")
    filters: list[Any] = [
        ev.c.name == ina.event,
        ev.c.ts > w.start - ina.for_,
        ev.c.ts <= w.now - ina.for_,
        ev.c.id <= w.event_seq,
        customers.c.id == ev.c.customer_id,
        ~exists().where(
            again.c.customer_id == ev.c.customer_id,
            again.c.name == ina.event,
            or_(again.c.ts > ev.c.ts, and_(again.c.ts == ev.c.ts, again.c.id > ev.c.id)),
            again.c.ts <= w.now,
            *same_properties(conn, ina.match, again.c.properties, ev.c.properties),
        ),
    ]
    stoppers = [name for name in ina.until if name != ina.event]
    if stoppers:
        filters.append(
            ~exists().where(
                stop.c.customer_id == ev.c.customer_id,
                stop.c.name.in_(stoppers),
                stop.c.ts >= ev.c.ts,
                stop.c.ts <= w.now,
                *same_properties(conn, ina.match, stop.c.properties, ev.c.properties),
            )
        )
    return select(
        ev.c.customer_id.label("customer_id"),
        ev.c.id.label("occurrence"),
        ev.c.id.label("trigger_event_id"),
        add_seconds(conn, ev.c.ts, ina.for_.total_seconds()).label("entered_at"),
    ).where(*filters)


def _schedule(conn: Connection, t: ScheduleTrigger, w: Window, default_tz: str) -> list[Select[Any]]:
    ctx = Ctx(conn=conn, now=w.now)
    audience = compile_condition(t.audience, ctx) if t.audience is not None else None
    out: list[Select[Any]] = []
    if t.timezone == "customer":
        zones = [row[0] for row in conn.execute(select(customers.c.timezone).distinct())]
    else:
        zones = [t.timezone or "UTC"]
    for zone in zones:
        name = zone or default_tz
        try:
            fires = cron_times(t.schedule, name, w.start, w.now)
        except (ZoneInfoNotFoundError, ValueError):
            fires = cron_times(t.schedule, default_tz, w.start, w.now)
        for fire in fires:
            filters: list[Any] = []
            if t.timezone == "customer":
                filters.append(
                    customers.c.timezone.is_(None) if zone is None else customers.c.timezone == zone
                )
            if audience is not None:
                filters.append(audience)
            out.append(
                select(
                    customers.c.id.label("customer_id"),
                    literal(int(fire.timestamp()), BigInteger).label("occurrence"),
                    literal(None, BigInteger).label("trigger_event_id"),
                    _ts(fire).label("entered_at"),
                ).where(and_(*filters) if filters else literal(True))
            )
    return out


def _anniversary(conn: Connection, t: AnniversaryTrigger, w: Window) -> list[Select[Any]]:
    """Yearly at 00:00 UTC on the month and day of a date attribute (`YYYY-MM-DD…`); 29 February
    is celebrated on 28 February in other years."""
    attr = t.anniversary.attribute
    from engine.evaluate.conditions import COLUMNS

    value: Any = COLUMNS.get(attr)
    if value is None:
        value = json_field(conn, customers.c.attributes, attr, "text")
    month_day = func.substr(value, 6, 5)
    year = func.substr(value, 1, 4)
    out: list[Select[Any]] = []
    day = w.start.date() + timedelta(days=1)
    while datetime(day.year, day.month, day.day, tzinfo=UTC) <= w.now:
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        days = [f"{day.month:02d}-{day.day:02d}"]
        if day.month == 2 and day.day == 28 and not _leap(day.year):
            days.append("02-29")
        out.append(
            select(
                customers.c.id.label("customer_id"),
                literal(day.year, BigInteger).label("occurrence"),
                literal(None, BigInteger).label("trigger_event_id"),
                _ts(midnight).label("entered_at"),
            ).where(value.is_not(None), month_day.in_(days), year < str(day.year))
        )
        day += timedelta(days=1)
    return out


def _leap(year: int) -> bool:
    return date(year, 3, 1).toordinal() - date(year, 2, 1).toordinal() == 29


def enroll(conn: Connection, rule: Rule, w: Window, *, default_tz: str = "UTC") -> int:
    """Insert this window's trigger occurrences that pass the rule's conditions and reentry."""
    ctx = Ctx(conn=conn, now=w.now, topic=rule.opt_out_topics())
    conditions = compile_all(list(rule.conditions), ctx)
    # an enrollment starts past the rule's first waits, if it begins with some
    first, waits = past_waits(rule, first_of(rule, None, None))
    total = 0
    for trig in trigger_select(conn, rule, w, default_tz=default_tz):
        # the customer's salt (for the split bucket) from the row the trigger already joined
        joined = any(f is customers for f in trig.get_final_froms())
        if joined:
            trig = trig.add_columns(customers.c.salt.label("salt"))
        base = trig.where(conditions).subquery("occ")
        query: Select[Any] = select(base)
        if rule.reentry is not None:
            earlier = enrollments.alias("earlier")
            # the earliest occurrence per customer in this window, and only if the customer did
            # not enter the rule within `reentry` before it
            if isinstance(rule.trigger, EventTrigger) or (
                isinstance(rule.trigger, InactivityTrigger) and rule.trigger.inactivity.match
            ):
                # Only an event trigger, or an inactivity with `match` (one per cart), can give a
                # customer several occurrences in one SELECT (the others read one summary row,
                # one stage change, one fire time per customer): each customer's first, numbered
                # in one pass (a correlated min() ran the trigger query again for every row).
                rank = (
                    func.row_number()
                    .over(partition_by=base.c.customer_id, order_by=base.c.occurrence)
                    .label("rank")
                )
                ranked = select(base, rank).subquery("ranked")
                base = select(*(ranked.c[c.name] for c in base.c)).where(ranked.c.rank == 1).subquery("first")
                query = select(base)
            query = query.where(
                ~exists().where(
                    earlier.c.rule_id == rule.id,
                    earlier.c.customer_id == base.c.customer_id,
                    earlier.c.entered_at
                    > add_seconds(conn, base.c.entered_at, -rule.reentry.total_seconds()),
                ),
            )
        sub = query.subquery("entering")
        ins = insert_ignore(conn, enrollments, ["rule_id", "customer_id", "occurrence"]).from_select(
            [
                "rule_id",
                "customer_id",
                "occurrence",
                "trigger_event_id",
                "entered_at",
                "tick_at",
                "position",
                "due_at",
                "status",
                "bucket",
            ],
            select(
                literal(rule.id),
                sub.c.customer_id,
                sub.c.occurrence,
                sub.c.trigger_event_id,
                sub.c.entered_at,
                _ts(w.now),
                literal(first),
                add_seconds(conn, sub.c.entered_at, waits) if waits else sub.c.entered_at,
                literal("active" if first is not None else "done"),
                _bucket(rule, sub.c.salt if joined else _salt_of(sub.c.customer_id)),
            ).where(true()),  # SQLite needs a WHERE before ON CONFLICT in INSERT … SELECT
        )
        total += conn.execute(ins).rowcount or 0
    return total


def _bucket(rule: Rule, salt: Any) -> Any:
    """The enrollment's bucket (0-9999), fixed per customer and rule: what a split divides."""
    return (cast(salt, BigInteger) + rule_hash(rule.id)) % 10000


def _salt_of(customer_id: Any) -> Any:
    return select(customers.c.salt).where(customers.c.id == customer_id).scalar_subquery()


def exits(conn: Connection, rule: Rule, w: Window) -> int:
    """Customers who did an `exit_on` event since they entered leave the rule (pending sends too)."""
    if not rule.exit_on:
        return 0
    e = enrollments
    did_exit = exists().where(
        event_summary.c.customer_id == e.c.customer_id,
        event_summary.c.name.in_(rule.exit_on),
        event_summary.c.last_at > e.c.entered_at,
        event_summary.c.last_at <= w.now,
    )
    which = [e.c.rule_id == rule.id, e.c.status == "active", did_exit]
    exiting: Any = None
    if not w.full:
        # only customers with a new exit event can have left since the previous tick; their
        # sends are found through the customer index, not among every due send of the rule
        exiting = select(new_events.c.customer_id).where(new_events.c.name.in_(rule.exit_on))
        which.append(e.c.customer_id.in_(exiting))
    n = conn.execute(e.update().where(*which).values(status="exited", ended_at=w.now, position=None)).rowcount
    if n:
        from engine.db.schema import sends

        leavers = [] if exiting is None else [sends.c.customer_id.in_(exiting)]
        conn.execute(
            sends.update()
            .where(
                *leavers,
                sends.c.rule_id == rule.id,
                sends.c.status == "due",
                sends.c.enrollment_id.in_(
                    select(e.c.id).where(
                        e.c.rule_id == rule.id, e.c.status == "exited", e.c.ended_at == w.now
                    )
                ),
            )
            .values(status="cancelled", reason="exit_on")
        )
    return int(n or 0)


__all__ = ["cron_times", "enroll", "exits", "or_", "rule_hash", "trigger_select"]
