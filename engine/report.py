"""`journey report`: is each stage and each journey working? Figures a marketer can read.

Stage funnel, cart abandonment and recovery, repeat purchases, revenue per customer, NPS, and per
rule: entered, sent, opened, clicked, unsubscribed, goal conversions, and uplift over its holdout.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from engine.rules.loader import RuleSet
from engine.schema import customers, enrollments, events, sends, stage_history

JOURNEY_ORDER = ["awareness", "consideration", "decision", "purchase", "retention", "advocacy"]
#: where a stage outside the main line sits in the funnel (a lapsed customer has bought)
STAGE_LEVEL = {"lapsed": "purchase"}


#: below this many customers in the treated group or in the holdout, uplift is "too few to tell"
MIN_GROUP = 30
#: the cart journey's windows when no rule is triggered by cart inactivity
DEFAULT_CART_WINDOW = timedelta(hours=1)
DEFAULT_RECOVERY_WINDOW = timedelta(days=3)

DEFINITIONS = {
    "cart": "a run of cart changes by one customer; a change after the cart was abandoned starts a new cart",
    "abandoned": "a cart with no order within {window} of its last change (emptied carts included)",
    "abandonment_rate": "abandoned carts / carts (carts still inside the {window} window are not counted)",
    "reminded": "abandoned carts whose reminder email was actually sent (not held back by the frequency "
    "cap or an opt-out, not in a holdout)",
    "recovered": "reminded carts followed by an order within {goal} of the reminder",
    "recovery_rate": "recovered carts / abandoned carts",
    "sent": "emails sent; webhook posts are counted apart",
    "opened": "sent emails opened at least once (a click counts as an open: images may be blocked)",
    "clicked": "sent emails clicked at least once",
    "unsubscribed": "customers who unsubscribed from a link in one of the rule's emails",
    "conversions": "entries into the rule (holdout apart) followed by its goal event within the goal window",
    "uplift": "conversion rate minus the holdout's, with a 95% Newcombe (Wilson score) interval; "
    f"under {MIN_GROUP} customers in either group is too few to tell",
}


@dataclass
class RuleFigures:
    rule: str
    entered: int = 0
    #: emails sent
    sent: int = 0
    #: webhook posts made
    webhooks: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    conversions: int = 0
    conversion_rate: float | None = None
    holdout: int = 0
    holdout_conversions: int = 0
    uplift: float | None = None
    uplift_ci: tuple[float, float] | None = None
    #: "too few to tell", "better than holdout", "no clear difference" or "worse than holdout"
    uplift_verdict: str | None = None


@dataclass
class Report:
    customers: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    funnel: list[dict[str, Any]] = field(default_factory=list)
    carts: int = 0
    carts_bought: int = 0
    abandoned: int = 0
    abandonment_rate: float | None = None
    reminded: int = 0
    recovered: int = 0
    recovery_rate: float | None = None
    #: recovered / reminded: how often a reminder that went out was followed by the order
    reminded_recovery_rate: float | None = None
    buyers: int = 0
    repeat_buyers: int = 0
    repeat_purchase_rate: float | None = None
    revenue: float = 0.0
    revenue_per_customer: float = 0.0
    nps: float | None = None
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    rules: list[RuleFigures] = field(default_factory=list)
    #: emails sent per day
    sends_per_day: dict[str, int] = field(default_factory=dict)
    #: what each figure counts, in words
    definitions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _rate(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def wilson(x: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of the proportion x/n (n > 0)."""
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def uplift_ci(
    conv_a: int, n_a: int, conv_b: int, n_b: int, z: float = 1.96
) -> tuple[float, tuple[float, float]] | None:
    """Difference of two conversion rates (treated a minus holdout b) with the 95% Newcombe hybrid
    score interval (Newcombe 1998, method 10). Unlike the plain normal interval it stays honest for
    small groups and for rates near 0 or 1, where the normal one collapses to a point."""
    if not n_a or not n_b:
        return None
    p_a, p_b = conv_a / n_a, conv_b / n_b
    l_a, u_a = wilson(conv_a, n_a, z)
    l_b, u_b = wilson(conv_b, n_b, z)
    diff = p_a - p_b
    low = diff - math.sqrt((p_a - l_a) ** 2 + (u_b - p_b) ** 2)
    high = diff + math.sqrt((u_a - p_a) ** 2 + (p_b - l_b) ** 2)
    return round(diff, 4), (round(low, 4), round(high, 4))


def uplift_verdict(n_a: int, n_b: int, ci: tuple[float, float]) -> str:
    """What a marketer may conclude from an uplift interval."""
    if min(n_a, n_b) < MIN_GROUP:
        return "too few to tell"
    if ci[0] > 0:
        return "better than holdout"
    if ci[1] < 0:
        return "worse than holdout"
    return "no clear difference"


def _duration(d: timedelta) -> str:
    seconds = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _send_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@dataclass
class _Cart:
    customer: int
    last: datetime
    event_ids: list[int] = field(default_factory=list)
    #: open (inside the window at `now`), bought or abandoned
    outcome: str = "open"


def _cart_figures(conn: Connection, r: Report, ruleset: RuleSet, now: datetime) -> None:
    """Carts, abandonment and recovery, as DEFINITIONS says, with the cart rule's own windows."""
    cart_rules = [
        rule
        for rule in ruleset.rules
        if rule.trigger.inactivity is not None and rule.trigger.inactivity.event == "cart_updated"
    ]
    window, goal = DEFAULT_CART_WINDOW, DEFAULT_RECOVERY_WINDOW
    if cart_rules:
        inactivity = cart_rules[0].trigger.inactivity
        assert inactivity is not None
        window = inactivity.for_
        if cart_rules[0].goal is not None:
            goal = cart_rules[0].goal.within
    words = {"window": _duration(window), "goal": _duration(goal)}
    r.definitions = {k: v.format(**words) for k, v in DEFINITIONS.items()}

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
                cart = open_cart[cid] = _Cart(cid, ts)
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
                en.rule_id.in_([rule.id for rule in cart_rules]),
                s.status == "sent",
                s.channel == "email",
                s.sent_at <= now,
            )
            .group_by(en.trigger_event_id)
        ):
            if trigger_event is not None and sent_at is not None:
                reminder[int(trigger_event)] = sent_at

    decided = [c for c in carts if c.outcome != "open"]
    r.carts = len(decided)
    r.carts_bought = sum(1 for c in decided if c.outcome == "bought")
    r.abandoned = r.carts - r.carts_bought
    r.abandonment_rate = _rate(r.abandoned, r.carts)
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
    r.recovery_rate = _rate(r.recovered, r.abandoned)
    r.reminded_recovery_rate = _rate(r.recovered, r.reminded)


def build(engine: Engine, ruleset: RuleSet, *, now: datetime) -> Report:
    r = Report()
    with engine.connect() as conn:
        r.customers = conn.execute(select(func.count()).select_from(customers)).scalar_one()
        for stage, n in conn.execute(select(customers.c.stage, func.count()).group_by(customers.c.stage)):
            r.stages[stage or "(none)"] = int(n)
        # funnel: customers who ever reached each stage or a later one
        level: dict[int, int] = defaultdict(int)
        rows = list(conn.execute(select(stage_history.c.customer_id, stage_history.c.to_stage)))
        rows += list(
            conn.execute(select(customers.c.id, customers.c.stage).where(customers.c.stage.is_not(None)))
        )
        for cid, stage in rows:
            name = STAGE_LEVEL.get(stage, stage)
            if name in JOURNEY_ORDER:
                level[cid] = max(level[cid], JOURNEY_ORDER.index(name))
        reached = [sum(1 for v in level.values() if v >= i) for i in range(len(JOURNEY_ORDER))]
        for i, name in enumerate(JOURNEY_ORDER):
            r.funnel.append(
                {
                    "stage": name,
                    "reached": reached[i],
                    "conversion_from_previous": _rate(reached[i], reached[i - 1]) if i else None,
                }
            )

        _cart_figures(conn, r, ruleset, now)

        ev = events.c
        orders: dict[int, list[float]] = defaultdict(list)
        for cid, props in conn.execute(
            select(ev.customer_id, ev.properties).where(ev.name == "order_placed", ev.ts <= now)
        ):
            try:
                orders[cid].append(float((props or {}).get("value", 0) or 0))
            except (TypeError, ValueError):
                orders[cid].append(0.0)
        r.buyers = len(orders)
        r.repeat_buyers = sum(1 for v in orders.values() if len(v) >= 2)
        r.repeat_purchase_rate = _rate(r.repeat_buyers, r.buyers)
        r.revenue = round(sum(sum(v) for v in orders.values()), 2)
        r.revenue_per_customer = round(r.revenue / r.customers, 2) if r.customers else 0.0

        latest: dict[int, tuple[datetime, int]] = {}
        for cid, ts, props in conn.execute(
            select(ev.customer_id, ev.ts, ev.properties).where(ev.name == "survey_answered", ev.ts <= now)
        ):
            score = (props or {}).get("score")
            if isinstance(score, int | float) and (cid not in latest or ts > latest[cid][0]):
                latest[cid] = (ts, int(score))
        scores = [s for _, s in latest.values()]
        r.promoters = sum(1 for s in scores if s >= 9)
        r.passives = sum(1 for s in scores if 7 <= s <= 8)
        r.detractors = sum(1 for s in scores if s <= 6)
        if scores:
            r.nps = round(100 * (r.promoters - r.detractors) / len(scores), 1)

        # the ledger: every send made, by rule and channel
        rule_of: dict[int, str] = {}
        emails_by_rule: dict[str, list[int]] = defaultdict(list)
        webhooks_by_rule: dict[str, int] = defaultdict(int)
        for sid, rule_id, channel, sent_at in conn.execute(
            select(sends.c.id, sends.c.rule_id, sends.c.channel, sends.c.sent_at).where(
                sends.c.status == "sent", sends.c.sent_at <= now
            )
        ):
            rule_of[int(sid)] = rule_id
            if channel != "email":
                webhooks_by_rule[rule_id] += 1
                continue
            emails_by_rule[rule_id].append(int(sid))
            day = sent_at.date().isoformat()
            r.sends_per_day[day] = r.sends_per_day.get(day, 0) + 1
        r.sends_per_day = dict(sorted(r.sends_per_day.items()))

        # engagement: each open, click and unsubscribe names the send (and the rule) it came from
        opened: set[int] = set()
        clicked: set[int] = set()
        unsubscribers: dict[str, set[int]] = defaultdict(set)
        for cid, name, props in conn.execute(
            select(ev.customer_id, ev.name, ev.properties).where(
                ev.name.in_(["email_opened", "email_clicked", "unsubscribed"]), ev.ts <= now
            )
        ):
            props = props or {}
            sid = _send_id(props.get("send_id"))
            if name == "unsubscribed":
                rule_id = rule_of.get(sid) if sid is not None else None
                if rule_id is None and isinstance(props.get("rule"), str):
                    rule_id = props["rule"]
                if rule_id is not None:
                    unsubscribers[rule_id].add(int(cid))
            elif sid is not None:
                opened.add(sid)  # a click is an open too: the pixel may have been blocked
                if name == "email_clicked":
                    clicked.add(sid)

        for rule in ruleset.rules:
            f = RuleFigures(rule.id)
            rows_e = list(
                conn.execute(
                    select(enrollments.c.customer_id, enrollments.c.entered_at, enrollments.c.status).where(
                        enrollments.c.rule_id == rule.id, enrollments.c.entered_at <= now
                    )
                )
            )
            f.entered = len(rows_e)
            ids = emails_by_rule.get(rule.id, [])
            f.sent = len(ids)
            f.webhooks = webhooks_by_rule.get(rule.id, 0)
            f.opened = sum(1 for i in ids if i in opened)
            f.clicked = sum(1 for i in ids if i in clicked)
            f.unsubscribed = len(unsubscribers.get(rule.id, ()))
            if rule.goal is not None and rows_e:
                goal_times: dict[int, list[datetime]] = defaultdict(list)
                for cid, ts in conn.execute(
                    select(ev.customer_id, ev.ts).where(ev.name == rule.goal.event, ev.ts <= now)
                ):
                    goal_times[cid].append(ts)
                within = rule.goal.within

                def converted(cid: int, entered: datetime) -> bool:
                    return any(entered < t <= entered + within for t in goal_times.get(cid, []))  # noqa: B023

                treated = [(c, t) for c, t, s in rows_e if s != "holdout"]
                held = [(c, t) for c, t, s in rows_e if s == "holdout"]
                f.conversions = sum(1 for c, t in treated if converted(c, t))
                f.conversion_rate = _rate(f.conversions, len(treated))
                f.holdout = len(held)
                f.holdout_conversions = sum(1 for c, t in held if converted(c, t))
                lift = uplift_ci(f.conversions, len(treated), f.holdout_conversions, len(held))
                if lift is not None:
                    f.uplift, f.uplift_ci = lift
                    f.uplift_verdict = uplift_verdict(len(treated), len(held), f.uplift_ci)
            r.rules.append(f)
    return r


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def uplift_text(f: RuleFigures) -> str:
    """The uplift as a marketer reads it: points, the interval, the group sizes and the verdict."""
    if f.uplift is None or f.uplift_ci is None:
        return ""
    treated = f.entered - f.holdout
    if f.uplift_verdict == "too few to tell":
        return f"too few to tell ({treated:,} treated, {f.holdout:,} held out; {MIN_GROUP} each needed)"
    low, high = f.uplift_ci
    return (
        f"{100 * f.uplift:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}] "
        f"({treated:,} vs {f.holdout:,} held out): {f.uplift_verdict}"
    )


def render_text(r: Report) -> str:
    width = max([len(f.rule) + 2 for f in r.rules] + [24])
    lines = [f"Customers: {r.customers:,}", "", "Stage funnel (reached the stage or a later one)"]
    for row in r.funnel:
        conv = row["conversion_from_previous"]
        lines.append(f"  {row['stage']:<14}{row['reached']:>8,}   {_pct(conv) if conv is not None else ''}")
    lines.append(
        "  now: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r.stages.items(), key=lambda kv: -kv[1]))
    )
    lines += [
        "",
        f"Carts: {r.carts:,}; bought {r.carts_bought:,}, abandoned {r.abandoned:,} "
        f"({_pct(r.abandonment_rate)} abandonment)",
        f"  reminded {r.reminded:,}; recovered {r.recovered:,} ({_pct(r.recovery_rate)} of abandoned carts, "
        f"{_pct(r.reminded_recovery_rate)} of reminded ones)",
        f"Buyers: {r.buyers:,}, repeat {r.repeat_buyers:,} ({_pct(r.repeat_purchase_rate)}); revenue "
        f"{r.revenue:,.2f}, per customer {r.revenue_per_customer:,.2f}",
        f"NPS: {'—' if r.nps is None else f'{r.nps:+.1f}'} (promoters {r.promoters}, passives {r.passives}, "
        f"detractors {r.detractors})",
        "",
        f"  {'rule':<{width}}{'entered':>8}{'emails':>7}{'opened':>7}{'clicked':>8}{'unsub':>6}{'hooks':>6}"
        f"{'conv':>6}{'rate':>7}   uplift vs holdout (95% CI)",
    ]
    for f in r.rules:
        lines.append(
            f"  {f.rule:<{width}}{f.entered:>8,}{f.sent:>7,}{f.opened:>7,}{f.clicked:>8,}{f.unsubscribed:>6,}"
            f"{f.webhooks:>6,}{f.conversions:>6,}{_pct(f.conversion_rate):>7}   {uplift_text(f)}"
        )
    if r.definitions:
        lines += ["", "How these are counted:"]
        lines += [f"  {name.replace('_', ' ')}: {text}" for name, text in r.definitions.items()]
    return "\n".join(lines)
