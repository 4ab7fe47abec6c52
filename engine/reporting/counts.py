"""Live counts per rule, step and variant, read from the enrollments and the send ledger.

Set-based: four grouped statements for all rules together (enrollments by position and status,
sends by step, status and reason, opens and clicks by step, and by enrollment), and one statement
per rule with a goal (its conversions); never a loop over customers.

The counts follow the customers who entered a rule in the period `[start, end]` up to `end`: what
was sent to them, how many are waiting at each step now, how many left by `exit_on`, reached the
goal, or were held out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    String,
    and_,
    case,
    cast,
    distinct,
    exists,
    func,
    literal,
    or_,
    select,
)

from engine.db import add_seconds, is_postgres
from engine.db.schema import enrollments, events, sends
from engine.delivery.status import SendStatus
from engine.rules.model import Rule

e, s = enrollments.c, sends.c

#: ledger statuses that are still on their way out
PENDING = (SendStatus.DUE.value, SendStatus.QUEUED.value, SendStatus.SENDING.value)


@dataclass
class StepCounts:
    """What happened at one step (a send, a wait, …) to the customers of the period."""

    #: sends handed to the channel
    sent: int = 0
    #: sends held back at send time, by reason (unsubscribed, frequency_cap, bounced, …)
    suppressed: dict[str, int] = field(default_factory=dict)
    #: sends that failed for good, by reason (template, refused, gave_up, …)
    failed: dict[str, int] = field(default_factory=dict)
    #: sends called off, by reason (exit_on: the customer left the rule first, …)
    cancelled: dict[str, int] = field(default_factory=dict)
    #: sends scheduled and not out yet (due, queued, being sent)
    scheduled: int = 0
    #: sent emails opened at least once (a click counts as an open)
    opened: int = 0
    #: sent emails clicked at least once
    clicked: int = 0
    #: customers standing at this step now: inside a wait, or due for the step
    waiting: int = 0

    @property
    def reached(self) -> int:
        """Ledger rows made at this step: every customer who reached a send step has one."""
        return (
            self.sent
            + sum(self.suppressed.values())
            + sum(self.failed.values())
            + sum(self.cancelled.values())
            + self.scheduled
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "reached": self.reached,
            "sent": self.sent,
            "suppressed": dict(sorted(self.suppressed.items())),
            "failed": dict(sorted(self.failed.items())),
            "cancelled": dict(sorted(self.cancelled.items())),
            "scheduled": self.scheduled,
            "opened": self.opened,
            "clicked": self.clicked,
            "waiting": self.waiting,
        }


@dataclass
class GroupCounts:
    """The figures of a whole rule, or of one variant of its split."""

    entered: int = 0
    #: still on their way through the steps
    active: int = 0
    #: went through every step
    finished: int = 0
    #: left by an `exit_on` event
    exited: int = 0
    #: held out by a split: sent nothing more
    held_out: int = 0
    #: other ends (a merged profile, …), by status
    other: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    #: customers who opened (clicked) at least one of the rule's emails
    openers: int = 0
    clickers: int = 0
    #: entries followed by the goal within its window; None for a rule without a goal
    converted: int | None = None
    #: ... of which held out
    held_out_converted: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "entered": self.entered,
            "active": self.active,
            "finished": self.finished,
            "exited": self.exited,
            "held_out": self.held_out,
            "other": dict(sorted(self.other.items())),
            "sent": self.sent,
            "opened": self.opened,
            "clicked": self.clicked,
            "openers": self.openers,
            "clickers": self.clickers,
            "converted": self.converted,
            "held_out_converted": self.held_out_converted,
        }


@dataclass
class RuleCounts:
    rule: str
    total: GroupCounts = field(default_factory=GroupCounts)
    #: by variant name (a split's variants and 'holdout'); empty for a rule without a split
    variants: dict[str, GroupCounts] = field(default_factory=dict)
    #: by step path
    steps: dict[str, StepCounts] = field(default_factory=lambda: defaultdict(StepCounts))
    #: active customers by the position they stand at, and whether their due time is still ahead
    positions: dict[tuple[str, bool], int] = field(default_factory=dict)

    def group(self, variant: str | None) -> list[GroupCounts]:
        """The totals, and the variant's figures when there is one."""
        if variant is None:
            return [self.total]
        return [self.total, self.variants.setdefault(variant, GroupCounts())]


def _period(start: datetime | None, end: datetime) -> list[Any]:
    where = [e.entered_at <= end]
    if start is not None:
        where.append(e.entered_at >= start)
    return where


def rule_counts(
    conn: Connection, rules: list[Rule], *, start: datetime | None, end: datetime
) -> dict[str, RuleCounts]:
    """The counts of each rule, for the customers who entered it in `[start, end]`."""
    out = {rule.id: RuleCounts(rule.id) for rule in rules}
    if not out:
        return out
    ids = list(out)
    period = _period(start, end)
    later = case((e.due_at > end, 1), else_=0)
    for rule_id, variant, status, position, ahead, n in conn.execute(
        select(e.rule_id, e.variant, e.status, e.position, later, func.count())
        .where(e.rule_id.in_(ids), *period)
        .group_by(e.rule_id, e.variant, e.status, e.position, later)
    ):
        rc, n = out[rule_id], int(n)
        for g in rc.group(variant):
            g.entered += n
            if status == "active":
                g.active += n
            elif status == "done":
                g.finished += n
            elif status == "exited":
                g.exited += n
            elif status == "holdout":
                g.held_out += n
            else:
                g.other[status] = g.other.get(status, 0) + n
        if status == "active" and position is not None:
            key = (position, bool(ahead))
            rc.positions[key] = rc.positions.get(key, 0) + n

    # a send made before `end` but sent after it was still scheduled at `end`
    status_then = case((and_(s.status == SendStatus.SENT.value, s.sent_at > end), "due"), else_=s.status)
    joined = sends.join(enrollments, e.id == s.enrollment_id)
    for rule_id, step, variant, status, reason, channel, n in conn.execute(
        select(s.rule_id, s.step, e.variant, status_then, s.reason, s.channel, func.count())
        .select_from(joined)
        .where(s.rule_id.in_(ids), s.created_at <= end, *period)
        .group_by(s.rule_id, s.step, e.variant, status_then, s.reason, s.channel)
    ):
        rc, n = out[rule_id], int(n)
        here = rc.steps[step]
        why = reason or "none"
        if status == SendStatus.SENT.value:
            here.sent += n
            if channel == "email":
                for g in rc.group(variant):
                    g.sent += n
        elif status == SendStatus.SUPPRESSED.value:
            here.suppressed[why] = here.suppressed.get(why, 0) + n
        elif status == SendStatus.FAILED.value:
            here.failed[why] = here.failed.get(why, 0) + n
        elif status == SendStatus.CANCELLED.value:
            here.cancelled[why] = here.cancelled.get(why, 0) + n
        else:
            here.scheduled += n

    _engagement(conn, out, ids, period, end)
    for rule in rules:
        if rule.goal is not None:
            _conversions(conn, out[rule.id], rule, period, end)
    return out


def _engaged(conn: Connection, end: datetime) -> tuple[Any, Any, list[Any]]:
    """The opens and clicks up to `end` joined with the sends they name: (FROM clause, the truth
    'this one is a click', WHERE terms). PostgreSQL folds them per send first and joins on a plain
    integer (joined on the JSON expression itself it chose a nested loop over both tables); SQLite
    looks each event's send up by the ledger's primary key (it scanned a folded subquery instead)."""
    ev = events.c
    props = ev.properties
    where = [ev.name.in_(["email_opened", "email_clicked"]), ev.ts <= end]
    if is_postgres(conn):
        text = props.op("->>")(literal("send_id", String))
        sid = case((text.op("~")("^[0-9]{1,18}$"), cast(text, BigInteger)), else_=None)
        flag = func.max(case((ev.name == "email_clicked", 1), else_=0))
        folded = select(sid.label("send_id"), flag.label("clicked")).where(*where).group_by(sid).subquery()
        return folded.join(sends, s.id == folded.c.send_id), folded.c.clicked == 1, []
    value = func.json_extract(props, "$.send_id")
    kind = func.json_type(props, "$.send_id")
    digits = and_(kind == "text", value.op("GLOB")("[0-9]*"), value.op("NOT GLOB")("*[^0-9]*"))
    sid = case((or_(kind == "integer", digits), cast(value, BigInteger)), else_=None)
    return events.join(sends, s.id == sid), ev.name == "email_clicked", where


def _engagement(
    conn: Connection, out: dict[str, RuleCounts], ids: list[str], period: list[Any], end: datetime
) -> None:
    """Opened and clicked emails per step and variant; openers and clickers per variant."""
    joined, clicked, on_events = _engaged(conn, end)
    source = joined.join(enrollments, e.id == s.enrollment_id)
    where = [*on_events, s.rule_id.in_(ids), s.status == SendStatus.SENT.value, s.sent_at <= end, *period]
    for rule_id, step, variant, opened, clicks in conn.execute(
        select(
            s.rule_id,
            s.step,
            e.variant,
            func.count(distinct(s.id)),
            func.count(distinct(case((clicked, s.id), else_=None))),
        )
        .select_from(source)
        .where(*where)
        .group_by(s.rule_id, s.step, e.variant)
    ):
        rc = out[rule_id]
        rc.steps[step].opened += int(opened)
        rc.steps[step].clicked += int(clicks)
        for g in rc.group(variant):
            g.opened += int(opened)
            g.clicked += int(clicks)
    for rule_id, variant, openers, clickers in conn.execute(
        select(
            s.rule_id,
            e.variant,
            func.count(distinct(e.id)),
            func.count(distinct(case((clicked, e.id), else_=None))),
        )
        .select_from(source)
        .where(*where)
        .group_by(s.rule_id, e.variant)
    ):
        for g in out[rule_id].group(variant):
            g.openers += int(openers)
            g.clickers += int(clickers)


def converted_entries(conn: Connection, rule: Rule, end: datetime) -> Any:
    """The SQL truth 'this enrollment reached the rule's goal within its window, by `end`'."""
    assert rule.goal is not None
    g = events.alias("goal")
    return exists().where(
        g.c.customer_id == e.customer_id,
        g.c.name == rule.goal.event,
        g.c.ts > e.entered_at,
        g.c.ts <= add_seconds(conn, e.entered_at, rule.goal.within.total_seconds()),
        g.c.ts <= end,
    )


def _conversions(conn: Connection, rc: RuleCounts, rule: Rule, period: list[Any], end: datetime) -> None:
    hit = case((converted_entries(conn, rule, end), 1), else_=0)
    held = case((e.status == "holdout", 1), else_=0)
    for g in [rc.total, *rc.variants.values()]:
        g.converted = g.held_out_converted = 0
    for variant, in_holdout, n in conn.execute(
        select(e.variant, held, func.coalesce(func.sum(hit), literal(0)))
        .where(e.rule_id == rule.id, *period)
        .group_by(e.variant, held)
    ):
        for g in rc.group(variant):
            g.converted = (g.converted or 0) + int(n)
            if in_holdout:
                g.held_out_converted = (g.held_out_converted or 0) + int(n)
