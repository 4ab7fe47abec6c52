"""`journey rules list`: each rule with its trigger, topic, pause and what it did lately."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from engine.db.schema import enrollments, sends
from engine.pauses import Pause, paused
from engine.rules.describe import describe_trigger
from engine.rules.loader import RuleSet


@dataclass(frozen=True)
class RuleLine:
    id: str
    trigger: str
    topic: str | None
    enabled: bool
    pause: Pause | None
    #: customers who entered the rule in the last `days`
    entered: int
    #: messages of the rule sent in the last `days`
    sent: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger": self.trigger,
            "topic": self.topic,
            "enabled": self.enabled,
            "paused": self.pause is not None,
            "paused_at": self.pause.paused_at.isoformat() if self.pause else None,
            "paused_by": self.pause.paused_by if self.pause else None,
            "entered": self.entered,
            "sent": self.sent,
        }


def rule_lines(engine: Engine, ruleset: RuleSet, *, now: datetime, days: int = 7) -> list[RuleLine]:
    """Every rule of the set, in id order, with its pause and its last `days` of activity."""
    since = now - timedelta(days=days)
    with engine.connect() as conn:
        pauses = paused(conn)
        entered: dict[str, int] = {
            r: n
            for r, n in conn.execute(
                select(enrollments.c.rule_id, func.count())
                .where(enrollments.c.entered_at > since, enrollments.c.entered_at <= now)
                .group_by(enrollments.c.rule_id)
            )
        }
        sent: dict[str, int] = {
            r: n
            for r, n in conn.execute(
                select(sends.c.rule_id, func.count())
                .where(sends.c.status == "sent", sends.c.sent_at > since, sends.c.sent_at <= now)
                .group_by(sends.c.rule_id)
            )
        }
    return [
        RuleLine(
            id=rule.id,
            trigger=describe_trigger(rule),
            topic=rule.topic,
            enabled=rule.enabled,
            pause=pauses.get(rule.id),
            entered=int(entered.get(rule.id, 0)),
            sent=int(sent.get(rule.id, 0)),
        )
        for rule in ruleset.rules
    ]
