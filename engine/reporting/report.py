"""`journey report`: is each stage and each journey working? Figures a marketer can read.

Stage funnel, customers by stage now, cart abandonment and recovery, repeat purchases, revenue per
customer, NPS, and per rule: entered, sent, opened, clicked, unsubscribed, goal conversions, uplift
over its holdout, split (A/B) results, and the rule's flow with its counts, over a period.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from engine.db.schema import customers, events, segment_history, segment_members, sends, stage_history
from engine.evaluate.broadcast import broadcast_figures
from engine.reporting import deliverability
from engine.reporting.abtest import SplitResult, split_results
from engine.reporting.carts import cart_figures
from engine.reporting.deliverability import Deliverability
from engine.reporting.graph import Graph, graphs
from engine.reporting.period import Period, period
from engine.reporting.stats import MIN_GROUP, rate, uplift_ci, uplift_verdict
from engine.rules.durations import format_duration
from engine.rules.loader import RuleSet

JOURNEY_ORDER = ["awareness", "consideration", "decision", "purchase", "retention", "advocacy"]
#: where a stage outside the main line sits in the funnel (a lapsed customer has bought)
STAGE_LEVEL = {"lapsed": "purchase"}

DEFINITIONS = {
    "period": "events, sends and entries between --from and --to; the funnel and the stages now are "
    "as of the last tick",
    "segments": "members as of the last tick; entered and left: changes in the period (not the members "
    "a new segment started with)",
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
    "conversions": "entries into the rule (holdout apart) followed by its goal event within the goal window; "
    "a rule without a goal has none",
    "uplift": "conversion rate minus the holdout's, with a 95% Newcombe (Wilson score) interval; "
    f"under {MIN_GROUP} customers in either group is too few to tell",
    "split": "each variant's entries, emails and goal conversions (clicks for a rule without a goal), and "
    "its difference against each other variant and the holdout, with a 95% Newcombe interval; under "
    f"{MIN_GROUP} customers in either group is too few to tell",
    "flow": "the customers who entered the rule in the period, followed to its end: sent, suppressed, failed "
    "and cancelled by reason per step, waiting now (inside a wait, or due), exited, converted",
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
    #: delivered, bounce and complaint figures of the rule's emails
    deliverability: Deliverability = field(default_factory=Deliverability)
    #: the goal in words; None for a rule without one (it has no conversions)
    goal: str | None = None
    #: entries that left by an `exit_on` event
    exited: int = 0


@dataclass
class Report:
    period: Period | None = None
    #: the shop's currency (settings.yaml), for revenue
    currency: str | None = None
    customers: int = 0
    #: customers by their stage now (lapsed included)
    lapsed: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    funnel: list[dict[str, Any]] = field(default_factory=list)
    #: each broadcast: its id, template and sends by status
    broadcasts: list[dict[str, Any]] = field(default_factory=list)
    #: each segment of segments.yaml: members now, entries and exits in the period
    segments: list[dict[str, Any]] = field(default_factory=list)
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
    #: emails sent per day of the period (days without any included)
    sends_per_day: dict[str, int] = field(default_factory=dict)
    #: delivered, bounce and complaint figures of every email
    deliverability: Deliverability = field(default_factory=Deliverability)
    #: days the period covers only in part, and how many hours of them
    partial_days: dict[str, float] = field(default_factory=dict)
    #: split (A/B) results of every rule with a split
    splits: list[SplitResult] = field(default_factory=list)
    #: every rule's flow with its counts
    flows: list[Graph] = field(default_factory=list)
    #: what each figure counts, in words
    definitions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "period":
                out[f.name] = value.as_dict() if value is not None else None
            elif f.name == "flows":
                out[f.name] = [{k: v for k, v in g.as_dict().items() if k != "period"} for g in value]
            elif isinstance(value, list):
                out[f.name] = [asdict(v) if is_dataclass(v) and not isinstance(v, type) else v for v in value]
            elif is_dataclass(value) and not isinstance(value, type):
                out[f.name] = asdict(value)
            else:
                out[f.name] = value
        return out


def segment_counts(
    conn: Any, names: list[str], start: datetime | None, now: datetime
) -> list[dict[str, Any]]:
    """Members now, and entries and exits in [start, now], of each segment."""
    if not names:
        return []
    members = dict(
        conn.execute(
            select(segment_members.c.segment, func.count())
            .where(segment_members.c.segment.in_(names))
            .group_by(segment_members.c.segment)
        ).all()
    )
    h = segment_history
    when = [h.c.at <= now, h.c.fires.is_(True), h.c.segment.in_(names)]
    if start is not None:
        when.append(h.c.at >= start)
    moves: dict[tuple[str, bool], int] = {
        (seg, bool(entered)): int(n)
        for seg, entered, n in conn.execute(
            select(h.c.segment, h.c.entered, func.count()).where(*when).group_by(h.c.segment, h.c.entered)
        )
    }
    return [
        {
            "segment": name,
            "members": int(members.get(name, 0)),
            "entered": moves.get((name, True), 0),
            "left": moves.get((name, False), 0),
        }
        for name in names
    ]


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


def build(
    engine: Engine,
    ruleset: RuleSet,
    *,
    now: datetime,
    start: datetime | None = None,
    generated_at: datetime | None = None,
) -> Report:
    """The report of the period `[start, now]` (`start` None: from the first event)."""
    r = Report(currency=ruleset.settings.currency)
    in_period = [] if start is None else [events.c.ts >= start]
    with engine.connect() as conn:
        r.period = period(conn, start, now, generated_at or now)
        r.customers = conn.execute(select(func.count()).select_from(customers)).scalar_one()
        r.segments = segment_counts(conn, [s.name for s in ruleset.segments], start, now)
        r.broadcasts = broadcast_figures(conn)
        for stage, n in conn.execute(select(customers.c.stage, func.count()).group_by(customers.c.stage)):
            r.stages[stage or "(none)"] = int(n)
        r.stages = dict(sorted(r.stages.items(), key=lambda kv: -kv[1]))
        r.lapsed = r.stages.get("lapsed", 0)
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
                    "conversion_from_previous": rate(reached[i], reached[i - 1]) if i else None,
                }
            )

        c = cart_figures(conn, ruleset, now, start)
        r.carts, r.carts_bought, r.abandoned, r.abandonment_rate = (
            c.carts,
            c.bought,
            c.abandoned,
            c.abandonment_rate,
        )
        r.reminded, r.recovered = c.reminded, c.recovered
        r.recovery_rate, r.reminded_recovery_rate = c.recovery_rate, c.reminded_recovery_rate
        words = {"window": _duration(c.window), "goal": _duration(c.goal)}
        r.definitions = {k: v.format(**words) for k, v in DEFINITIONS.items()}

        ev = events.c
        orders: dict[int, list[float]] = defaultdict(list)
        for cid, props in conn.execute(
            select(ev.customer_id, ev.properties).where(ev.name == "order_placed", ev.ts <= now, *in_period)
        ):
            try:
                orders[cid].append(float((props or {}).get("value", 0) or 0))
            except (TypeError, ValueError):
                orders[cid].append(0.0)
        r.buyers = len(orders)
        r.repeat_buyers = sum(1 for v in orders.values() if len(v) >= 2)
        r.repeat_purchase_rate = rate(r.repeat_buyers, r.buyers)
        r.revenue = round(sum(sum(v) for v in orders.values()), 2)
        r.revenue_per_customer = round(r.revenue / r.customers, 2) if r.customers else 0.0

        latest: dict[int, tuple[datetime, int]] = {}
        for cid, ts, props in conn.execute(
            select(ev.customer_id, ev.ts, ev.properties).where(
                ev.name == "survey_answered", ev.ts <= now, *in_period
            )
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

        # the ledger: every send made in the period, by rule and channel
        rule_of: dict[int, str] = {}
        emails_by_rule: dict[str, list[int]] = defaultdict(list)
        webhooks_by_rule: dict[str, int] = defaultdict(int)
        sent_since = [] if start is None else [sends.c.sent_at >= start]
        first_send: datetime | None = None
        for sid, rule_id, channel, sent_at in conn.execute(
            select(sends.c.id, sends.c.rule_id, sends.c.channel, sends.c.sent_at).where(
                sends.c.status == "sent", sends.c.sent_at <= now, *sent_since
            )
        ):
            rule_of[int(sid)] = rule_id
            if channel != "email":
                webhooks_by_rule[rule_id] += 1
                continue
            emails_by_rule[rule_id].append(int(sid))
            first_send = sent_at if first_send is None else min(first_send, sent_at)
            day = sent_at.date().isoformat()
            r.sends_per_day[day] = r.sends_per_day.get(day, 0) + 1
        _days(r, start, first_send, now)

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

        r.flows = graphs(conn, ruleset.rules, r.period)
        for g in r.flows:
            rule, counts = g.rule, g.counts
            f = RuleFigures(rule.id, entered=counts.total.entered, exited=counts.total.exited)
            ids = emails_by_rule.get(rule.id, [])
            f.sent = len(ids)
            f.webhooks = webhooks_by_rule.get(rule.id, 0)
            f.opened = sum(1 for i in ids if i in opened)
            f.clicked = sum(1 for i in ids if i in clicked)
            f.unsubscribed = len(unsubscribers.get(rule.id, ()))
            t = counts.total
            if rule.goal is not None and t.converted is not None:
                f.goal = f"{rule.goal.event} within {format_duration(rule.goal.within)}"
                treated = t.entered - t.held_out
                f.conversions = t.converted - (t.held_out_converted or 0)
                f.conversion_rate = rate(f.conversions, treated)
                f.holdout = t.held_out
                f.holdout_conversions = t.held_out_converted or 0
                lift = uplift_ci(f.conversions, treated, f.holdout_conversions, t.held_out)
                if lift is not None:
                    f.uplift, f.uplift_ci = lift
                    f.uplift_verdict = uplift_verdict(treated, t.held_out, f.uplift_ci)
            else:
                f.holdout = t.held_out
            r.rules.append(f)
            r.splits += split_results(rule, counts)
        deliverability.apply(conn, r, now)
    return r


def _days(r: Report, start: datetime | None, first_send: datetime | None, end: datetime) -> None:
    """Every day from the period's start (or the first email) to its end in `sends_per_day` (a day
    without emails is a 0, not a gap), and the days the period cuts: a last day that is not over is
    drawn as partial, not read as a fall."""
    first = start or first_send
    if first is None:
        return
    day = first.date()
    while day <= end.date():
        key = day.isoformat()
        r.sends_per_day.setdefault(key, 0)
        begin = datetime.combine(day, datetime.min.time(), tzinfo=end.tzinfo)
        cut_from = start if start is not None else begin
        covered = (min(end, begin + timedelta(days=1)) - max(cut_from, begin)).total_seconds() / 3600
        if covered < 24:
            r.partial_days[key] = round(covered, 1)
        day += timedelta(days=1)
    r.sends_per_day = dict(sorted(r.sends_per_day.items()))
