"""`journey tick --dry-run`: what a tick would schedule, and what a dispatch right after it would
send, per rule and template, with nothing written.

The tick runs as it would, in its one transaction, and the send-time checks (exits, opt-outs,
bounces, the frequency cap, quiet hours, pauses) are asked of every send that would be due, as a
worker would ask them; then the transaction is rolled back. Nothing is rendered or sent, and
nothing outside the transaction is touched (no heartbeat, no generated secret).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from engine.db.schema import customers, sends, unsubscribes
from engine.delivery.policies import (
    BatchFacts,
    Looked,
    capped,
    counts_for_cap,
    load_facts,
    look_verdicts,
    send_verdict,
)
from engine.delivery.status import Reason, SendRow, SendStatus
from engine.evaluate.tick import TickResult, evaluate, tick_transaction
from engine.rules.loader import RuleSet

#: what a held send waits for or ended by, as people read it
HELD = {
    Reason.QUIET_HOURS: "quiet hours",
    Reason.FREQUENCY_CAP: "frequency cap",
    Reason.UNSUBSCRIBED: "unsubscribed",
    Reason.BOUNCED: "bounced",
    Reason.NO_EMAIL: "no email",
    Reason.EXIT_ON: "exited",
    Reason.PAUSED: "paused",
    Reason.CUSTOMER_DELETED: "customer gone",
    Reason.RULE_REMOVED: "rule removed",
}


@dataclass
class DryLine:
    rule_id: str
    template: str | None
    #: ledger rows this tick would add
    scheduled: int = 0
    #: sends a dispatch right after the tick would hand to the channel
    would_send: int = 0
    #: sends due but held back, by reason (quiet hours, frequency cap, …)
    held: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "template": self.template,
            "schedule": self.scheduled,
            "send": self.would_send,
            "held": self.held,
        }


@dataclass
class DryRun:
    tick: TickResult
    lines: list[DryLine]

    def as_dict(self) -> dict[str, Any]:
        return {
            "tick": self.tick.as_dict(),
            "rules": [line.as_dict() for line in self.lines],
            "written": False,
        }


class _RollBack(Exception):
    """Leaves the tick's transaction without committing it."""


def dry_run(engine: Engine, ruleset: RuleSet, *, now: datetime, backfill: timedelta | None = None) -> DryRun:
    """The tick at `now` and the dispatch after it, computed and rolled back."""
    found: dict[str, Any] = {}
    try:
        with tick_transaction(engine) as (conn, seq, customer_seq):
            before = int(conn.execute(select(func.coalesce(func.max(sends.c.id), 0))).scalar_one())
            result = evaluate(
                conn, ruleset, now=now, seq=seq, customer_seq=customer_seq, backfill=backfill, full=False
            )
            found["tick"] = result
            found["lines"] = _lines(conn, ruleset, now, before)
            raise _RollBack
    except _RollBack:
        pass
    return DryRun(found["tick"], found["lines"])


def _lines(conn: Connection, ruleset: RuleSet, now: datetime, before: int) -> list[DryLine]:
    lines: dict[tuple[str, str], DryLine] = {}

    def line(rule_id: str, template: str) -> DryLine:
        return lines.setdefault((rule_id, template), DryLine(rule_id, template))

    for rule_id, template, n in conn.execute(
        select(sends.c.rule_id, sends.c.template, func.count())
        .where(sends.c.id > before)
        .group_by(sends.c.rule_id, sends.c.template)
    ):
        line(rule_id, template).scheduled = int(n)
    due = [
        SendRow.of(r._mapping)
        for r in conn.execute(
            select(*(sends.c[name] for name in SendRow.__dataclass_fields__))
            .where(sends.c.status == SendStatus.DUE, sends.c.due_at <= now)
            .order_by(sends.c.priority.desc(), sends.c.due_at, sends.c.id)
        )
    ]
    for start in range(0, len(due), 1000):
        for row, outcome in _outcomes(conn, ruleset, due[start : start + 1000], now):
            target = line(row.rule_id, row.template)
            if outcome is None:
                target.would_send += 1
            else:
                name = HELD.get(outcome, outcome.value)
                target.held[name] = target.held.get(name, 0) + 1
    out = sorted(lines.values(), key=lambda x: (x.rule_id, x.template or ""))
    named = {x.rule_id for x in out}
    out += [DryLine(rule.id, None) for rule in ruleset.enabled if rule.id not in named]
    return sorted(out, key=lambda x: (x.rule_id, x.template or ""))


def _outcomes(
    conn: Connection, ruleset: RuleSet, rows: list[SendRow], now: datetime
) -> list[tuple[SendRow, Reason | None]]:
    """What a worker would decide for each send, in dispatch order: None to send, else why not."""
    cap = ruleset.settings.frequency_cap
    exit_names = {name for r in ruleset.rules for name in r.exit_on}
    facts: BatchFacts = load_facts(
        conn, rows, exit_names=exit_names, cap_per=cap.per if cap else None, now=now
    )
    looks = look_verdicts(
        [
            Looked(r.id, r.attempts, r.customer_id, r.channel, _topics(ruleset, r.rule_id), r.transactional)
            for r in rows
        ],
        _look_rows(conn, rows),
    )
    out: list[tuple[SendRow, Reason | None]] = []
    for row in rows:
        try:
            rule = ruleset.rule(row.rule_id)
        except KeyError:
            out.append((row, Reason.RULE_REMOVED))
            continue
        verdict = send_verdict(row, rule, facts.customers.get(row.customer_id), facts, ruleset.settings, now)
        if verdict is not None:
            out.append((row, verdict[1]))
        elif looks.get(row.id) is not None:
            out.append((row, Reason(str(looks[row.id]))))
        elif capped(row, facts, cap):
            out.append((row, Reason.FREQUENCY_CAP))
        else:
            out.append((row, None))
            if counts_for_cap(row):
                facts.count_sent(row.customer_id, row.priority)
    return out


def _topics(ruleset: RuleSet, rule_id: str) -> tuple[str, ...]:
    try:
        return ruleset.rule(rule_id).opt_out_topics()
    except KeyError:
        return (rule_id,)


def _look_rows(conn: Connection, rows: list[SendRow]) -> list[Any]:
    """The rows of the ledger's look (engine.delivery.ledger) for sends not claimed: each send as
    it stands, each customer's bounce mark, each of their unsubscribes."""
    ids = sorted({r.customer_id for r in rows})
    out: list[Any] = [(1, r.id, r.attempts, None, None) for r in rows]
    out += [
        (2, c.id, 0 if c.email_suppressed_at is None else 1, None, None)
        for c in conn.execute(
            select(customers.c.id, customers.c.email_suppressed_at).where(customers.c.id.in_(ids))
        )
    ]
    out += [
        (3, u.customer_id, None, u.channel, u.topic)
        for u in conn.execute(
            select(unsubscribes.c.customer_id, unsubscribes.c.channel, unsubscribes.c.topic).where(
                unsubscribes.c.customer_id.in_(ids)
            )
        )
    ]
    return out
