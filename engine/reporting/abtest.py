"""Split (A/B) results: per variant and holdout, what they got and what they did, and each
variant's difference against the other variants and against the holdout, with a 95% interval.

The measure is the rule's goal (entries followed by the goal event within its window, over the
entries of the variant); a rule without a goal compares clicks instead (customers who clicked one
of the variant's emails, over its entries), and then has nothing to compare with its holdout,
which gets no email.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engine.reporting.counts import GroupCounts, RuleCounts
from engine.reporting.stats import MIN_GROUP, rate, uplift_ci, verdict
from engine.rules.durations import format_duration
from engine.rules.model import Rule, SplitStep
from engine.rules.walk import walk_steps

HOLDOUT = "holdout"


@dataclass
class VariantResult:
    name: str
    #: the variant's share of the split, in percent
    weight: float
    entered: int = 0
    #: emails sent
    sent: int = 0
    #: sent emails opened (a click counts as an open), clicked
    opened: int = 0
    clicked: int = 0
    #: customers who clicked at least one email
    clickers: int = 0
    #: entries followed by the goal; None without a goal
    converted: int | None = None
    exited: int = 0
    #: the measure: converted (or clickers) / entered
    rate: float | None = None


@dataclass
class Comparison:
    variant: str
    against: str
    #: rate of `variant` minus rate of `against`, and its 95% interval
    difference: float | None = None
    ci: tuple[float, float] | None = None
    #: "better", "worse", "no clear difference" or "too few to tell"
    verdict: str = "too few to tell"
    n_variant: int = 0
    n_against: int = 0


@dataclass
class SplitResult:
    rule: str
    #: the split step's path
    step: str
    #: "goal conversion" or "click"
    measure: str
    #: the goal in words, when the rule has one
    goal: str | None
    variants: list[VariantResult] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _variant(name: str, weight: float, g: GroupCounts | None, by_goal: bool) -> VariantResult:
    if g is None:
        return VariantResult(name, weight, converted=0 if by_goal else None)
    v = VariantResult(
        name,
        weight,
        entered=g.entered,
        sent=g.sent,
        opened=g.opened,
        clicked=g.clicked,
        clickers=g.clickers,
        converted=g.converted,
        exited=g.exited,
    )
    hits = (g.converted or 0) if by_goal else g.clickers
    v.rate = rate(hits, g.entered)
    return v


def _compare(a: VariantResult, b: VariantResult, by_goal: bool) -> Comparison:
    c = Comparison(a.name, b.name, n_variant=a.entered, n_against=b.entered)
    hits_a = (a.converted or 0) if by_goal else a.clickers
    hits_b = (b.converted or 0) if by_goal else b.clickers
    lift = uplift_ci(hits_a, a.entered, hits_b, b.entered)
    if lift is not None:
        c.difference, c.ci = lift
        c.verdict = verdict(a.entered, b.entered, c.ci)
    return c


def split_results(rule: Rule, counts: RuleCounts) -> list[SplitResult]:
    """The results of each split of the rule (variants as `enrollments.variant` records them)."""
    out: list[SplitResult] = []
    by_goal = rule.goal is not None
    goal = f"{rule.goal.event} within {format_duration(rule.goal.within)}" if rule.goal else None
    for path, step in walk_steps(rule.steps):
        if not isinstance(step, SplitStep):
            continue
        total = sum(step.split.values())
        result = SplitResult(rule.id, path, "goal conversion" if by_goal else "click", goal)
        for name, weight in step.split.items():
            g = counts.variants.get(name)
            result.variants.append(_variant(name, round(100 * weight / total, 1), g, by_goal))
        treated = [v for v in result.variants if v.name != HOLDOUT]
        held = next((v for v in result.variants if v.name == HOLDOUT), None)
        for i, a in enumerate(treated):
            for b in treated[:i]:
                result.comparisons.append(_compare(a, b, by_goal))
        if held is not None and by_goal:
            result.comparisons += [_compare(a, held, by_goal) for a in treated]
        out.append(result)
    return out


def comparison_text(c: Comparison) -> str:
    """`free_repairs vs miss_you: +2.1 pts [-6.3, +10.5] (230 vs 240): no clear difference`."""
    head = f"{c.variant} vs {c.against}: "
    if c.difference is None or c.ci is None:
        return head + "no customers yet"
    if c.verdict == "too few to tell":
        return head + (f"too few to tell ({c.n_variant:,} vs {c.n_against:,}; {MIN_GROUP} each needed)")
    low, high = c.ci
    return head + (
        f"{100 * c.difference:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}] "
        f"({c.n_variant:,} vs {c.n_against:,}): {c.verdict}"
    )
