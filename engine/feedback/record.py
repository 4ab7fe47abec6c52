"""Reports matched to their sends and recorded, once: as reserved events on the send's customer,
and as suppressions of the reported address.

A report finds its send by the `journey_send_key` metadata (`engine.delivery.mime.feedback_token`:
the send's id and a digest of its key), else by the Message-ID Journey set. Both are unguessable,
so a report that checks out with its provider but is about someone else's message matches
nothing. A report that matches no send of this database, or a customer since erased, is counted
and ignored.

Recorded once per provider report (`feedback`'s unique key): `email_delivered`, `email_bounced`
(`type` hard or soft, `reason`, `provider`), `email_complained`, stamped with the provider's time;
an open or a click becomes `email_opened` / `email_clicked` under the same message id as Journey's
own pixel and links, so each counts once whoever saw it first. A hard bounce suppresses the address
for every message, a complaint for marketing, soft bounces once `soft_bounce.count` of them fell
within `soft_bounce.within` (rules/settings.yaml).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from engine.addresses import hash_of
from engine.db import insert_ignore
from engine.db.schema import customers, feedback, sends
from engine.delivery.mime import TOKEN_DIGEST, parse_feedback_token, send_key
from engine.events import InternalEvent, record_events
from engine.feedback.report import Kind, Report, event_id
from engine.ingest.links import click_message_id
from engine.rules.durations import format_duration
from engine.rules.model import SoftBounce
from engine.suppressions import Entry, SuppressionReason, suppress

#: the reserved event each kind of report becomes
EVENTS = {
    Kind.DELIVERED: "email_delivered",
    Kind.BOUNCED: "email_bounced",
    Kind.COMPLAINED: "email_complained",
    Kind.OPENED: "email_opened",
    Kind.CLICKED: "email_clicked",
}


@dataclass(frozen=True)
class Send:
    """The send a report is about, and its customer's address."""

    id: int
    rule_id: str
    customer_id: int
    email: str | None


class Outcome:
    """What became of a report: recorded, a repeat, unmatched, or about an erased customer."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    UNMATCHED = "unmatched"
    ERASED = "erased"


@dataclass
class Recorded:
    """Per report, in order: its outcome."""

    outcomes: list[tuple[Report, str]] = field(default_factory=list)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def match(conn: Connection, reports: Sequence[Report]) -> list[Send | str]:
    """The send of each report, or why there is none (`Outcome.UNMATCHED`: not a send of this
    database; `Outcome.ERASED`: its customer was erased), in two queries at most for the sends and
    one for their customers."""
    found: list[tuple[int, str, int] | None] = [None] * len(reports)
    tokens = {i: t for i, r in enumerate(reports) if (t := parse_feedback_token(r.send_token)) is not None}
    if tokens:
        rows = {
            r.id: r
            for r in conn.execute(
                select(
                    sends.c.id, sends.c.rule_id, sends.c.step, sends.c.customer_id, sends.c.occurrence
                ).where(
                    sends.c.id.in_(sorted({sid for sid, _ in tokens.values()})), sends.c.channel == "email"
                )
            )
        }
        for i, (sid, digest) in tokens.items():
            row = rows.get(sid)
            key = send_key(row.rule_id, row.step, row.customer_id, row.occurrence) if row else None
            if row is not None and key is not None and _digest(key)[:TOKEN_DIGEST] == digest:
                found[i] = (int(row.id), str(row.rule_id), int(row.customer_id))
    wanted = {i: f"<{r.message_id}>" for i, r in enumerate(reports) if found[i] is None and r.message_id}
    if wanted:
        by_mid = {
            r.message_id: (int(r.id), str(r.rule_id), int(r.customer_id))
            for r in conn.execute(
                select(sends.c.id, sends.c.rule_id, sends.c.customer_id, sends.c.message_id).where(
                    sends.c.message_id.in_(sorted(set(wanted.values()))), sends.c.channel == "email"
                )
            )
        }
        for i, mid in wanted.items():
            found[i] = by_mid.get(mid)
    ids = sorted({f[2] for f in found if f is not None})
    people = {
        r.id: r
        for r in conn.execute(
            select(customers.c.id, customers.c.email, customers.c.erased_at).where(customers.c.id.in_(ids))
        )
    }
    out: list[Send | str] = []
    for f in found:
        person = people.get(f[2]) if f is not None else None
        if f is None or person is None:
            out.append(Outcome.UNMATCHED)
        elif person.erased_at is not None:
            out.append(Outcome.ERASED)
        else:
            out.append(Send(f[0], f[1], f[2], person.email))
    return out


def _event(report: Report, send: Send, url: str | None) -> InternalEvent:
    props: dict[str, Any] = {"provider": report.provider, "send_id": send.id, "rule": send.rule_id}
    key = _digest(f"{report.provider}:{report.event_id}")[:16]
    if report.kind is Kind.OPENED:
        mid = f"email_opened:{send.id}"  # Journey's own pixel records the same: one open per email
    elif report.kind is Kind.CLICKED:
        props["url"] = url
        mid = click_message_id(send.id, url) if url else f"email_clicked:{send.id}:{key}"
    elif report.kind is Kind.BOUNCED:
        props.update(type=report.bounce_type or "soft", reason=report.reason)
        mid = f"email_bounced:{send.id}:{key}"
    else:  # delivered, complained: once per email, whichever way the provider reported it
        if report.reason:
            props["reason"] = report.reason
        mid = f"{EVENTS[report.kind]}:{send.id}"
    return InternalEvent(send.customer_id, EVENTS[report.kind], report.occurred_at, props, mid)


def _soft_bounces(conn: Connection, address_hash: str, at: datetime, rule: SoftBounce) -> int:
    f = feedback.c
    return int(
        conn.execute(
            select(func.count()).where(
                and_(
                    f.address_hash == address_hash,
                    f.kind == Kind.BOUNCED.value,
                    f.bounce_type == "soft",
                    f.occurred_at > at - rule.within,
                    f.occurred_at <= at,
                )
            )
        ).scalar_one()
    )


def _suppression(conn: Connection, report: Report, send: Send, soft: SoftBounce) -> Entry | None:
    address = report.recipient if hash_of(report.recipient) else send.email
    h = hash_of(address)
    if address is None or h is None:
        return None
    at = report.occurred_at
    if report.kind is Kind.COMPLAINED:
        return Entry.of(address, SuppressionReason.COMPLAINT, report.provider, at, report.reason)
    if report.kind is not Kind.BOUNCED:
        return None
    if report.bounce_type == "hard":
        return Entry.of(address, SuppressionReason.HARD_BOUNCE, report.provider, at, report.reason)
    n = _soft_bounces(conn, h, at, soft)
    if n < soft.count:
        return None
    why = f"{n} soft bounces within {format_duration(soft.within)}" + (
        f": {report.reason}" if report.reason else ""
    )
    return Entry.of(address, SuppressionReason.HARD_BOUNCE, report.provider, at, why)


def record(
    conn: Connection,
    reports: Sequence[Report],
    *,
    now: datetime,
    soft_bounce: SoftBounce,
    click_target: Callable[[str, int], str],
) -> Recorded:
    """Match and record reports in the caller's transaction. `click_target(url, send id)` gives
    the URL behind one of Journey's own click links (the provider saw the tracked link)."""
    result = Recorded()
    sends_ = match(conn, reports)
    rows: dict[str, dict[str, Any]] = {}
    for report, send in zip(reports, sends_, strict=True):
        if not isinstance(send, Send):
            continue
        eid = event_id(report.event_id)
        rows.setdefault(
            eid,
            {
                "provider": report.provider,
                "event_id": eid,
                "kind": report.kind.value,
                "bounce_type": report.bounce_type,
                "send_id": send.id,
                "rule_id": send.rule_id,
                "customer_id": send.customer_id,
                "address_hash": hash_of(report.recipient) or hash_of(send.email),
                "occurred_at": report.occurred_at,
                "received_at": now,
            },
        )
    new: set[tuple[str, str]] = set()
    if rows:
        stmt = insert_ignore(conn, feedback, ["provider", "event_id"]).returning(
            feedback.c.provider, feedback.c.event_id
        )
        new = {(p, e) for p, e in conn.execute(stmt, list(rows.values()))}
    events: list[InternalEvent] = []
    entries: list[Entry] = []
    for report, send in zip(reports, sends_, strict=True):
        if not isinstance(send, Send):
            result.outcomes.append((report, send))
            continue
        key = (report.provider, event_id(report.event_id))
        if key not in new:
            result.outcomes.append((report, Outcome.DUPLICATE))
            continue
        new.discard(key)  # the same report twice in one request: the second is a repeat
        url = click_target(report.url, send.id) if report.url else None
        events.append(_event(report, send, url))
        entry = _suppression(conn, report, send, soft_bounce)
        if entry is not None:
            entries.append(entry)
        result.outcomes.append((report, Outcome.RECORDED))
    record_events(conn, events)
    suppress(conn, entries)
    return result
