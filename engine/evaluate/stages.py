"""Stages: recompute the stage of customers whose data changed, and record each change once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    MetaData,
    Table,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    text,
    union,
)

from engine.db import is_postgres
from engine.db.schema import customers, event_summary, stage_history
from engine.evaluate.conditions import (
    Ctx,
    compile_condition,
    event_names,
    last_between,
    summary_pivot,
    time_thresholds,
    uses_attributes,
)
from engine.evaluate.window import Window, customers_with_new
from engine.rules.model import Stage


def stage_expression(stages: list[Stage], ctx: Ctx) -> Any:
    """CASE over the ordered stages: the first whose condition holds, else the last."""
    whens = [(compile_condition(s.when, ctx), literal(s.name)) for s in stages[:-1] if s.when is not None]
    last = stages[-1]
    default = literal(last.name)
    if last.when is not None:
        whens.append((compile_condition(last.when, ctx), literal(last.name)))
    if not whens:
        return default
    return case(*whens, else_=default)


def candidates(stages: list[Stage], w: Window, *, full: bool) -> Any:
    """Customers whose stage may have changed in the window: new events, new customers (no stage
    yet), or a `within` of a stage condition that expired in the window."""
    if full or any(s.when is not None and uses_attributes(s.when) for s in stages):
        return select(customers.c.id)
    new_customers: ColumnElement[bool]
    if w.prev_customer_seq is None:  # the previous tick did not record it: look for them
        new_customers = customers.c.stage.is_(None)
    else:  # new since the previous tick: a range of the primary key (stage is not indexed)
        new_customers = and_(customers.c.id > w.prev_customer_seq, customers.c.id <= w.customer_seq)
    names = set().union(*(event_names(s.when) for s in stages if s.when is not None))
    parts: list[Any] = [customers_with_new(names), select(customers.c.id.label("id")).where(new_customers)]
    thresholds: set[tuple[str, float]] = set()
    for s in stages:
        if s.when is not None:
            thresholds |= time_thresholds(s.when)
    from datetime import timedelta

    for name, seconds in sorted(thresholds):
        crossed = timedelta(seconds=seconds)
        parts.append(
            select(event_summary.c.customer_id.label("id")).where(
                *last_between(name, w.start - crossed, w.now - crossed)
            )
        )
    return union(*parts)


_candidates = Table("tick_candidates", MetaData(), Column("id", BigInteger))


def _materialise(conn: Connection, query: Any) -> int:
    if is_postgres(conn):
        conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS tick_candidates (id bigint) ON COMMIT DROP"))
        conn.execute(text("TRUNCATE tick_candidates"))
    else:
        conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS tick_candidates (id INTEGER)"))
        conn.execute(text("DELETE FROM tick_candidates"))
    n = conn.execute(_candidates.insert().from_select(["id"], query)).rowcount or 0
    if is_postgres(conn):
        conn.execute(text("ANALYZE tick_candidates"))
    return int(n)


def recompute(conn: Connection, stages: list[Stage], w: Window, *, full: bool = False) -> int:
    """Record every stage change of the candidates in stage_history and update customers.

    Returns the number of changes. A customer's first stage fires `stage_entered` only when the
    customer is new in this window; otherwise importing history would greet every old customer.
    """
    columns = (customers.c.id.label("customer_id"), customers.c.stage.label("from_stage"))
    if full:
        # materialised: the stage CASE is evaluated once per customer, not once per reference
        new_stage = stage_expression(stages, Ctx(conn=conn, now=w.now)).label("to_stage")
        computed = select(*columns, new_stage, customers.c.first_seen_at).cte("computed")
    else:
        # Materialised and analysed first, so the planner knows there are few candidates and
        # evaluates each stage condition through the indexes, customer by customer; each
        # candidate's summary rows are read once, pivoted, for all the stage conditions.
        n_candidates = _materialise(conn, candidates(stages, w, full=False))
        if n_candidates == 0:
            return 0
        names = sorted(set().union(*(event_names(s.when) for s in stages if s.when is not None)))
        pivot = summary_pivot(names, select(_candidates.c.id)) if names else None
        new_stage = stage_expression(stages, Ctx(conn=conn, now=w.now, summary=pivot)).label("to_stage")
        joined = customers.join(_candidates, _candidates.c.id == customers.c.id)
        if pivot is not None:
            joined = joined.outerjoin(pivot.query, pivot.query.c.customer_id == customers.c.id)
        computed = select(*columns, new_stage, customers.c.first_seen_at).select_from(joined).cte("computed")
    computed = computed.prefix_with("MATERIALIZED")
    fires = or_(
        computed.c.from_stage.is_not(None),
        and_(computed.c.first_seen_at.is_not(None), computed.c.first_seen_at > w.start),
    )
    changed = conn.execute(
        stage_history.insert().from_select(
            ["customer_id", "from_stage", "to_stage", "at", "fires", "tick_id"],
            select(
                computed.c.customer_id,
                computed.c.from_stage,
                computed.c.to_stage,
                literal(w.now, stage_history.c.at.type),
                case((fires, True), else_=False),
                literal(w.tick_id),
            ).where(or_(computed.c.from_stage.is_(None), computed.c.from_stage != computed.c.to_stage)),
        )
    ).rowcount
    if changed is None or changed < 0:
        # SQLite's driver counts no rows for a statement that starts with WITH: count them
        changed = conn.execute(
            select(func.count()).select_from(stage_history).where(stage_history.c.tick_id == w.tick_id)
        ).scalar_one()
    if changed and full and is_postgres(conn):
        # many stages changed at once: fresh statistics keep the next ticks' plans right
        conn.execute(text("ANALYZE customers"))
    if changed:
        # UPDATE … FROM on both databases: one join, not a subquery per customer
        h = stage_history
        conn.execute(
            customers.update()
            .where(h.c.tick_id == w.tick_id, h.c.customer_id == customers.c.id)
            .values(stage=h.c.to_stage, stage_entered_at=w.now)
        )
    return int(changed or 0)
