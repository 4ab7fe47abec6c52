"""Carts, abandonment and recovery, with the cart rule's own windows (the report's cart figures).

A cart is a run of cart changes by one customer; a change after the cart was abandoned starts a new
one. It is bought when an order follows within the abandonment window of its last change, and
abandoned otherwise; a reminded cart is recovered when an order follows the first reminder sent
within the goal window.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from engine.db.schema import enrollments, events, sends
from engine.reporting.stats import rate
from engine.rules.loader import RuleSet
from engine.rules.triggers import InactivityTrigger

#: the cart journey's windows when no rule is triggered by cart inactivity
DEFAULT_CART_WINDOW = timedelta(hours=1)
DEFAULT_RECOVERY_WINDOW = timedelta(days=3)


@dataclass
class CartFigures:
    window: timedelta = DEFAULT_CART_WINDOW
    goal: timedelta = DEFAULT_RECOVERY_WINDOW
    carts: int = 0
    bought: int = 0
    abandoned: int = 0
    abandonment_rate: float | None = None
    reminded: int = 0
    recovered: int = 0
    recovery_rate: float | None = None
    reminded_recovery_rate: float | None = None


@dataclass
class _Cart:
    customer: int
    last: datetime
    #: the cart's first change
    first: datetime
    event_ids: list[int] = field(default_factory=list)
    #: open (inside the window at `now`), bought or abandoned
    outcome: str = "open"


def cart_figures(
    conn: Connection, ruleset: RuleSet, now: datetime, start: datetime | None = None
) -> CartFigures:
    """The cart figures of the carts that began in `[start, now]`."""
    r = CartFigures()
    cart_rules = [
        (rule, rule.trigger)
        for rule in ruleset.rules
        if isinstance(rule.trigger, InactivityTrigger) and rule.trigger.inactivity.event == "cart_updated"
    ]
    window, goal = DEFAULT_CART_WINDOW, DEFAULT_RECOVERY_WINDOW
    if cart_rules:
        cart_rule, trigger = cart_rules[0]
        window = trigger.inactivity.for_
        if cart_rule.goal is not None:
            goal = cart_rule.goal.within
    r.window, r.goal = window, goal

    ev = events.c
    carts: list[_Cart] = []
    orders: dict[int, list[datetime]] = defaultdict(list)
    open_cart: dict[int, _Cart] = {}
    for eid, cid, name, ts in conn.execute(
        select(ev.id, ev.customer_id, ev.name, ev.ts)
        .where(ev.name.in_(["cart_updated", "cart_cleared", "order_placed"]), ev.ts <= now)
        .order_by(ev.customer_id, ev.ts, ev.id)
    ):
        cart = open_cart.get(cid)
        if cart is not None and ts > cart.last + window:
            cart.outcome = "abandoned"
            del open_cart[cid]
            cart = None
        if name == "cart_updated":
            if cart is None:
                cart = open_cart[cid] = _Cart(cid, ts, ts)
                carts.append(cart)
            cart.last = ts
            cart.event_ids.append(int(eid))
        elif name == "order_placed":
            orders[cid].append(ts)
            if cart is not None:
                cart.outcome = "bought"
                del open_cart[cid]
        elif cart is not None:  # emptied, and no order followed
            cart.outcome = "abandoned"
            del open_cart[cid]
    for cart in open_cart.values():
        if cart.last + window <= now:
            cart.outcome = "abandoned"

    # when the first reminder was sent, by the cart change that triggered it
    reminder: dict[int, datetime] = {}
    if cart_rules:
        en, s = enrollments.c, sends.c
        for trigger_event, sent_at in conn.execute(
            select(en.trigger_event_id, func.min(s.sent_at))
            .join(sends, s.enrollment_id == en.id)
            .where(
                en.rule_id.in_([rule.id for rule, _ in cart_rules]),
                s.status == "sent",
                s.channel == "email",
                s.sent_at <= now,
            )
            .group_by(en.trigger_event_id)
        ):
            if trigger_event is not None and sent_at is not None:
                reminder[int(trigger_event)] = sent_at

    decided = [c for c in carts if c.outcome != "open"]
    if start is not None:
        decided = [c for c in decided if c.first >= start]
    r.carts = len(decided)
    r.bought = sum(1 for c in decided if c.outcome == "bought")
    r.abandoned = r.carts - r.bought
    r.abandonment_rate = rate(r.abandoned, r.carts)
    for cart in decided:
        if cart.outcome != "abandoned":
            continue
        times = [reminder[e] for e in cart.event_ids if e in reminder]
        if not times:
            continue
        r.reminded += 1
        first = min(times)
        if any(first < t <= first + goal for t in orders.get(cart.customer, [])):
            r.recovered += 1
    r.recovery_rate = rate(r.recovered, r.abandoned)
    r.reminded_recovery_rate = rate(r.recovered, r.reminded)
    return r
