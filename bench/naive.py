"""The naive baseline the benchmark compares against: customers loaded into Python and every
stage and rule evaluated per customer, in a loop. Same rules, same semantics, no SQL cleverness."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from engine.db.schema import customers, events
from engine.rules.loader import RuleSet
from engine.rules.model import (
    AllCondition,
    AnyCondition,
    AttributeCondition,
    Compare,
    EventCondition,
    NotCondition,
    SegmentCondition,
    StageCondition,
    SubscribedCondition,
)
from engine.rules.triggers import EventTrigger, InactivityTrigger, ScheduleTrigger


@dataclass
class PyCustomer:
    id: int
    row: dict[str, Any]
    events: dict[str, list[tuple[datetime, dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(list)
    )


def _cmp(value: Any, cmp: Compare) -> bool:
    op, want = cmp.op, cmp.value
    if op == "exists":
        return (value is not None) == bool(want)
    if op == "ne":
        return value is None or value != want
    if op == "not_in":
        return value is None or value not in want
    if value is None:
        return False
    try:
        if op == "eq":
            return bool(value in want) if isinstance(want, list) else bool(value == want)
        if op == "in":
            return value in want
        if op == "contains":
            return str(want) in value if isinstance(value, str) else want in value
        return bool({"gt": value > want, "gte": value >= want, "lt": value < want, "lte": value <= want}[op])
    except TypeError:
        return False


def holds(cond: Any, c: PyCustomer, now: datetime) -> bool:
    if isinstance(cond, AllCondition):
        return all(holds(x, c, now) for x in cond.all)
    if isinstance(cond, AnyCondition):
        return any(holds(x, c, now) for x in cond.any)
    if isinstance(cond, NotCondition):
        return not holds(cond.not_, c, now)
    if isinstance(cond, AttributeCondition):
        value = c.row.get(cond.attribute, c.row["attributes"].get(cond.attribute))
        return _cmp(value, cond)
    if isinstance(cond, StageCondition):
        return c.row.get("stage") in cond.names()
    if isinstance(cond, SubscribedCondition):
        return c.row.get("email") is not None
    if isinstance(cond, SegmentCondition):
        return cond.segment in c.row.get("segments", ())
    if isinstance(cond, EventCondition):
        found = [
            (ts, props)
            for ts, props in c.events.get(cond.event, [])
            if ts <= now
            and (cond.within is None or ts > now - cond.within)
            and all(_cmp(props.get(k), v) for k, v in (cond.where or {}).items())
        ]
        if cond.count is not None:
            return _cmp(len(found), cond.count)
        return bool(found)
    raise TypeError(cond)


def load(engine: Engine, customer_ids: list[int]) -> list[PyCustomer]:
    with engine.connect() as conn:
        rows = conn.execute(select(customers).where(customers.c.id.in_(customer_ids))).mappings().all()
        out = {r["id"]: PyCustomer(r["id"], dict(r)) for r in rows}
        for ev in conn.execute(
            select(events.c.customer_id, events.c.name, events.c.ts, events.c.properties).where(
                events.c.customer_id.in_(customer_ids)
            )
        ):
            out[ev.customer_id].events[ev.name].append((ev.ts, ev.properties))
    return list(out.values())


def evaluate(ruleset: RuleSet, people: list[PyCustomer], now: datetime, start: datetime) -> int:
    """Stage and segments of each customer, then each rule's trigger and conditions; returns
    matches found."""
    matches = 0
    for c in people:
        for stage in ruleset.stages:
            if stage.when is None or holds(stage.when, c, now):
                c.row["stage"] = stage.name
                break
        c.row["segments"] = set()
        for segment in ruleset.segments:  # in the loader's order: each after those it uses
            if holds(segment.when, c, now):
                c.row["segments"].add(segment.name)
        for rule in ruleset.rules:
            t = rule.trigger
            fired = False
            if isinstance(t, EventTrigger):
                fired = any(start < ts <= now for ts, _ in c.events.get(t.event, []))
            elif isinstance(t, InactivityTrigger):
                ina = t.inactivity
                # one clock per value of the matched properties (one per cart with match: [cart_id])
                groups: dict[tuple[Any, ...], list[datetime]] = defaultdict(list)
                for ts, props in c.events.get(ina.event, []):
                    if ts <= now:
                        groups[tuple(props.get(m) for m in ina.match)].append(ts)
                for key, seen in groups.items():
                    last = max(seen)
                    quiet = start - ina.for_ < last <= now - ina.for_
                    stopped = any(
                        ts >= last
                        and all(props.get(m) in (k, None) for m, k in zip(ina.match, key, strict=True))
                        for u in ina.until
                        for ts, props in c.events.get(u, [])
                        if ts <= now
                    )
                    fired = fired or (quiet and not stopped)
            elif isinstance(t, ScheduleTrigger) and t.audience is not None:
                fired = holds(t.audience, c, now)
            if fired and all(holds(x, c, now) for x in rule.conditions):
                matches += 1
    return matches
