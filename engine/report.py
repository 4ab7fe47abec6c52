"""`journey report`: is each stage and each journey working? Figures a marketer can read.

Stage funnel, cart abandonment and recovery, repeat purchases, revenue per customer, NPS, and per
rule: entered, sent, opened, clicked, unsubscribed, goal conversions, and uplift over its holdout.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from engine.rules.loader import RuleSet
from engine.schema import customers, enrollments, events, sends, stage_history

JOURNEY_ORDER = ["awareness", "consideration", "decision", "purchase", "retention", "advocacy"]
#: where a stage outside the main line sits in the funnel (a lapsed customer has bought)
STAGE_LEVEL = {"lapsed": "purchase"}


@dataclass
class RuleFigures:
    rule: str
    entered: int = 0
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    conversions: int = 0
    conversion_rate: float | None = None
    holdout: int = 0
    holdout_conversions: int = 0
    uplift: float | None = None
    uplift_ci: tuple[float, float] | None = None


@dataclass
class Report:
    customers: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    funnel: list[dict[str, Any]] = field(default_factory=list)
    carts: int = 0
    abandoned: int = 0
    abandonment_rate: float | None = None
    reminded: int = 0
    recovered: int = 0
    recovery_rate: float | None = None
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
    sends_per_day: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _rate(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def uplift_ci(
    conv_a: int, n_a: int, conv_b: int, n_b: int, z: float = 1.96
) -> tuple[float, tuple[float, float]] | None:
    """Difference of two conversion rates (treated minus holdout) with a 95% normal interval."""
    if not n_a or not n_b:
        return None
    p_a, p_b = conv_a / n_a, conv_b / n_b
    diff = p_a - p_b
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    return round(diff, 4), (round(diff - z * se, 4), round(diff + z * se, 4))


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

        ev = events.c
        firsts: dict[tuple[int, str], list[datetime]] = defaultdict(list)
        orders: dict[int, list[float]] = defaultdict(list)
        for cid, name, ts, props in conn.execute(
            select(ev.customer_id, ev.name, ev.ts, ev.properties).where(
                ev.name.in_(["cart_updated", "order_placed"]), ev.ts <= now
            )
        ):
            firsts[(cid, name)].append(ts)
            if name == "order_placed":
                try:
                    orders[cid].append(float((props or {}).get("value", 0) or 0))
                except (TypeError, ValueError):
                    orders[cid].append(0.0)
        carters = {cid for cid, name in firsts if name == "cart_updated"}
        r.carts = len(carters)
        r.abandoned = sum(
            1
            for cid in carters
            if not any(o > min(firsts[(cid, "cart_updated")]) for o in firsts.get((cid, "order_placed"), []))
        )
        r.abandonment_rate = _rate(r.abandoned, r.carts)
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

        opened: set[int] = set()
        clicked: set[int] = set()
        unsub_by_rule: dict[str, int] = defaultdict(int)
        for name, props in conn.execute(
            select(ev.name, ev.properties).where(
                ev.name.in_(["email_opened", "email_clicked", "unsubscribed"])
            )
        ):
            props = props or {}
            if name == "unsubscribed":
                if props.get("rule"):
                    unsub_by_rule[str(props["rule"])] += 1
                continue
            sid = props.get("send_id")
            if isinstance(sid, int):
                (opened if name == "email_opened" else clicked).add(sid)
        sent_by_rule: dict[str, list[int]] = defaultdict(list)
        for sid, rule_id, sent_at in conn.execute(
            select(sends.c.id, sends.c.rule_id, sends.c.sent_at).where(sends.c.status == "sent")
        ):
            sent_by_rule[rule_id].append(sid)
            if sent_at is not None:
                day = sent_at.date().isoformat()
                r.sends_per_day[day] = r.sends_per_day.get(day, 0) + 1
        r.sends_per_day = dict(sorted(r.sends_per_day.items()))

        for rule in ruleset.rules:
            f = RuleFigures(rule.id)
            rows_e = list(
                conn.execute(
                    select(enrollments.c.customer_id, enrollments.c.entered_at, enrollments.c.status).where(
                        enrollments.c.rule_id == rule.id
                    )
                )
            )
            f.entered = len(rows_e)
            ids = sent_by_rule.get(rule.id, [])
            f.sent = len(ids)
            f.opened = sum(1 for i in ids if i in opened)
            f.clicked = sum(1 for i in ids if i in clicked)
            f.unsubscribed = unsub_by_rule.get(rule.id, 0)
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
                if rule.trigger.inactivity is not None and rule.trigger.inactivity.event == "cart_updated":
                    r.reminded += len(treated)
                    r.recovered += f.conversions
            r.rules.append(f)
        r.recovery_rate = _rate(r.recovered, r.reminded)
    return r


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def render_text(r: Report) -> str:
    lines = [f"Customers: {r.customers:,}", "", "Stage funnel (reached the stage or a later one)"]
    for row in r.funnel:
        conv = row["conversion_from_previous"]
        lines.append(f"  {row['stage']:<14}{row['reached']:>8,}   {_pct(conv) if conv is not None else ''}")
    lines.append(
        "  now: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r.stages.items(), key=lambda kv: -kv[1]))
    )
    lines += [
        "",
        f"Carts: {r.carts:,}, abandoned {r.abandoned:,} ({_pct(r.abandonment_rate)}); reminded {r.reminded:,}, "
        f"recovered {r.recovered:,} ({_pct(r.recovery_rate)})",
        f"Buyers: {r.buyers:,}, repeat {r.repeat_buyers:,} ({_pct(r.repeat_purchase_rate)}); revenue "
        f"{r.revenue:,.2f}, per customer {r.revenue_per_customer:,.2f}",
        f"NPS: {'—' if r.nps is None else f'{r.nps:+.1f}'} (promoters {r.promoters}, passives {r.passives}, "
        f"detractors {r.detractors})",
        "",
        f"  {'rule':<28}{'entered':>8}{'sent':>7}{'opened':>8}{'clicked':>8}{'unsub':>6}{'conv':>6}{'rate':>8}"
        f"   uplift vs holdout (95% CI)",
    ]
    for f in r.rules:
        lift = (
            ""
            if f.uplift is None or f.uplift_ci is None
            else (
                f"{100 * f.uplift:+.1f} pts [{100 * f.uplift_ci[0]:+.1f}, {100 * f.uplift_ci[1]:+.1f}] n={f.holdout}"
            )
        )
        lines.append(
            f"  {f.rule:<28}{f.entered:>8,}{f.sent:>7,}{f.opened:>8,}{f.clicked:>8,}{f.unsubscribed:>6,}"
            f"{f.conversions:>6,}{_pct(f.conversion_rate):>8}   {lift}"
        )
    return "\n".join(lines)
