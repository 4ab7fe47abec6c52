"""`journey report --csv DIR`: each table of the report as a CSV file, for a spreadsheet.

Files: summary, funnel, stages_now, rules, sends_per_day, splits, split_comparisons and steps
(`.csv`, a header line first). Rates are fractions (0.25), not percentages; amounts are plain
numbers, with the currency in the summary.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from engine.reporting.report import Report


def _reasons(by_reason: dict[str, int]) -> str:
    return "; ".join(f"{reason}={n}" for reason, n in sorted(by_reason.items()))


def tables(r: Report) -> dict[str, tuple[Sequence[str], Iterable[Sequence[Any]]]]:
    """Each table's name, header and rows."""
    p = r.period.as_dict() if r.period is not None else {}
    summary = [
        ("period_from", p.get("from") or ""),
        ("period_to", p.get("to") or ""),
        ("generated_at", p.get("generated_at") or ""),
        ("first_event", p.get("first_data") or ""),
        ("customers", r.customers),
        ("lapsed_now", r.lapsed),
        ("carts", r.carts),
        ("carts_bought", r.carts_bought),
        ("carts_abandoned", r.abandoned),
        ("abandonment_rate", r.abandonment_rate),
        ("carts_reminded", r.reminded),
        ("carts_recovered", r.recovered),
        ("recovery_rate", r.recovery_rate),
        ("buyers", r.buyers),
        ("repeat_buyers", r.repeat_buyers),
        ("repeat_purchase_rate", r.repeat_purchase_rate),
        ("revenue", r.revenue),
        ("revenue_per_customer", r.revenue_per_customer),
        ("currency", r.currency or ""),
        ("nps", r.nps),
        ("promoters", r.promoters),
        ("passives", r.passives),
        ("detractors", r.detractors),
    ]
    rule_head = [
        "rule",
        "entered",
        "emails_sent",
        "webhooks",
        "opened",
        "clicked",
        "unsubscribed",
        "exited",
        "goal",
        "conversions",
        "conversion_rate",
        "holdout",
        "holdout_conversions",
        "uplift",
        "uplift_ci_low",
        "uplift_ci_high",
        "uplift_verdict",
    ]
    rules = [
        [
            f.rule,
            f.entered,
            f.sent,
            f.webhooks,
            f.opened,
            f.clicked,
            f.unsubscribed,
            f.exited,
            f.goal or "",
            f.conversions if f.goal else "",
            f.conversion_rate,
            f.holdout,
            f.holdout_conversions if f.goal else "",
            f.uplift,
            f.uplift_ci[0] if f.uplift_ci else None,
            f.uplift_ci[1] if f.uplift_ci else None,
            f.uplift_verdict or "",
        ]
        for f in r.rules
    ]
    variants = [
        [s.rule, s.step, s.measure, v.name, v.weight, v.entered, v.sent, v.opened, v.clicked, v.clickers]
        + [v.converted if v.converted is not None else "", v.exited, v.rate]
        for s in r.splits
        for v in s.variants
    ]
    comparisons = [
        [s.rule, s.step, s.measure, c.variant, c.against, c.n_variant, c.n_against, c.difference]
        + [c.ci[0] if c.ci else None, c.ci[1] if c.ci else None, c.verdict]
        for s in r.splits
        for c in s.comparisons
    ]
    steps = []
    for g in r.flows:
        for node in g.flow.nodes:
            c = node.counts
            steps.append(
                [g.rule.id, node.id, node.kind, node.title, node.variant or "", c.get("waiting", "")]
                + [c.get(k, "") for k in ("reached", "sent")]
                + [_reasons(c[k]) if k in c else "" for k in ("suppressed", "failed", "cancelled")]
                + [c.get(k, "") for k in ("scheduled", "opened", "clicked")]
            )
    return {
        "summary": (("figure", "value"), summary),
        "funnel": (
            ("stage", "reached", "conversion_from_previous"),
            [(f["stage"], f["reached"], f["conversion_from_previous"]) for f in r.funnel],
        ),
        "stages_now": (("stage", "customers"), list(r.stages.items())),
        "rules": (rule_head, rules),
        "sends_per_day": (
            ("day", "emails_sent", "partial_day_hours"),
            [(day, n, r.partial_days.get(day, "")) for day, n in r.sends_per_day.items()],
        ),
        "splits": (
            (
                "rule",
                "step",
                "measure",
                "variant",
                "weight_percent",
                "entered",
                "emails_sent",
                "opened",
                "clicked",
                "clickers",
                "converted",
                "exited",
                "rate",
            ),
            variants,
        ),
        "split_comparisons": (
            (
                "rule",
                "step",
                "measure",
                "variant",
                "against",
                "n_variant",
                "n_against",
                "difference",
                "ci_low",
                "ci_high",
                "verdict",
            ),
            comparisons,
        ),
        "steps": (
            (
                "rule",
                "step",
                "kind",
                "title",
                "variant",
                "waiting_now",
                "reached",
                "sent",
                "suppressed",
                "failed",
                "cancelled",
                "scheduled",
                "opened",
                "clicked",
            ),
            steps,
        ),
    }


def write_csv(r: Report, directory: Path) -> list[Path]:
    """Write every table into `directory` (made if missing); the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (head, rows) in tables(r).items():
        path = directory / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(head)
            writer.writerows(["" if v is None else v for v in row] for row in rows)
        written.append(path)
    return written
