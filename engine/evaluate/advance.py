"""Moving enrollments through a rule's steps, as a few set-based statements per step.

For each step path in preorder, the enrollments standing there whose `due_at` has come are
handled at once: a send becomes a ledger row (INSERT … SELECT … ON CONFLICT DO NOTHING on the send
key), a wait pushes `due_at`, a branch or split picks the next path by a CASE, an update writes
attributes. Because paths only move forward in preorder, one pass carries every enrollment through
everything that is due, however far.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, case, exists, literal, select

from engine.db import add_seconds, insert_ignore, json_merge
from engine.db.schema import customers, enrollments, sends
from engine.db.types import JSONType
from engine.evaluate.conditions import Ctx, compile_condition
from engine.evaluate.waits import wait_for
from engine.evaluate.window import Window
from engine.rules.model import BranchStep, Rule, SendStep, SplitStep, UpdateStep, WaitForStep, WaitStep
from engine.rules.walk import first_of, next_path, past_waits, positions, step_at

e = enrollments


def _moved(target: str | None) -> dict[str, Any]:
    if target is None:
        return {"position": None, "status": "done"}
    return {"position": target}


def _moved_on(conn: Connection, rule: Rule, after: str | None) -> dict[str, Any]:
    """Moved to `after`, and through the plain waits there: what the wait's own statement would
    do to these rows later in the same pass (their due_at has come), one statement earlier."""
    target, seconds = past_waits(rule, after)
    values = _moved(target)
    if seconds:
        values["due_at"] = add_seconds(conn, e.c.due_at, seconds)
    return values


def advance(conn: Connection, rule: Rule, w: Window) -> dict[str, int]:
    """Run every due step of the rule; returns counts of sends scheduled and steps run."""
    stats = {"sends": 0, "steps": 0}
    ctx = Ctx(conn=conn, now=w.now, topic=rule.opt_out_topics())
    for path in positions(rule):
        here = and_(e.c.rule_id == rule.id, e.c.status == "active", e.c.position == path, e.c.due_at <= w.now)
        step = step_at(rule, path)
        after = next_path(rule, path)
        if isinstance(step, SendStep):
            ins = insert_ignore(conn, sends, ["rule_id", "step", "customer_id", "occurrence"]).from_select(
                [
                    "rule_id",
                    "step",
                    "customer_id",
                    "occurrence",
                    "enrollment_id",
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
                    e.c.rule_id,
                    literal(path),
                    e.c.customer_id,
                    e.c.occurrence,
                    e.c.id,
                    literal(step.template),
                    literal(step.channel),
                    literal(rule.transactional),
                    literal(rule.priority),
                    e.c.due_at,
                    literal(w.now, sends.c.created_at.type),
                    literal("due"),
                    literal(0),
                ).where(here),
            )
            stats["sends"] += conn.execute(ins).rowcount or 0
            n = conn.execute(e.update().where(here).values(**_moved_on(conn, rule, after))).rowcount
        elif isinstance(step, WaitStep):
            values = _moved(after)
            values["due_at"] = add_seconds(conn, e.c.due_at, step.wait.total_seconds())
            n = conn.execute(e.update().where(here).values(**values)).rowcount
        elif isinstance(step, WaitForStep):
            n = wait_for(conn, rule, path, step, w)
        elif isinstance(step, BranchStep):
            cond = compile_condition(step.branch.if_, ctx)
            holds = exists().where(customers.c.id == e.c.customer_id, cond)
            then_to = first_of(rule, path, "then") if step.branch.then else after
            else_to = first_of(rule, path, "else") if step.branch.else_ else after
            n = conn.execute(
                e.update()
                .where(here)
                .values(
                    position=case((holds, literal(then_to)), else_=literal(else_to)),
                    status=case(
                        (holds, literal("active" if then_to else "done")),
                        else_=literal("active" if else_to else "done"),
                    ),
                )
            ).rowcount
        elif isinstance(step, SplitStep):
            n = _split(conn, rule, path, step, here, after, w.now)
        elif isinstance(step, UpdateStep):
            patch = literal(dict(step.update), JSONType)
            conn.execute(
                customers.update()
                .where(customers.c.id.in_(select(e.c.customer_id).where(here)))
                .values(attributes=json_merge(conn, customers.c.attributes, patch))
            )
            n = conn.execute(e.update().where(here).values(**_moved_on(conn, rule, after))).rowcount
        else:  # pragma: no cover - the model admits no other step
            raise TypeError(step)
        stats["steps"] += n or 0
    return stats


def _split(
    conn: Connection, rule: Rule, path: str, step: SplitStep, here: Any, after: str | None, now: Any
) -> int:
    """Stable assignment: the enrollment's bucket (0-9999, fixed per customer and rule) picks the
    variant by cumulative weight. The holdout gets nothing more from this rule."""
    total = sum(step.split.values())
    bounds: list[tuple[str, int]] = []
    running = 0
    for name, weight in step.split.items():
        running += weight
        bounds.append((name, running))
    variant_whens = []
    position_whens = []
    status_whens = []
    status_whens_raw: list[tuple[Any, str]] = []
    for name, upper in bounds:
        inside = e.c.bucket * total < upper * 10000
        variant_whens.append((inside, literal(name)))
        if name == "holdout":
            target = None
            status = "holdout"
        else:
            target = first_of(rule, path, name)
            status = "active" if target else "done"
        position_whens.append((inside, literal(target)))
        status_whens.append((inside, literal(status)))
        status_whens_raw.append((inside, status))
    values: dict[str, Any] = {
        "variant": case(*variant_whens, else_=literal(bounds[-1][0])),
        "position": case(*position_whens, else_=literal(after)),
        "status": case(*status_whens, else_=literal("done")),
    }
    ending = [(w, literal(now, e.c.ended_at.type)) for w, s_ in status_whens_raw if s_ != "active"]
    if ending:  # a split whose every variant goes on (no holdout) ends no one: CASE needs a WHEN
        values["ended_at"] = case(*ending, else_=e.c.ended_at)
    return int(conn.execute(e.update().where(here).values(**values)).rowcount or 0)
