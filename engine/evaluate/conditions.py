"""Conditions compiled to SQL (CONTRACT section 4).

`compile_condition` turns a condition model into a boolean SQLAlchemy expression correlated to
`customers.c.id`, so that one statement evaluates it for every candidate customer at once. Each
leaf is written to be false, never NULL, when data is missing, so `not:` means what it says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from engine.db import is_postgres, json_field, sqlite_json_key
from engine.db.schema import customers, event_summary, events, segment_members, unsubscribes
from engine.rules.conditions import (
    AllCondition,
    AnyCondition,
    AttributeCondition,
    Compare,
    EventCondition,
    NotCondition,
    SegmentCondition,
    StageCondition,
    SubscribedCondition,
    children,
    event_names,
    walk,
)

#: attributes that are columns of `customers`; anything else lives in `customers.attributes`
COLUMNS = {
    "email": customers.c.email,
    "phone": customers.c.phone,
    "timezone": customers.c.timezone,
    "locale": customers.c.locale,
    "first_name": customers.c.first_name,
    "stage": customers.c.stage,
    "referral_code": customers.c.referral_code,
    "id": customers.c.external_id,
}


@dataclass(frozen=True)
class Ctx:
    """What a compiled condition needs: the connection (for its dialect) and the evaluation time."""

    conn: Connection
    now: datetime
    #: the rule's preference-centre topics (Rule.opt_out_topics): `subscribed:` in a rule also
    #: means "not opted out of them"
    topic: str | tuple[str, ...] | None = None
    #: the summary rows of the evaluated customers, one row each (see `summary_pivot`): event
    #: conditions read its columns instead of probing event_summary once per condition
    summary: SummaryPivot | None = None


@dataclass(frozen=True)
class SummaryPivot:
    """A query with one row per customer, and for each event name its summary's `last_at` and
    `count` (NULL when the customer never had it). Joined to customers on `customer_id`."""

    query: Any
    columns: dict[str, tuple[Any, Any]]


def summary_pivot(names: list[str], customer_ids: Any) -> SummaryPivot:
    """The summary of `names` for the customers `customer_ids` selects, pivoted to one row each:
    each customer's summary rows are read in one range of the primary key, where a condition per
    event name would probe it once per condition."""
    es = event_summary
    cols: list[Any] = [es.c.customer_id]
    for i, name in enumerate(names):
        cols.append(func.max(es.c.last_at).filter(es.c.name == name).label(f"e{i}_last"))
        cols.append(func.max(es.c.count).filter(es.c.name == name).label(f"e{i}_count"))
    query = (
        select(*cols)
        .where(es.c.customer_id.in_(customer_ids), es.c.name.in_(names))
        .group_by(es.c.customer_id)
        .subquery("summary_pivot")
    )
    columns = {name: (query.c[f"e{i}_last"], query.c[f"e{i}_count"]) for i, name in enumerate(names)}
    return SummaryPivot(query=query, columns=columns)


def last_between(name: str, after: datetime, until: datetime) -> list[ColumnElement[bool]]:
    """Filters on `event_summary` for rows of `name` whose latest event lies in (after, until].

    event_summary has no index on its time (each new event would write one more index entry, and
    the row could not be updated in place): the rows are found through the events that set it,
    ix_events_name_ts's range, and the summary row of each of their customers is read by its key.
    Such a row's `last_at` is the time of one of its events, so it is in the range only if that
    event is."""
    es = event_summary
    return [
        es.c.name == name,
        es.c.last_at > after,
        es.c.last_at <= until,
        es.c.customer_id.in_(
            select(events.c.customer_id).where(
                events.c.name == name, events.c.ts > after, events.c.ts <= until
            )
        ),
    ]


def compile_condition(cond: Any, ctx: Ctx) -> ColumnElement[bool]:
    if isinstance(cond, AllCondition):
        return and_(*(compile_condition(c, ctx) for c in children(cond)))
    if isinstance(cond, AnyCondition):
        return or_(*(compile_condition(c, ctx) for c in children(cond)))
    if isinstance(cond, NotCondition):
        return not_(compile_condition(cond.not_, ctx))
    if isinstance(cond, AttributeCondition):
        return _attribute(cond, ctx)
    if isinstance(cond, EventCondition):
        return _event(cond, ctx)
    if isinstance(cond, StageCondition):
        names = cond.names()
        return and_(customers.c.stage.is_not(None), customers.c.stage.in_(names))
    if isinstance(cond, SubscribedCondition):
        return subscribed(cond.subscribed, ctx.topic)
    if isinstance(cond, SegmentCondition):
        return segment_member(cond.segment)
    raise TypeError(f"not a condition: {cond!r}")


def segment_member(name: str) -> ColumnElement[bool]:
    """The customer is a member of segment `name`, as of this tick's recompute (the segments are
    computed before the rules, each after those it uses)."""
    m = segment_members.alias()
    return exists().where(m.c.segment == name, m.c.customer_id == customers.c.id)


def compile_all(conds: list[Any], ctx: Ctx) -> ColumnElement[bool]:
    return and_(true(), *(compile_condition(c, ctx) for c in conds))


def subscribed(channel: str, topic: str | tuple[str, ...] | None = None) -> ColumnElement[bool]:
    """The customer may receive marketing on `channel` (and `topic` or topics, when given)."""
    topics = ["*", *([topic] if isinstance(topic, str) else topic or ())]
    opted_out = exists().where(
        unsubscribes.c.customer_id == customers.c.id,
        unsubscribes.c.channel.in_([channel, "*"]),
        unsubscribes.c.topic.in_(topics),
    )
    if channel == "email":
        return and_(customers.c.email.is_not(None), customers.c.email_suppressed_at.is_(None), ~opted_out)
    return ~opted_out


# --------------------------------------------------------------------------------- comparisons


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list) and value:
        return _kind(value[0])
    return "text"


def _value_of(json_col: Any, key: str, op: str, value: Any, ctx: Ctx, column: Any = None) -> Any:
    if column is not None:
        return column
    if op == "exists":
        return json_field(ctx.conn, json_col, key, "any")
    if op == "contains":
        return json_field(ctx.conn, json_col, key, "text")
    return json_field(ctx.conn, json_col, key, _kind(value))


def compare(
    expr: Any, op: str, value: Any, *, array: ColumnElement[bool] | None = None
) -> ColumnElement[bool]:
    """`expr OP value`, false (never NULL) when expr is missing, except for ne/not_in/exists: false."""
    present: ColumnElement[bool] = expr.is_not(None)
    if op == "exists":
        missing: ColumnElement[bool] = expr.is_(None)
        return present if value else missing
    if op == "eq":
        if value is None:
            return and_(expr.is_(None))
        if isinstance(value, list):
            return and_(present, expr.in_(value))
        return and_(present, expr == value)
    if op == "ne":
        if value is None:
            return present
        return or_(expr.is_(None), expr != value)
    if op == "in":
        return and_(present, expr.in_(list(value)))
    if op == "not_in":
        return or_(expr.is_(None), expr.not_in(list(value)))
    if op == "contains":
        text_match = and_(present, expr.contains(str(value), autoescape=True))
        return or_(text_match, array) if array is not None else text_match
    sql_op = {"gt": expr > value, "gte": expr >= value, "lt": expr < value, "lte": expr <= value}[op]
    result: ColumnElement[bool] = and_(present, sql_op)
    return result


def compare_count(counted: Any, op: str, value: Any) -> ColumnElement[bool]:
    """`counted OP value` for a count, which is never NULL: written once, where compare() also
    tests for NULL, which makes the database compute a counting subquery twice."""
    if op in ("gt", "gte", "lt", "lte") or (op in ("eq", "ne") and isinstance(value, int)):
        plain = {
            "gt": counted > value,
            "gte": counted >= value,
            "lt": counted < value,
            "lte": counted <= value,
            "eq": counted == value,
            "ne": counted != value,
        }[op]
        return and_(plain)
    return compare(counted, op, value)


def _array_contains(ctx: Ctx, json_col: Any, key: str, value: Any) -> ColumnElement[bool]:
    """The JSON value at `key` is an array that holds `value`."""
    if is_postgres(ctx.conn):
        import json

        from sqlalchemy import cast
        from sqlalchemy.dialects.postgresql import JSONB

        contained: ColumnElement[bool] = json_col.op("->")(literal(key)).op("@>")(
            cast(literal(json.dumps([value])), JSONB)
        )
        return contained
    each = func.json_each(sqlite_json_key(json_col, key)[0]).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == value))


def _attribute(cond: AttributeCondition, ctx: Ctx) -> ColumnElement[bool]:
    column = COLUMNS.get(cond.attribute)
    op, value = cond.op, cond.value
    expr = _value_of(customers.c.attributes, cond.attribute, op, value, ctx, column)
    array = None
    if op == "contains" and column is None:
        array = _array_contains(ctx, customers.c.attributes, cond.attribute, value)
    return compare(expr, op, value, array=array)


def property_filter(where: dict[str, Compare], ctx: Ctx, props: Any = None) -> list[ColumnElement[bool]]:
    """Filters on an event's properties (`where:`)."""
    props = events.c.properties if props is None else props
    out = []
    for key, cmp in where.items():
        op, value = cmp.op, cmp.value
        expr = _value_of(props, key, op, value, ctx)
        array = _array_contains(ctx, props, key, value) if op == "contains" else None
        out.append(compare(expr, op, value, array=array))
    return out


# -------------------------------------------------------------------------------------- events


def _event(cond: EventCondition, ctx: Ctx) -> ColumnElement[bool]:
    # Fresh aliases: a condition may sit inside a query that already reads these tables (an
    # inactivity trigger reads event_summary), and must correlate to the customer only.
    ev = events.alias()
    es = event_summary.alias()
    since = ctx.now - cond.within if cond.within is not None else None
    pivoted = ctx.summary.columns.get(cond.event) if ctx.summary is not None else None
    if pivoted is not None:
        last_at, count = pivoted
        # false, never NULL, for a customer without the event (no pivot row): `not:` must hold
        had: ColumnElement[bool] = last_at.is_not(None)
        if since is not None:
            had = and_(had, last_at > since)
        if cond.where and cond.count is None:
            # such an event implies a summary row with last_at >= its time: only then probe
            return and_(had, exists().where(*_event_filters(cond, ctx, ev, since)))
        if not cond.where and cond.count is None:
            return and_(had)
        if not cond.where and since is None and cond.count is not None:
            return compare_count(func.coalesce(count, 0), cond.count.op, cond.count.value)
    if cond.where:
        filters = _event_filters(cond, ctx, ev, since)
        if cond.count is None:
            # Such an event implies a summary row (last_at >= its time): that small probe first
            # spares the event index's probe for the many customers who never had the event.
            guard = [es.c.customer_id == customers.c.id, es.c.name == cond.event]
            if since is not None:
                guard.append(es.c.last_at > since)
            return and_(exists().where(*guard), exists().where(*filters))
        counted = select(func.count()).where(*filters).scalar_subquery()
        return compare_count(counted, cond.count.op, cond.count.value)
    if cond.count is not None and since is not None:
        counted = (
            select(func.count())
            .where(
                ev.c.customer_id == customers.c.id,
                ev.c.name == cond.event,
                ev.c.ts > since,
                ev.c.ts <= ctx.now,
            )
            .scalar_subquery()
        )
        return compare_count(counted, cond.count.op, cond.count.value)
    if cond.count is not None:
        op, value = cond.count.op, cond.count.value
        zero = _holds_for_zero(op, value)
        if zero is not None:
            # As EXISTS over the summary row, which PostgreSQL can hash once for every customer,
            # where a scalar subquery is probed per customer (twice: compare() reads it twice).
            mine = [es.c.customer_id == customers.c.id, es.c.name == cond.event]
            row_holds = compare(es.c.count, op, value)
            if zero:  # no row (count 0) holds: fails only for a row whose count does not hold
                return ~exists().where(*mine, ~row_holds)
            return exists().where(*mine, row_holds)
        stored = (
            select(es.c.count)
            .where(es.c.customer_id == customers.c.id, es.c.name == cond.event)
            .scalar_subquery()
        )
        return compare_count(func.coalesce(stored, 0), op, value)
    filters = [es.c.customer_id == customers.c.id, es.c.name == cond.event]
    if since is not None:
        filters.append(es.c.last_at > since)
    return exists().where(*filters)


def _event_filters(cond: EventCondition, ctx: Ctx, ev: Any, since: datetime | None) -> list[Any]:
    """The customer's events of `cond.event` up to now (and after `since`) that match `where:`."""
    filters = [
        ev.c.customer_id == customers.c.id,
        ev.c.name == cond.event,
        ev.c.ts <= ctx.now,
        *property_filter(cond.where or {}, ctx, props=ev.c.properties),
    ]
    if since is not None:
        filters.append(ev.c.ts > since)
    return filters


def _holds_for_zero(op: str, value: Any) -> bool | None:
    """Whether `0 OP value` holds, for a numeric comparison; None for anything else."""
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        return None
    if op == "eq":
        return 0 in values
    if op == "in":
        return 0 in values
    if op == "not_in":
        return 0 not in values
    if isinstance(value, list):
        return None
    checks = {"ne": value != 0, "gt": value < 0, "gte": value <= 0, "lt": value > 0, "lte": value >= 0}
    return checks.get(op)


def time_thresholds(cond: Any) -> set[tuple[str, float]]:
    """(event, seconds) of every `within` of a condition: times when it can flip without new events."""
    return {
        (c.event, c.within.total_seconds())
        for c in walk(cond)
        if isinstance(c, EventCondition) and c.within is not None
    }


def uses_attributes(cond: Any) -> bool:
    """Whether a condition reads attributes or subscriptions (which change without events)."""
    return any(isinstance(c, AttributeCondition | SubscribedCondition) for c in walk(cond))


__all__ = [
    "Ctx",
    "SummaryPivot",
    "compile_all",
    "compile_condition",
    "event_names",
    "false",
    "subscribed",
    "summary_pivot",
    "time_thresholds",
]
