"""What is checked at send time, by the worker, not only when a send was scheduled (DESIGN).

The facts a batch needs are loaded in a few queries for the whole batch; unsubscribes and bounces
are checked again right before each group of messages leaves (`look_verdicts`), so a customer who
unsubscribes while a batch runs gets nothing from the next group on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Select, func, select

from engine.schema import customers, enrollments, event_summary, events, sends, unsubscribes


def parse_window(text: str) -> tuple[time, time]:
    start, end = text.split("-")
    h1, m1 = (int(x) for x in start.split(":"))
    h2, m2 = (int(x) for x in end.split(":"))
    return time(h1, m1), time(h2, m2)


def zone(name: str | None, default: str) -> ZoneInfo:
    for candidate in (name, default, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def quiet_until(window: str | None, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The end of the quiet window when `now` falls inside it (in the customer's zone), else None."""
    if not window:
        return None
    start, end = parse_window(window)
    local = now.astimezone(tz)
    t = local.time()
    inside = (start <= t or t < end) if start > end else (start <= t < end)
    if not inside:
        return None
    day = local.date()
    if start > end and t >= start:
        day = day + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=tz).astimezone(UTC)


@dataclass
class BatchFacts:
    """Everything the policies need for a batch of sends, loaded in a handful of queries."""

    customers: dict[int, Any] = field(default_factory=dict)
    enrollments: dict[int, Any] = field(default_factory=dict)
    trigger_events: dict[int, Any] = field(default_factory=dict)
    #: (customer id, event name) -> last time
    last_event: dict[tuple[int, str], datetime] = field(default_factory=dict)
    #: customer id -> {priority: marketing emails sent within the frequency-cap window}
    recent_sends: dict[int, dict[int, int]] = field(default_factory=dict)

    def sent_recently(self, customer_id: int, priority: int) -> int:
        """What the frequency cap counts for a send of this priority: the customer's recent
        marketing emails of the same or a higher priority (lower ones never crowd it out)."""
        return sum(n for p, n in self.recent_sends.get(customer_id, {}).items() if p >= priority)

    def count_sent(self, customer_id: int, priority: int) -> None:
        per = self.recent_sends.setdefault(customer_id, {})
        per[priority] = per.get(priority, 0) + 1

    def exited(self, enrollment_id: int | None, exit_on: Sequence[str], now: datetime) -> bool:
        if enrollment_id is None:
            return False
        row = self.enrollments.get(enrollment_id)
        if row is None or row.status == "exited":
            return True
        for name in exit_on:
            last = self.last_event.get((row.customer_id, name))
            if last is not None and row.entered_at < last <= now:
                return True
        return False


def _chunks(ids: Sequence[int], size: int = 1000) -> list[list[int]]:
    unique = sorted(set(ids))
    return [unique[i : i + size] for i in range(0, len(unique), size)]


def load_facts(
    conn: Connection, rows: Sequence[Any], *, exit_names: set[str], cap_per: timedelta | None, now: datetime
) -> BatchFacts:
    facts = BatchFacts()
    customer_ids = [r.customer_id for r in rows]
    enrollment_ids = [r.enrollment_id for r in rows if r.enrollment_id is not None]
    for chunk in _chunks(customer_ids):
        for c in conn.execute(select(customers).where(customers.c.id.in_(chunk))):
            facts.customers[c.id] = c
        if exit_names:
            for s in conn.execute(
                select(event_summary.c.customer_id, event_summary.c.name, event_summary.c.last_at).where(
                    event_summary.c.customer_id.in_(chunk), event_summary.c.name.in_(exit_names)
                )
            ):
                facts.last_event[(s.customer_id, s.name)] = s.last_at
        if cap_per is not None:
            for cid, priority, n in conn.execute(
                select(sends.c.customer_id, sends.c.priority, func.count())
                .where(
                    sends.c.customer_id.in_(chunk),
                    sends.c.status == "sent",
                    sends.c.transactional.is_(False),
                    sends.c.channel == "email",
                    sends.c.sent_at > now - cap_per,
                )
                .group_by(sends.c.customer_id, sends.c.priority)
            ):
                facts.recent_sends.setdefault(cid, {})[int(priority)] = int(n)
    trigger_ids = []
    for chunk in _chunks(enrollment_ids):
        for e in conn.execute(
            select(
                enrollments.c.id,
                enrollments.c.status,
                enrollments.c.entered_at,
                enrollments.c.customer_id,
                enrollments.c.trigger_event_id,
            ).where(enrollments.c.id.in_(chunk))
        ):
            facts.enrollments[e.id] = e
            if e.trigger_event_id is not None:
                trigger_ids.append(e.trigger_event_id)
    for chunk in _chunks(trigger_ids):
        for ev in conn.execute(select(events).where(events.c.id.in_(chunk))):
            facts.trigger_events[ev.id] = ev
    return facts


class Looked(NamedTuple):
    """A send as its group's look sees it."""

    send_id: int
    attempts: int
    customer_id: int
    channel: str
    topic: str
    transactional: bool


def covers(unsubscribe_channel: str, unsubscribe_topic: str, channel: str, topic: str) -> bool:
    """Whether an unsubscribe (channel or '*', topic or '*') stops a message on (channel, topic)."""
    return unsubscribe_channel in (channel, "*") and unsubscribe_topic in ("*", topic)


def look_verdicts(sends_: Sequence[Looked], rows: Any) -> dict[int, str | None]:
    """Per send id: 'customer_deleted', 'lease_lost' (no longer 'sending' with this claim's attempt
    count), 'unsubscribed' (not for transactional sends), 'bounced' (email) or None to send, from
    rows (1, send id, attempts, -, -), (2, customer id, 1 when bounced, -, -) and
    (3, customer id, -, channel, topic) for every unsubscribe of those customers."""
    attempts: dict[int, int] = {}
    bounced: dict[int, bool] = {}
    unsubscribed: dict[int, list[tuple[str, str]]] = {}
    for kind, key, number, channel, topic in rows:
        if kind == 1:
            attempts[key] = number
        elif kind == 2:
            bounced[key] = bool(number)
        else:
            unsubscribed.setdefault(key, []).append((channel, topic))
    out: dict[int, str | None] = {}
    for s in sends_:
        verdict: str | None = None
        if s.customer_id not in bounced:
            verdict = "customer_deleted"
        elif attempts.get(s.send_id) != s.attempts:
            verdict = "lease_lost"
        elif not s.transactional and any(
            covers(ch, tp, s.channel, s.topic) for ch, tp in unsubscribed.get(s.customer_id, ())
        ):
            verdict = "unsubscribed"
        elif s.channel == "email" and bounced[s.customer_id]:
            verdict = "bounced"
        out[s.send_id] = verdict
    return out


def opted_out_query(customer_id: Any, channel: Any, topic: Any) -> Select[Any]:
    """The customer's bounce mark and any unsubscribe that covers (channel, topic): no row when the
    customer is gone. The arguments are values or bound parameters."""
    return select(
        customers.c.email_suppressed_at,
        select(unsubscribes.c.at)
        .where(
            unsubscribes.c.customer_id == customer_id,
            unsubscribes.c.channel.in_([channel, "*"]),
            unsubscribes.c.topic.in_(["*", topic]),
        )
        .limit(1)
        .scalar_subquery(),
    ).where(customers.c.id == customer_id)


def opt_out_reason(row: Any, channel: str) -> str | None:
    """'unsubscribed', 'bounced', 'customer_deleted' or None, from a row of `opted_out_query`."""
    if row is None:
        return "customer_deleted"
    if row[1] is not None:
        return "unsubscribed"
    if channel == "email" and row[0] is not None:
        return "bounced"
    return None


def opted_out(conn: Connection, customer_id: int, channel: str, topic: str) -> str | None:
    """Checked right before each message: 'unsubscribed', 'bounced' or None."""
    return opt_out_reason(conn.execute(opted_out_query(customer_id, channel, topic)).first(), channel)
