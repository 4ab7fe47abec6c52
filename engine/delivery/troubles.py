"""Sends in trouble, for people: stuck past their lease, failing again and again, failed in the
last hour (by reason); and what an operator does about them (`journey sends list|retry|cancel`).

A stuck send is one a worker claimed and never finished (`sending` past its lease); the dispatcher
takes it back, but a send stuck again and again points at a worker that dies on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, literal_column, or_, select, update

from engine.db.schema import customers, sends
from engine.delivery.status import Reason, SendStatus

#: a send retried for our own reasons this many times or more is "failing repeatedly"
FAILING_AFTER = 2
#: the statuses `list` shows: failed, stuck (sending past the lease), failing (due, retried)
KINDS = ("failed", "stuck", "failing")


@dataclass(frozen=True)
class Troubles:
    stuck: int
    failing: int
    #: failures in the last hour, by reason
    failed_last_hour: dict[str, int]


def _where(kind: str, now: datetime) -> Any:
    if kind == "failed":
        return sends.c.status == SendStatus.FAILED
    if kind == "stuck":
        return and_(sends.c.status == SendStatus.SENDING, sends.c.lease_until < now)
    if kind == "failing":
        # through the partial index of these rows (ix_sends_retrying), whose WHERE names the
        # status and reason: as constants here, so that a plan PostgreSQL keeps for the prepared
        # statement (a /metrics scrape runs it again and again) can use it too
        return and_(
            sends.c.status == literal_column(f"'{SendStatus.DUE.value}'"),
            sends.c.reason == literal_column(f"'{Reason.RETRY.value}'"),
            sends.c.attempts >= FAILING_AFTER,
        )
    raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")


def troubles(engine: Engine, now: datetime) -> Troubles:
    """The figures `journey health` and /metrics report."""
    with engine.connect() as conn:
        stuck = conn.execute(select(func.count()).select_from(sends).where(_where("stuck", now))).scalar_one()
        failing = conn.execute(
            select(func.count()).select_from(sends).where(_where("failing", now))
        ).scalar_one()
        by_reason = conn.execute(
            select(sends.c.reason, func.count())
            .where(sends.c.failed_at > now - timedelta(hours=1), sends.c.status == SendStatus.FAILED)
            .group_by(sends.c.reason)
        ).all()
    return Troubles(int(stuck), int(failing), {str(r or "unknown"): int(n) for r, n in by_reason})


def listing(
    engine: Engine, kind: str, now: datetime, *, rule: str | None = None, limit: int = 1000
) -> list[Any]:
    """Sends of `kind` (failed, stuck, failing), newest first: id, rule, step, customer, template,
    status, reason, attempts, due and failed times, error."""
    query = (
        select(
            sends.c.id,
            sends.c.rule_id,
            sends.c.step,
            customers.c.external_id.label("customer"),
            sends.c.template,
            sends.c.status,
            sends.c.reason,
            sends.c.attempts,
            sends.c.due_at,
            sends.c.failed_at,
            sends.c.error,
        )
        .select_from(sends.outerjoin(customers, customers.c.id == sends.c.customer_id))
        .where(_where(kind, now))
        .order_by(sends.c.id.desc())
        .limit(limit)
    )
    if rule is not None:
        query = query.where(sends.c.rule_id == rule)
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def _chosen(ids: Sequence[int], rule: str | None, reason: str | None) -> Any:
    terms: list[ColumnElement[bool]] = []
    if ids:
        terms.append(sends.c.id.in_(list(ids)))
    if rule is not None:
        terms.append(sends.c.rule_id == rule)
    if reason is not None:
        terms.append(sends.c.reason == reason)
    if not terms:
        raise ValueError("name the sends: ids, a rule or a reason")
    return and_(*terms)


def _in_trouble(now: datetime) -> Any:
    return or_(_where("failed", now), _where("stuck", now), _where("failing", now))


def retry(
    engine: Engine,
    now: datetime,
    ids: Sequence[int] = (),
    *,
    rule: str | None = None,
    reason: str | None = None,
) -> int:
    """Failed, stuck or failing sends chosen by id, rule or reason: due now, with fresh attempts.
    Policies (unsubscribes, caps, quiet hours) are checked again when they go. Returns how many."""
    return _set(
        engine,
        and_(_chosen(ids, rule, reason), _in_trouble(now)),
        status=SendStatus.DUE,
        due_at=now,
        attempts=0,
        lease_until=None,
        failed_at=None,
        reason=None,
    )


def cancel(
    engine: Engine,
    now: datetime,
    ids: Sequence[int] = (),
    *,
    rule: str | None = None,
    reason: str | None = None,
) -> int:
    """Failed, stuck, failing or due sends chosen by id, rule or reason: cancelled (reason
    `manual`), never sent. Returns how many."""
    chosen = and_(_chosen(ids, rule, reason), or_(_in_trouble(now), sends.c.status == SendStatus.DUE))
    return _set(engine, chosen, status=SendStatus.CANCELLED, lease_until=None, reason=Reason.MANUAL)


def _set(engine: Engine, chosen: Any, **values: Any) -> int:
    """Set `values` on the chosen sends, in one statement; returns how many."""
    with engine.begin() as conn:
        return int(conn.execute(update(sends).where(chosen).values(**values)).rowcount or 0)
