"""Deliverability in `journey report` and `journey health`: delivered, bounce and complaint rates
per rule and overall, from the providers' reports (engine.feedback) and the SMTP server's refusals.

Mailbox providers ask bulk senders to keep spam complaints under 0.3% of what they deliver (aim for
0.1%); above it their mail is filtered or refused, for every customer. A rate above
`COMPLAINT_ALERT` is flagged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select

from engine.db.schema import feedback, sends
from engine.reporting.stats import rate

#: the complaint rate mailbox providers tolerate from a bulk sender (Gmail, Yahoo: 0.3%)
COMPLAINT_ALERT = 0.003

DEFINITIONS = {
    "delivered": "emails the provider reported delivered (— when the provider reports no deliveries)",
    "bounced": "emails the SMTP server refused for good, or the provider reported bounced (a soft "
    "bounce later delivered is not counted)",
    "complained": "emails the recipient reported as spam",
    "rates": "delivered, bounced and complained, each over the emails sent or refused; a complaint "
    f"rate above {100 * COMPLAINT_ALERT:.1f}% is flagged (the bulk senders' limit of the large mailbox providers)",
}


@dataclass
class Deliverability:
    """One rule's (or all rules') figures."""

    #: emails handed to the channel: sent, or refused by the SMTP server
    emails: int = 0
    delivered: int = 0
    bounced: int = 0
    complained: int = 0
    delivered_rate: float | None = None
    bounce_rate: float | None = None
    complaint_rate: float | None = None
    #: the complaint rate is above COMPLAINT_ALERT
    complaint_alert: bool = False

    def finish(self, deliveries_reported: bool) -> Deliverability:
        self.delivered_rate = rate(self.delivered, self.emails) if deliveries_reported else None
        self.bounce_rate = rate(self.bounced, self.emails)
        self.complaint_rate = rate(self.complained, self.emails)
        self.complaint_alert = self.complaint_rate is not None and self.complaint_rate > COMPLAINT_ALERT
        return self


@dataclass
class _Sets:
    emails: int = 0
    delivered: set[int] = field(default_factory=set)
    bounced: set[int] = field(default_factory=set)
    soft: set[int] = field(default_factory=set)
    complained: set[int] = field(default_factory=set)

    def figures(self, deliveries_reported: bool) -> Deliverability:
        bounced = self.bounced | (self.soft - self.delivered)
        return Deliverability(self.emails, len(self.delivered), len(bounced), len(self.complained)).finish(
            deliveries_reported
        )


def _emails_by_rule(conn: Connection, since: datetime | None, now: datetime) -> dict[str, int]:
    s = sends.c
    sent = and_(s.status == "sent", s.sent_at <= now)
    refused = and_(s.status == "failed", s.reason == "refused", s.due_at <= now)
    query = select(s.rule_id, func.count()).where(s.channel == "email", or_(sent, refused))
    if since is not None:
        query = query.where(or_(and_(sent, s.sent_at > since), and_(refused, s.due_at > since)))
    return {rule: int(n) for rule, n in conn.execute(query.group_by(s.rule_id))}


def _refused(conn: Connection, since: datetime | None, now: datetime) -> list[tuple[str, int]]:
    s = sends.c
    query = select(s.rule_id, s.id).where(
        s.channel == "email", s.status == "failed", s.reason == "refused", s.due_at <= now
    )
    if since is not None:
        query = query.where(s.due_at > since)
    return [(rule, int(sid)) for rule, sid in conn.execute(query)]


def figures(
    conn: Connection, now: datetime, since: datetime | None = None
) -> tuple[Deliverability, dict[str, Deliverability]]:
    """(all rules, per rule) for the emails of (since, now] and the reports about them."""
    by_rule: dict[str, _Sets] = defaultdict(_Sets)
    total = _Sets()
    for rule, n in _emails_by_rule(conn, since, now).items():
        by_rule[rule].emails = n
        total.emails += n
    for rule, sid in _refused(conn, since, now):
        by_rule[rule].bounced.add(sid)
        total.bounced.add(sid)
    f = feedback.c
    query = select(f.rule_id, f.send_id, f.kind, f.bounce_type).where(
        f.send_id.is_not(None), f.occurred_at <= now, f.kind.in_(["delivered", "bounced", "complained"])
    )
    if since is not None:
        query = query.where(f.occurred_at > since)
    deliveries = False
    for rule, sid, kind, bounce_type in conn.execute(query):
        for sets in (by_rule[rule], total):
            if kind == "delivered":
                sets.delivered.add(sid)
                deliveries = True
            elif kind == "complained":
                sets.complained.add(sid)
            elif bounce_type == "hard":
                sets.bounced.add(sid)
            else:
                sets.soft.add(sid)
    return total.figures(deliveries), {rule: sets.figures(deliveries) for rule, sets in by_rule.items()}


def apply(conn: Connection, report: Any, now: datetime) -> None:
    """Fill a report's deliverability figures: overall, and on each rule's figures."""
    total, per_rule = figures(conn, now)
    report.deliverability = total
    for f in report.rules:
        d = per_rule.get(f.rule)
        if d is not None:
            f.deliverability = d
    report.definitions.update(DEFINITIONS)


def last_day(engine: Engine, now: datetime) -> Deliverability:
    """The figures of the last 24 hours (for `journey health`)."""
    with engine.connect() as conn:
        return figures(conn, now, since=now - timedelta(days=1))[0]
