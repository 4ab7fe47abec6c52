"""Broadcasts (`journey broadcast`, CONTRACT sections 11 and 14): one message to each member of a
segment, once.

A broadcast schedules one ledger row per member, due at `at`, under the rule id
`broadcast.ID` (step '0', occurrence 0), so the send key makes it once per customer and id: the
same id again schedules nothing. The next dispatch delivers them like any marketing send, so
opt-outs, suppressions, the frequency cap and quiet hours are checked at send time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, exists, func, literal, select, true

from engine.db import insert_ignore, write_tx
from engine.db.schema import customers, segment_members, segment_state, sends
from engine.errors import JourneyError
from engine.rules.checks import template_exists
from engine.rules.loader import BROADCAST_PREFIX, RuleSet
from engine.rules.yaml import suggest

#: members scheduled per statement (progress is reported after each)
BATCH = 10_000


@dataclass
class BroadcastResult:
    broadcast_id: str
    members: int
    scheduled: int
    #: the id was used before: nothing new was scheduled
    repeated: bool

    def summary(self) -> str:
        if self.repeated:
            return (
                f"broadcast {self.broadcast_id} was scheduled before: nothing new scheduled "
                f"(give another --id to send again)"
            )
        return (
            f"broadcast {self.broadcast_id}: {self.scheduled:,} sends scheduled for {self.members:,} members"
        )


def broadcast(
    engine: Engine,
    ruleset: RuleSet,
    template: str,
    segment: str,
    *,
    at: datetime,
    now: datetime,
    broadcast_id: str | None = None,
    templates_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BroadcastResult:
    """Schedule `template` for every member of `segment` (as of the last tick), due at `at`."""
    names = [s.name for s in ruleset.segments]
    if segment not in names:
        hint = suggest(segment, names)
        known = ", ".join(names) if names else "none: define them in rules/segments.yaml"
        raise JourneyError(f"unknown segment '{segment}' (segments: {known})" + (f" {hint}" if hint else ""))
    if templates_dir is not None and not template_exists(templates_dir, template):
        raise JourneyError(
            f"template '{template}' not found (needs {template}.subject.j2 and {template}.html.j2 or .txt.j2)"
        )
    bid = broadcast_id or f"{template}.{segment}"
    rule_id = BROADCAST_PREFIX + bid
    try:
        ruleset.rule(rule_id)
    except KeyError:
        raise JourneyError(
            f"'{bid}' is not a broadcast id: use letters, digits, '_', '.' and '-' (up to 100 characters)"
        ) from None
    m = segment_members
    with write_tx(engine) as conn:
        if (
            conn.execute(select(segment_state.c.segment).where(segment_state.c.segment == segment)).first()
            is None
        ):
            raise JourneyError(f"segment '{segment}' has not been computed yet: run `journey tick` first")
        members = int(conn.execute(select(func.count()).where(m.c.segment == segment)).scalar_one())
        if conn.execute(select(exists().where(sends.c.rule_id == rule_id))).scalar():
            return BroadcastResult(bid, members, 0, repeated=True)
        scheduled = 0
        last = 0
        done = 0
        while True:
            ids = [
                int(r[0])
                for r in conn.execute(
                    select(m.c.customer_id)
                    .where(m.c.segment == segment, m.c.customer_id > last)
                    .order_by(m.c.customer_id)
                    .limit(BATCH)
                )
            ]
            if not ids:
                break
            last = ids[-1]
            scheduled += _schedule(conn, rule_id, template, segment, ids[0], last, at, now)
            done += len(ids)
            if progress is not None:
                progress(done, members)
    return BroadcastResult(bid, members, scheduled, repeated=False)


def _schedule(
    conn: Any, rule_id: str, template: str, segment: str, first: int, last: int, at: datetime, now: datetime
) -> int:
    m = segment_members
    ins = insert_ignore(conn, sends, ["rule_id", "step", "customer_id", "occurrence"]).from_select(
        [
            "rule_id",
            "step",
            "customer_id",
            "occurrence",
            "template",
            "channel",
            "transactional",
            "priority",
            "due_at",
            "created_at",
            "status",
            "attempts",
        ],
        select(
            literal(rule_id),
            literal("0"),
            m.c.customer_id,
            literal(0),
            literal(template),
            literal("email"),
            literal(False),
            literal(0),
            literal(at, sends.c.due_at.type),
            literal(now, sends.c.created_at.type),
            literal("due"),
            literal(0),
        )
        .select_from(m.join(customers, customers.c.id == m.c.customer_id))
        .where(m.c.segment == segment, m.c.customer_id >= first, m.c.customer_id <= last, true()),
    )
    return int(conn.execute(ins).rowcount or 0)


def broadcast_figures(conn: Any) -> list[dict[str, Any]]:
    """Per broadcast: its id, template, and its sends by status."""
    rows = conn.execute(
        select(sends.c.rule_id, sends.c.template, sends.c.status, func.count())
        .where(sends.c.rule_id.like(BROADCAST_PREFIX + "%"))
        .group_by(sends.c.rule_id, sends.c.template, sends.c.status)
    ).all()
    out: dict[str, dict[str, Any]] = {}
    for rule_id, template, status, n in rows:
        item = out.setdefault(rule_id, {"broadcast": rule_id[len(BROADCAST_PREFIX) :], "template": template})
        item.setdefault("by_status", {})[status] = int(n)
    return [out[k] for k in sorted(out)]
