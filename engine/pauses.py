"""Pausing a rule without a redeploy (`journey rules pause RULE`, `journey rules resume RULE`).

A pause is a row in `rule_pauses`, so every scheduler and every worker reads the same answer:

- a tick enters no one into a paused rule (a trigger during the pause is as if the rule were
  not written yet) and moves none of its customers on: they stay at their step. `exit_on` still
  applies, so a customer who orders during the pause does not get the cart reminder after it;
- the dispatcher claims none of its due sends, and a worker holding one (queued before the pause)
  puts it back, due, without counting an attempt: none is sent, none is dropped;
- a resume marks the row, and the next tick applies it: the rule's customers whose step fell due
  during the pause are due at that tick, so a wait after a send counts from the resume and a
  two-email series does not leave in one burst. Then the row goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, func, select

from engine.db import write_tx
from engine.db.schema import enrollments, rule_pauses, sends


@dataclass(frozen=True)
class Pause:
    rule_id: str
    paused_at: datetime
    paused_by: str | None


def paused_ids() -> Select[Any]:
    """The ids of the rules paused now, as a subquery for a statement's WHERE."""
    return select(rule_pauses.c.rule_id).where(rule_pauses.c.resumed_at.is_(None))


def paused(conn: Connection) -> dict[str, Pause]:
    """Rule id -> its pause, for every rule paused now."""
    rows = conn.execute(
        select(rule_pauses.c.rule_id, rule_pauses.c.paused_at, rule_pauses.c.paused_by).where(
            rule_pauses.c.resumed_at.is_(None)
        )
    )
    return {r.rule_id: Pause(r.rule_id, r.paused_at, r.paused_by) for r in rows}


def pause(engine: Engine, rule_id: str, *, now: datetime, by: str | None = None) -> Pause | None:
    """Pause the rule; returns None when it was paused already (its pause is kept as it was)."""
    with write_tx(engine) as conn:
        row = conn.execute(select(rule_pauses).where(rule_pauses.c.rule_id == rule_id)).first()
        if row is not None and row.resumed_at is None:
            return None
        if row is not None:  # resumed, but no tick applied it yet: paused again, nothing to apply
            conn.execute(
                rule_pauses.update()
                .where(rule_pauses.c.rule_id == rule_id)
                .values(paused_at=now, paused_by=by, resumed_at=None)
            )
        else:
            conn.execute(rule_pauses.insert().values(rule_id=rule_id, paused_at=now, paused_by=by))
    return Pause(rule_id, now, by)


def resume(engine: Engine, rule_id: str, *, now: datetime) -> Pause | None:
    """Resume the rule (the next tick applies it); returns the pause it ended, or None when the
    rule was not paused."""
    with write_tx(engine) as conn:
        row = conn.execute(
            select(rule_pauses).where(rule_pauses.c.rule_id == rule_id, rule_pauses.c.resumed_at.is_(None))
        ).first()
        if row is None:
            return None
        conn.execute(rule_pauses.update().where(rule_pauses.c.rule_id == rule_id).values(resumed_at=now))
    return Pause(row.rule_id, row.paused_at, row.paused_by)


def apply_resumes(conn: Connection, now: datetime) -> list[str]:
    """In a tick's transaction: the rules resumed since the previous tick have their customers
    whose step fell due during the pause due now, and their pause rows go. Returns their ids."""
    resumed = [
        r for (r,) in conn.execute(select(rule_pauses.c.rule_id).where(rule_pauses.c.resumed_at.is_not(None)))
    ]
    if not resumed:
        return []
    e = enrollments
    conn.execute(
        e.update()
        .where(e.c.rule_id.in_(resumed), e.c.status == "active", e.c.due_at < now)
        .values(due_at=now)
    )
    conn.execute(
        delete(rule_pauses).where(rule_pauses.c.rule_id.in_(resumed), rule_pauses.c.resumed_at.is_not(None))
    )
    return resumed


def waiting(engine: Engine, rule_id: str) -> tuple[int, int]:
    """(sends due, customers at a step) of a rule: what a pause holds, and a resume lets go."""
    with engine.connect() as conn:
        due = conn.execute(
            select(func.count()).where(sends.c.rule_id == rule_id, sends.c.status.in_(["due", "queued"]))
        ).scalar_one()
        active = conn.execute(
            select(func.count()).where(enrollments.c.rule_id == rule_id, enrollments.c.status == "active")
        ).scalar_one()
    return int(due), int(active)
