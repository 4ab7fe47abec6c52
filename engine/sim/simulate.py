"""`journey simulate`: replay events against the rules on a throwaway database, and count what
would be sent, per rule and day, per rule, step and split variant, and what the frequency cap and
quiet hours would hold back. Nothing is sent: the channels are stubs.

The events come from a file (read in time order without holding it in memory: engine.sim.sorting)
or from the configured database (`--from-db`, streamed by engine.ingest.export); `--rule` limits
the simulation to some rules.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from engine.db import make_engine, upgrade
from engine.db.schema import enrollments, sends
from engine.delivery.channels.stub import StubEmailChannel, StubWebhookChannel
from engine.delivery.deliverer import Deliverer
from engine.errors import JourneyError
from engine.rules.loader import RuleSet
from engine.rules.model import SplitStep
from engine.rules.walk import walk_steps
from engine.rules.yaml import suggest
from engine.settings import Settings
from engine.sim.replay import Item, ReplayStats, replay

#: the columns of a day's row, in the order they are printed
COLUMNS = ("would send", "frequency cap", "quiet hours", "other")


def _row() -> dict[str, int]:
    return dict.fromkeys(COLUMNS, 0)


@dataclass
class Simulation:
    #: (day, rule id) -> column -> count
    per_day: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    #: rule id -> column -> count
    per_rule: dict[str, dict[str, int]] = field(default_factory=dict)
    #: (rule id, step path, template) -> column -> count
    per_step: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)
    #: (rule id, variant) -> {"entered": n, "would send": n}
    per_variant: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    #: rule id -> customers who entered it
    entered: dict[str, int] = field(default_factory=dict)
    stats: ReplayStats = field(default_factory=ReplayStats)
    #: lines of the file that could not be read as events
    bad_lines: int = 0
    #: sends due after the end of the range, not counted in `per_day`
    later: int = 0

    def total(self, column: str) -> int:
        return sum(row[column] for row in self.per_day.values())


def only_rules(ruleset: RuleSet, ids: Sequence[str]) -> RuleSet:
    """The rule set with only the rules named (all when none is); JourneyError for an unknown id."""
    if not ids:
        return ruleset
    known = [r.id for r in ruleset.rules]
    for rule_id in ids:
        if rule_id not in known:
            hint = suggest(rule_id, known)
            raise JourneyError(
                f"no rule '{rule_id}'"
                + (f" (did you mean '{hint}'?)" if hint else f" (rules: {', '.join(known)})")
            )
    return dataclasses.replace(ruleset, rules=[r for r in ruleset.rules if r.id in ids])


def _column(status: str, reason: str | None) -> list[str]:
    """The columns a send counts in: sent after quiet hours counts as sent and as quiet hours."""
    if status == "sent":
        return ["would send", "quiet hours"] if reason == "quiet_hours" else ["would send"]
    if reason == "frequency_cap":
        return ["frequency cap"]
    if status == "due" and reason == "quiet_hours":
        return ["quiet hours"]
    return ["other"]


def simulate(
    settings: Settings,
    ruleset: RuleSet,
    events: Iterable[Item],
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> Simulation:
    """Replay `events` (in time order) from `start` to `end`, ticking every `step`."""
    out = Simulation()
    workdir = Path(tempfile.mkdtemp(prefix="journey-simulate-"))
    engine = make_engine(f"sqlite:///{workdir / 'simulate.db'}")
    try:
        upgrade(engine)
        deliverer = Deliverer.create(
            engine,
            settings.with_(secret_key="simulate"),
            ruleset,
            channels={"email": StubEmailChannel(), "webhook": StubWebhookChannel()},
        )
        out.stats = replay(
            engine, settings, ruleset, events, start=start, end=end, step=step, deliverer=deliverer
        )
        with engine.connect() as conn:
            variant_of: dict[int, str | None] = {}
            for e in conn.execute(select(enrollments.c.id, enrollments.c.rule_id, enrollments.c.variant)):
                variant_of[e.id] = e.variant
                out.entered[e.rule_id] = out.entered.get(e.rule_id, 0) + 1
                if e.variant is not None:
                    v = out.per_variant.setdefault((e.rule_id, e.variant), {"entered": 0, "would send": 0})
                    v["entered"] += 1
            for s in conn.execute(
                select(
                    sends.c.rule_id,
                    sends.c.step,
                    sends.c.template,
                    sends.c.status,
                    sends.c.reason,
                    sends.c.due_at,
                    sends.c.sent_at,
                    sends.c.enrollment_id,
                )
            ):
                when = s.sent_at or s.due_at
                if when > end:
                    out.later += 1
                    continue
                columns = _column(s.status, s.reason)
                for target in (
                    out.per_day.setdefault((when.date().isoformat(), s.rule_id), _row()),
                    out.per_rule.setdefault(s.rule_id, _row()),
                    out.per_step.setdefault((s.rule_id, s.step, s.template), _row()),
                ):
                    for column in columns:
                        target[column] += 1
                variant = variant_of.get(s.enrollment_id) if s.enrollment_id is not None else None
                if variant is not None and "would send" in columns:
                    out.per_variant[(s.rule_id, variant)]["would send"] += 1
    finally:
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def split_weights(ruleset: RuleSet) -> dict[tuple[str, str], int]:
    """(rule id, variant) -> its weight in the rule's split, for the simulation's report."""
    out: dict[tuple[str, str], int] = {}
    for rule in ruleset.rules:
        for _, step in walk_steps(list(rule.steps)):
            if isinstance(step, SplitStep):
                for name, weight in step.split.items():
                    out[(rule.id, name)] = weight
    return out
