"""`journey explain`: why a customer is in a stage, and why each rule fires, waits or does not."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from engine.addresses import hash_of
from engine.db.schema import (
    customer_aliases,
    customers,
    enrollments,
    event_summary,
    events,
    segment_members,
    sends,
    suppressions,
)
from engine.errors import JourneyError
from engine.evaluate.conditions import Ctx, compile_condition
from engine.pauses import paused
from engine.rules.conditions import AllCondition, AnyCondition, NotCondition, children
from engine.rules.describe import describe
from engine.rules.durations import format_duration
from engine.rules.loader import RuleSet
from engine.rules.model import Rule, SendStep, WaitForStep, WaitStep
from engine.rules.triggers import (
    EventTrigger,
    InactivityTrigger,
    ScheduleTrigger,
    SegmentEnteredTrigger,
    SegmentExitedTrigger,
    StageTrigger,
)
from engine.rules.walk import step_at
from engine.suppressions import blocks


@dataclass
class Line:
    text: str
    depth: int = 0


@dataclass
class Explanation:
    customer: str
    stage: str | None
    lines: list[Line] = field(default_factory=list)
    rules: dict[str, str] = field(default_factory=dict)  # rule id -> fired | waiting | not firing | ...
    #: the segments the customer is in
    segments: list[str] = field(default_factory=list)

    def render(self) -> str:
        return "\n".join("  " * line.depth + line.text for line in self.lines)


def holds(
    conn: Connection, cond: Any, customer_id: int, now: datetime, topic: str | tuple[str, ...] | None = None
) -> bool:
    expr = compile_condition(cond, Ctx(conn=conn, now=now, topic=topic))
    return bool(conn.execute(select(expr).where(customers.c.id == customer_id)).scalar())


def condition_lines(
    conn: Connection,
    cond: Any,
    customer_id: int,
    now: datetime,
    depth: int,
    topic: str | tuple[str, ...] | None = None,
) -> list[Line]:
    """The condition tree with ✓/✗ on each part, as evaluated for this customer (in a rule: with
    the rule's topic, so `subscribed:` also says whether the customer opted out of that rule)."""
    ok = holds(conn, cond, customer_id, now, topic)
    mark = "✓" if ok else "✗"
    kids = children(cond)
    if not kids:
        return [Line(f"{mark} {describe(cond)}", depth)]
    heads: dict[type, str] = {AllCondition: "all of:", AnyCondition: "any of:", NotCondition: "not:"}
    head = heads[type(cond)]
    out = [Line(f"{mark} {head}", depth)]
    for kid in kids:
        out += condition_lines(conn, kid, customer_id, now, depth + 1, topic)
    return out


def _ago(now: datetime, then: datetime) -> str:
    delta = now - then
    return f"{format_duration(delta)} ago" if delta.total_seconds() >= 0 else f"in {format_duration(-delta)}"


def explain(engine: Engine, ruleset: RuleSet, external_id: str, *, now: datetime) -> Explanation:
    with engine.connect() as conn:
        c = conn.execute(select(customers).where(customers.c.external_id == external_id)).first()
        via: str | None = None
        if c is None:
            merged = conn.execute(
                select(customers, customer_aliases.c.merged_at.label("alias_merged_at"))
                .join(customer_aliases, customer_aliases.c.customer_id == customers.c.id)
                .where(customer_aliases.c.alias == external_id)
            ).first()
            if merged is None:
                raise JourneyError(f"no customer '{external_id}': check the id, or ingest an identify for it")
            c, via = merged, external_id
            external_id = c.external_id
        ex = Explanation(customer=external_id, stage=c.stage)
        since = f" since {c.stage_entered_at.isoformat()}" if c.stage_entered_at else ""
        if via is not None:
            ex.lines.append(
                Line(f"{via} was merged into customer {external_id} at {c.alias_merged_at.isoformat()}")
            )
        ex.lines.append(
            Line(f"customer {external_id}: stage {c.stage or '(not computed yet: run a tick)'}{since}")
        )
        for alias, at in conn.execute(
            select(customer_aliases.c.alias, customer_aliases.c.merged_at)
            .where(customer_aliases.c.customer_id == c.id)
            .order_by(customer_aliases.c.merged_at, customer_aliases.c.alias)
        ):
            ex.lines.append(Line(f"merged id {alias} at {at.isoformat()}", 1))
        _explain_stage(conn, ruleset, c.id, now, ex)
        ex.lines += _suppression_lines(conn, c.email)
        _explain_segments(conn, ruleset, c.id, ex)
        pauses = paused(conn)
        for rule in ruleset.rules:
            pause = pauses.get(rule.id)
            note = None if pause is None else f"paused since {pause.paused_at.isoformat()}"
            _explain_rule(conn, rule, c.id, now, ex, note)
        return ex


def _suppression_lines(conn: Connection, email: str | None) -> list[Line]:
    """Whether the customer's address is on the suppression list, and what that stops."""
    h = hash_of(email)
    if h is None:
        return []
    row = conn.execute(select(suppressions).where(suppressions.c.address_hash == h)).first()
    if row is None:
        return []
    stops = (
        "every email"
        if blocks(row.reason, transactional=True)
        else "marketing email (transactional still goes)"
    )
    detail = f": {row.detail}" if row.detail else ""
    return [
        Line(
            f"address suppressed ({row.reason}, from {row.source}{detail}) since {row.created_at.isoformat()}",
            1,
        ),
        Line(f"this stops {stops}; `journey suppressions remove` lifts it", 2),
    ]


def _explain_stage(
    conn: Connection, ruleset: RuleSet, customer_id: int, now: datetime, ex: Explanation
) -> None:
    for stage in ruleset.stages:
        if stage.when is None:
            ex.lines.append(Line(f"stage now: {stage.name} (the default: no earlier stage holds)", 1))
            return
        if holds(conn, stage.when, customer_id, now):
            ex.lines.append(Line(f"stage now: {stage.name}, because:", 1))
            ex.lines += condition_lines(conn, stage.when, customer_id, now, 2)
            return
        ex.lines.append(Line(f"not {stage.name}: {describe(stage.when)}", 1))


def _explain_rule(
    conn: Connection, rule: Rule, customer_id: int, now: datetime, ex: Explanation, note: str | None = None
) -> None:
    head = f"rule {rule.id}" + ("" if rule.enabled else " (disabled)")
    if note is not None:  # paused: enters no one, and its customers and sends wait for the resume
        head += f" ({note}: enters no one, its sends wait)"
    rows = conn.execute(
        select(enrollments)
        .where(enrollments.c.rule_id == rule.id, enrollments.c.customer_id == customer_id)
        .order_by(enrollments.c.entered_at.desc())
        .limit(3)
    ).all()
    if rows:
        latest = rows[0]
        state = {
            "active": "waiting",
            "done": "fired",
            "exited": "exited",
            "holdout": "holdout",
        }.get(latest.status, latest.status)
        ex.rules[rule.id] = state
        ex.lines.append(Line(f"{head}: {state}", 0))
        for row in rows:
            ex.lines.append(Line(f"entered {row.entered_at.isoformat()} ({_ago(now, row.entered_at)})", 1))
            if row.released_by is not None:
                ex.lines.append(_released_line(conn, row.released_by))
            if row.status == "active" and row.position is not None and row.waiting_since is not None:
                wf = step_at(rule, row.position).wait_for
                matching = f" with the same {', '.join(wf.match)}" if wf.match else ""
                ex.lines.append(
                    Line(
                        f"step {row.position}: waiting for {wf.event}{matching} since "
                        f"{row.waiting_since.isoformat()}; times out at {row.due_at.isoformat()} "
                        f"({_ago(now, row.due_at)})",
                        2,
                    )
                )
            elif row.status == "active" and row.position is not None:
                step = step_at(rule, row.position)
                what = _step_text(step)
                when = (
                    "due now"
                    if row.due_at <= now
                    else f"at {row.due_at.isoformat()} ({_ago(now, row.due_at)})"
                )
                ex.lines.append(Line(f"next step {row.position}: {what}, {when}", 2))
            elif row.status == "exited":
                ex.lines.append(
                    Line(
                        f"left the rule at {row.ended_at.isoformat()}: did one of {', '.join(rule.exit_on)}",
                        2,
                    )
                )
            elif row.status == "holdout":
                ex.lines.append(Line("in the holdout group: gets nothing from this rule, to measure it", 2))
            elif row.status == "done":
                ex.lines.append(Line("all steps done", 2))
            for s in conn.execute(
                select(sends).where(sends.c.enrollment_id == row.id).order_by(sends.c.due_at)
            ).all():
                reason = f" ({s.reason})" if s.reason else ""
                ex.lines.append(
                    Line(f"send {s.template} [{s.step}]: {s.status}{reason}, due {s.due_at.isoformat()}", 2)
                )
        return
    ex.rules[rule.id] = "not firing"
    ex.lines.append(Line(f"{head}: not firing", 0))
    ex.lines += _trigger_lines(conn, rule, customer_id, now)
    for cond in rule.conditions:
        ex.lines += condition_lines(conn, cond, customer_id, now, 1, rule.opt_out_topics())


def _released_line(conn: Connection, event_id: int) -> Line:
    ev = conn.execute(select(events.c.name, events.c.ts).where(events.c.id == event_id)).first()
    if ev is None:  # erased since
        return Line(f"released from its wait_for by event #{event_id}", 2)
    return Line(f"released from its wait_for by {ev.name} at {ev.ts.isoformat()} (event #{event_id})", 2)


def _step_text(step: Any) -> str:
    if isinstance(step, WaitForStep):
        return f"wait for {step.wait_for.event} up to {format_duration(step.wait_for.within)}"
    if isinstance(step, SendStep):
        return f"send {step.template} by {step.channel}"
    if isinstance(step, WaitStep):
        return f"wait {format_duration(step.wait)}"
    return type(step).__name__.replace("Step", "").lower()


def _last(conn: Connection, customer_id: int, name: str) -> Any:
    return conn.execute(
        select(event_summary).where(event_summary.c.customer_id == customer_id, event_summary.c.name == name)
    ).first()


def _trigger_lines(conn: Connection, rule: Rule, customer_id: int, now: datetime) -> list[Line]:
    t = rule.trigger
    if isinstance(t, EventTrigger):
        s = _last(conn, customer_id, t.event)
        if s is None:
            return [Line(f"✗ trigger: has never done {t.event}", 1)]
        return [
            Line(
                f"trigger: did {t.event} last {_ago(now, s.last_at)}, before this rule saw it or filtered out",
                1,
            )
        ]
    if isinstance(t, InactivityTrigger):
        ina = t.inactivity
        s = _last(conn, customer_id, ina.event)
        if s is None:
            return [Line(f"✗ trigger: has never done {ina.event}", 1)]
        for name in ina.until:
            u = _last(conn, customer_id, name)
            if u is not None and u.last_at >= s.last_at:
                return [Line(f"✗ trigger: {name} ({_ago(now, u.last_at)}) followed the last {ina.event}", 1)]
        due = s.last_at + ina.for_
        if due > now:
            return [
                Line(
                    f"… trigger: last {ina.event} {_ago(now, s.last_at)}; fires at {due.isoformat()} unless "
                    f"{' or '.join(ina.until) or 'it happens again'}",
                    1,
                )
            ]
        return [
            Line(
                f"trigger: {ina.event} went quiet at {due.isoformat()}, but the rule did not see it cross "
                "(it happened before the rule's first tick, or conditions failed)",
                1,
            )
        ]
    if isinstance(t, StageTrigger):
        return [Line(f"trigger: has not entered stage {t.stage_entered} since the rule started", 1)]
    if isinstance(t, ScheduleTrigger):
        return [Line(f"trigger: on schedule '{t.schedule}'; not in the audience at a fire time yet", 1)]
    if isinstance(t, SegmentEnteredTrigger):
        return [Line(f"trigger: has not entered segment {t.segment_entered} since the rule started", 1)]
    if isinstance(t, SegmentExitedTrigger):
        return [Line(f"trigger: has not left segment {t.segment_exited} since the rule started", 1)]
    return [Line(f"trigger: yearly on the date in attribute {t.anniversary.attribute}", 1)]


def _explain_segments(conn: Connection, ruleset: RuleSet, customer_id: int, ex: Explanation) -> None:
    """The customer's segments (as of the last tick), with since when, and the others."""
    if not ruleset.segments:
        return
    since = dict(
        conn.execute(
            select(segment_members.c.segment, segment_members.c.since).where(
                segment_members.c.customer_id == customer_id
            )
        ).all()
    )
    inside = [f"{s.name} (since {since[s.name].isoformat()})" for s in ruleset.segments if s.name in since]
    outside = [s.name for s in ruleset.segments if s.name not in since]
    ex.segments = [s.name for s in ruleset.segments if s.name in since]
    ex.lines.append(Line("segments: " + (", ".join(inside) if inside else "none"), 1))
    if outside:
        ex.lines.append(Line("not in: " + ", ".join(outside), 1))
