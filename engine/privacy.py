"""What Journey holds about one customer: all of it as JSON (`journey customers export ID`), or
none of it (`journey customers erase ID`), as CONTRACT 13 and 14 say (GDPR articles 15 and 17).

Erasure removes the customer's personal data: attributes and known traits, events, summaries,
enrollments and opt-outs, the rendered content and answers kept on their sends, and their
address. The address stays on the suppression list as `erased`, stored as its hash only, so that
a re-import under any id is not mailed. What reports count stays, anonymised: the ledger's rows
(rule, status, times), the stage history and the delivery reports keep the customer's internal
number, whose row is emptied and renamed, never deleted (a new customer never takes its number).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, update

from engine.addresses import hash_of
from engine.db import json_field, write_tx
from engine.db.schema import (
    customer_aliases,
    customers,
    enrollments,
    event_summary,
    events,
    feedback,
    sends,
    stage_history,
    suppressions,
    unsubscribes,
)
from engine.delivery.status import Reason, SendStatus
from engine.errors import JourneyError
from engine.suppressions import Entry, SuppressionReason, suppress

#: the external id an erased customer's row takes: `erased:` and its internal number
ERASED_PREFIX = "erased:"


class UnknownCustomer(JourneyError):
    """No customer has this id (or they were erased)."""

    def __init__(self, external_id: str) -> None:
        super().__init__(f"no customer '{external_id}' (unknown, or erased)")


def _customer(conn: Connection, external_id: str) -> Any:
    row = conn.execute(
        select(customers).where(customers.c.external_id == external_id, customers.c.erased_at.is_(None))
    ).first()
    if row is None:
        raise UnknownCustomer(external_id)
    return row


def _iso(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def _rows(conn: Connection, query: Any, skip: tuple[str, ...] = ("customer_id",)) -> list[dict[str, Any]]:
    return [{k: _iso(v) for k, v in row._mapping.items() if k not in skip} for row in conn.execute(query)]


def export(engine: Engine, external_id: str) -> dict[str, Any]:
    """Everything held about the customer: their row, the ids merged into them, every event,
    summary, stage change, opt-out, enrollment and send, their address's suppression and the delivery reports about them."""
    with engine.connect() as conn:
        c = _customer(conn, external_id)
        cid = c.id
        person = {k: _iso(v) for k, v in c._mapping.items() if k not in ("id", "salt", "erased_at")}
        person["id"] = person.pop("external_id")
        if c.referred_by is not None:
            person["referred_by"] = conn.execute(
                select(customers.c.external_id).where(customers.c.id == c.referred_by)
            ).scalar()
        h = hash_of(c.email)
        return {
            "customer": person,
            "events": _rows(
                conn,
                select(
                    events.c.name, events.c.ts, events.c.received_at, events.c.message_id, events.c.properties
                )
                .where(events.c.customer_id == cid)
                .order_by(events.c.ts, events.c.id),
            ),
            "merged_ids": _rows(  # the anonymous and other ids merged into this customer
                conn,
                select(customer_aliases.c.alias, customer_aliases.c.merged_at)
                .where(customer_aliases.c.customer_id == cid)
                .order_by(customer_aliases.c.merged_at, customer_aliases.c.alias),
            ),
            "summaries": _rows(
                conn,
                select(event_summary)
                .where(event_summary.c.customer_id == cid)
                .order_by(event_summary.c.name),
                skip=("customer_id", "last_event_id"),
            ),
            "stages": _rows(
                conn,
                select(stage_history.c.from_stage, stage_history.c.to_stage, stage_history.c.at)
                .where(stage_history.c.customer_id == cid)
                .order_by(stage_history.c.at, stage_history.c.id),
            ),
            "unsubscribes": _rows(conn, select(unsubscribes).where(unsubscribes.c.customer_id == cid)),
            "enrollments": _rows(
                conn,
                select(enrollments).where(enrollments.c.customer_id == cid).order_by(enrollments.c.id),
                skip=("customer_id", "id", "bucket"),
            ),
            "sends": _rows(
                conn,
                select(sends).where(sends.c.customer_id == cid).order_by(sends.c.id),
                skip=("customer_id", "lease_until", "enrollment_id"),
            ),
            "suppressions": _rows(
                conn, select(suppressions).where(suppressions.c.address_hash == h), skip=("address_hash",)
            )
            if h
            else [],
            "delivery_reports": _rows(
                conn,
                select(
                    feedback.c.provider,
                    feedback.c.kind,
                    feedback.c.bounce_type,
                    feedback.c.send_id,
                    feedback.c.rule_id,
                    feedback.c.occurred_at,
                )
                .where(feedback.c.customer_id == cid)
                .order_by(feedback.c.occurred_at, feedback.c.id),
            ),
        }


@dataclass
class Erased:
    """What an erasure removed."""

    events: int = 0
    enrollments: int = 0
    sends: int = 0
    #: the address was put on the suppression list as `erased`
    suppressed: bool = False


def erase(engine: Engine, external_id: str, *, now: datetime) -> Erased:
    """Erase the customer's personal data in one transaction (UnknownCustomer for an unknown or
    already erased id)."""
    done = Erased()
    with write_tx(engine) as conn:
        c = _customer(conn, external_id)
        cid = c.id
        # the address: on the list as a hash only; other addresses reports named lose their plain form
        hashes = {
            h
            for (h,) in conn.execute(
                select(feedback.c.address_hash).where(feedback.c.customer_id == cid).distinct()
            )
            if h
        }
        if hash_of(c.email):
            suppress(conn, [Entry.of(c.email, SuppressionReason.ERASED, "erasure", now)])
            done.suppressed = True
        if hashes:
            conn.execute(
                update(suppressions)
                .where(suppressions.c.address_hash.in_(sorted(hashes)))
                .values(address=None)
            )
        done.events = int(conn.execute(delete(events).where(events.c.customer_id == cid)).rowcount or 0)
        conn.execute(delete(event_summary).where(event_summary.c.customer_id == cid))
        # the ids merged into the customer (anonymous ids are personal data too)
        conn.execute(delete(customer_aliases).where(customer_aliases.c.customer_id == cid))
        conn.execute(delete(unsubscribes).where(unsubscribes.c.customer_id == cid))
        done.enrollments = int(
            conn.execute(delete(enrollments).where(enrollments.c.customer_id == cid)).rowcount or 0
        )
        # the ledger keeps what reports count; the content rendered for the customer goes
        conn.execute(
            update(sends)
            .where(sends.c.customer_id == cid, sends.c.status.in_([SendStatus.DUE, SendStatus.QUEUED]))
            .values(status=SendStatus.CANCELLED, reason=Reason.ERASED, lease_until=None)
        )
        done.sends = int(
            conn.execute(
                update(sends)
                .where(sends.c.customer_id == cid)
                .values(subject=None, response=None, error=None)
            ).rowcount
            or 0
        )
        conn.execute(update(feedback).where(feedback.c.customer_id == cid).values(address_hash=None))
        _forget_referral(conn, c.external_id)
        conn.execute(
            update(customers)
            .where(customers.c.id == cid)
            .values(
                external_id=f"{ERASED_PREFIX}{cid}",
                email=None,
                phone=None,
                timezone=None,
                locale=None,
                first_name=None,
                attributes={},
                referral_code=None,
                referred_by=None,
                identified_at=None,
                email_suppressed_at=None,
                email_suppressed_reason=None,
                erased_at=now,
            )
        )
    return done


def _forget_referral(conn: Connection, external_id: str) -> None:
    """The referrer's `referral_converted` events name the customer they referred: not any more."""
    named = json_field(conn, events.c.properties, "referred_customer", "text") == external_id
    for eid, owner, props in conn.execute(
        select(events.c.id, events.c.customer_id, events.c.properties).where(
            events.c.name == "referral_converted", named
        )
    ):
        scrubbed = {**(props or {}), "referred_customer": ERASED_PREFIX.rstrip(":")}
        conn.execute(update(events).where(events.c.id == eid).values(properties=scrubbed))
        conn.execute(
            update(event_summary)
            .where(event_summary.c.customer_id == owner, event_summary.c.last_event_id == eid)
            .values(last_properties=scrubbed)
        )
