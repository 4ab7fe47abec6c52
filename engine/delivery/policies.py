"""What is checked at send time, by the worker, not only when a send was scheduled (DESIGN).

The facts a batch needs are loaded in a few queries for the whole batch; unsubscribes, bounces and
the suppression list are checked again right before each group of messages leaves
(`look_verdicts`), so a customer who unsubscribes, or whose address bounces or complains, while a
batch runs gets nothing from the next group on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Select, func, select

from engine.addresses import hash_of
from engine.db.schema import customers, enrollments, event_summary, events, sends, unsubscribes
from engine.db.types import among
from engine.delivery.status import Reason, SendRow, SendStatus
from engine.pauses import paused_ids
from engine.rules.model import FrequencyCap, Rule, SettingsFile
from engine.suppressions import blocks, reasons_of


def zone(name: str | None, default: str) -> ZoneInfo:
    for candidate in (name, default, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


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
    #: customer id -> the hash of their address (engine.addresses), None without a valid one
    address_hash: dict[int, str | None] = field(default_factory=dict)
    #: address hash -> why it is on the suppression list
    suppressed: dict[str, str] = field(default_factory=dict)

    def suppression(self, customer_id: int) -> str | None:
        """The suppression reason of the customer's address, or None."""
        h = self.address_hash.get(customer_id)
        return None if h is None else self.suppressed.get(h)

    #: the rules paused now (`journey rules pause`): their sends wait
    paused_rules: set[str] = field(default_factory=set)

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
    facts.paused_rules = {r for (r,) in conn.execute(paused_ids())}
    customer_ids = [r.customer_id for r in rows]
    enrollment_ids = [r.enrollment_id for r in rows if r.enrollment_id is not None]
    for chunk in _chunks(customer_ids):
        for c in conn.execute(select(customers).where(among(conn.dialect, customers.c.id, chunk))).all():
            facts.customers[c.id] = c
            facts.address_hash[c.id] = hash_of(c.email)
        hashes = [h for cid in chunk if (h := facts.address_hash.get(cid)) is not None]
        facts.suppressed.update(reasons_of(conn, hashes))
        if exit_names:
            for s in conn.execute(
                select(event_summary.c.customer_id, event_summary.c.name, event_summary.c.last_at).where(
                    among(conn.dialect, event_summary.c.customer_id, chunk),
                    event_summary.c.name.in_(exit_names),
                )
            ).all():
                facts.last_event[(s.customer_id, s.name)] = s.last_at
        if cap_per is not None:
            for cid, priority, n in conn.execute(
                select(sends.c.customer_id, sends.c.priority, func.count())
                .where(
                    among(conn.dialect, sends.c.customer_id, chunk),
                    sends.c.status == "sent",
                    sends.c.transactional.is_(False),
                    sends.c.channel == "email",
                    sends.c.sent_at > now - cap_per,
                )
                .group_by(sends.c.customer_id, sends.c.priority)
            ).all():
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
            ).where(among(conn.dialect, enrollments.c.id, chunk))
        ).all():
            facts.enrollments[e.id] = e
            if e.trigger_event_id is not None:
                trigger_ids.append(e.trigger_event_id)
    for chunk in _chunks(trigger_ids):
        for ev in conn.execute(select(events).where(among(conn.dialect, events.c.id, chunk))).all():
            facts.trigger_events[ev.id] = ev
    return facts


class Looked(NamedTuple):
    """A send as its group's look sees it."""

    send_id: int
    attempts: int
    customer_id: int
    channel: str
    topics: tuple[str, ...]
    transactional: bool
    #: the hash of the address an email goes to (engine.addresses), for the suppression list
    address: str | None = None


def covers(unsubscribe_channel: str, unsubscribe_topic: str, channel: str, topics: tuple[str, ...]) -> bool:
    """Whether an unsubscribe (channel or '*', topic or '*') stops a message on `channel` whose
    rule is stopped by an opt-out of any of `topics`."""
    return unsubscribe_channel in (channel, "*") and (unsubscribe_topic == "*" or unsubscribe_topic in topics)


def look_verdicts(sends_: Sequence[Looked], rows: Any) -> dict[int, str | None]:
    """Per send id: 'customer_deleted', 'lease_lost' (no longer 'sending' with this claim's attempt
    count), 'unsubscribed' (not for transactional sends), 'bounced' (email), the suppression
    list's reason ('hard_bounce', 'erased'; 'complaint', 'manual' not for transactional sends) or
    None to send, from rows (1, send id, attempts, -, -), (2, customer id, 1 when bounced, -, -),
    (3, customer id, -, channel, topic) for every unsubscribe of those customers and
    (4, -, -, address hash, reason) for every suppressed address of the group."""
    attempts: dict[int, int] = {}
    bounced: dict[int, bool] = {}
    unsubscribed: dict[int, list[tuple[str, str]]] = {}
    suppressed: dict[str, str] = {}
    for kind, key, number, channel, topic in rows:
        if kind == 1:
            attempts[key] = number
        elif kind == 2:
            bounced[key] = bool(number)
        elif kind == 3:
            unsubscribed.setdefault(key, []).append((channel, topic))
        else:
            suppressed[channel] = topic
    out: dict[int, str | None] = {}
    for s in sends_:
        verdict: str | None = None
        if s.customer_id not in bounced:
            verdict = "customer_deleted"
        elif attempts.get(s.send_id) != s.attempts:
            verdict = "lease_lost"
        elif not s.transactional and any(
            covers(ch, tp, s.channel, s.topics) for ch, tp in unsubscribed.get(s.customer_id, ())
        ):
            verdict = "unsubscribed"
        elif s.channel == "email" and bounced[s.customer_id]:
            verdict = "bounced"
        elif s.channel == "email" and s.address is not None:
            reason = suppressed.get(s.address)
            if blocks(reason, transactional=s.transactional):
                verdict = reason
        out[s.send_id] = verdict
    return out


def opted_out_query(customer_id: Any, channel: Any, topics: tuple[str, ...]) -> Select[Any]:
    """The customer's bounce mark and any unsubscribe that covers `channel` and one of `topics`: no
    row when the customer is gone. `customer_id` and `channel` are values or bound parameters."""
    return select(
        customers.c.email_suppressed_at,
        select(unsubscribes.c.at)
        .where(
            unsubscribes.c.customer_id == customer_id,
            unsubscribes.c.channel.in_([channel, "*"]),
            unsubscribes.c.topic.in_(["*", *topics]),
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


def opted_out(conn: Connection, customer_id: int, channel: str, topics: tuple[str, ...]) -> str | None:
    """'unsubscribed', 'bounced' or None for a message on `channel` of a rule with these topics."""
    return opt_out_reason(conn.execute(opted_out_query(customer_id, channel, topics)).first(), channel)


#: a policy's verdict: (the send's new status, why, its new due_at when it waits again)
Verdict = tuple[SendStatus, Reason, datetime | None]


def counts_for_cap(row: SendRow) -> bool:
    """What the frequency cap is about: marketing email (not transactional sends, not webhooks)."""
    return not row.transactional and row.channel == "email"


def capped(row: SendRow, facts: BatchFacts, cap: FrequencyCap | None) -> bool:
    """The frequency cap holds this send back: the customer already had `max` marketing emails
    of its priority or higher within the cap's window."""
    return (
        cap is not None
        and counts_for_cap(row)
        and facts.sent_recently(row.customer_id, row.priority) >= cap.max
    )


def send_verdict(
    row: SendRow, rule: Rule, customer: Any, facts: BatchFacts, settings: SettingsFile, now: datetime
) -> Verdict | None:
    """None to send now; else (status, reason, new due_at). Unsubscribes are not checked here but
    right before the send's group leaves (the ledger's look)."""
    if customer is None:
        return (SendStatus.CANCELLED, Reason.CUSTOMER_DELETED, None)
    if row.rule_id in facts.paused_rules:  # queued before the pause: due again, sent after resume
        return (SendStatus.DUE, Reason.PAUSED, row.due_at)
    if facts.exited(row.enrollment_id, list(rule.exit_on), now):
        return (SendStatus.CANCELLED, Reason.EXIT_ON, None)
    if row.channel == "email":
        if not customer.email:
            return (SendStatus.SUPPRESSED, Reason.NO_EMAIL, None)
        if customer.email_suppressed_at is not None:
            return (SendStatus.SUPPRESSED, Reason.BOUNCED, None)
        listed = facts.suppression(row.customer_id)
        if listed is not None and blocks(listed, transactional=row.transactional):
            return (SendStatus.SUPPRESSED, Reason(listed), None)
    if not rule.transactional:
        if capped(row, facts, settings.frequency_cap):
            return (SendStatus.SUPPRESSED, Reason.FREQUENCY_CAP, None)
        # the settings' quiet hours are the customer's nights, for email; a webhook (a note to
        # the team) waits only when its rule sets quiet_hours itself
        window = rule.quiet_hours or (settings.quiet_hours if row.channel == "email" else None)
        if window is not None:
            until = window.until(zone(customer.timezone, settings.default_timezone), now)
            if until is not None:
                return (SendStatus.DUE, Reason.QUIET_HOURS, until)
    return None


MAX_ATTEMPTS = 8
#: first retry after this long, doubling each attempt (with jitter), at most a day
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=24)


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter: 1, 2, 4 … minutes, at most a day."""
    base: timedelta = min(BACKOFF_BASE * (2 ** max(0, attempts - 1)), BACKOFF_MAX)
    jitter: float = 0.5 + (rng or random.Random()).random() / 2
    return base * jitter
