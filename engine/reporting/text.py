"""`journey report` as text for the terminal."""

from __future__ import annotations

from engine.delivery.money import format_money
from engine.reporting.abtest import SplitResult, comparison_text
from engine.reporting.deliverability import COMPLAINT_ALERT, Deliverability
from engine.reporting.report import Report, RuleFigures
from engine.reporting.stats import MIN_GROUP

#: ANSI red, for a terminal (click.echo drops it when the output is not one)
RED, RESET = "\x1b[31m", "\x1b[0m"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def complaint_text(d: Deliverability, color: bool = True) -> str:
    """The complaint rate with two decimals, flagged (in red on a terminal) above the limit."""
    if d.complaint_rate is None:
        return "—"
    shown = f"{100 * d.complaint_rate:.2f}%"
    if not d.complaint_alert:
        return shown
    flagged = f"{shown} (over {100 * COMPLAINT_ALERT:.1f}%!)"
    return f"{RED}{flagged}{RESET}" if color else flagged


def deliverability_lines(r: Report, width: int) -> list[str]:
    d = r.deliverability
    lines = [
        f"Deliverability: {d.emails:,} emails; delivered {pct(d.delivered_rate)}, bounced "
        f"{pct(d.bounce_rate)} ({d.bounced:,}), complaints {complaint_text(d)} ({d.complained:,})",
        f"  {'rule':<{width}}{'emails':>8}{'deliv.':>8}{'bounced':>9}   complaints",
    ]
    for f in r.rules:
        x = f.deliverability
        if x.emails:
            lines.append(
                f"  {f.rule:<{width}}{x.emails:>8,}{pct(x.delivered_rate):>8}{pct(x.bounce_rate):>9}"
                f"   {complaint_text(x)}"
            )
    return lines


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


def split_text(s: SplitResult) -> list[str]:
    """A split's variants, one line each, and its comparisons."""
    by_goal = s.measure == "goal conversion"
    what = f"goal: {s.goal}" if by_goal else "no goal: clicks compared"
    lines = [
        f"  {s.rule} (split at step {s.step}; {what})",
        f"    {'variant':<16}{'share':>6}{'entered':>8}{'emails':>7}{'opened':>7}{'clicked':>8}"
        f"{'conv' if by_goal else 'clickers':>9}{'rate':>7}",
    ]
    for v in s.variants:
        hits = v.converted if by_goal else v.clickers
        lines.append(
            f"    {v.name:<16}{v.weight:>5.0f}%{v.entered:>8,}{v.sent:>7,}{v.opened:>7,}{v.clicked:>8,}"
            f"{hits or 0:>9,}{pct(v.rate):>7}"
        )
    lines += [f"    {comparison_text(c)}" for c in s.comparisons]
    return lines


def render_text(r: Report) -> str:
    width = max([len(f.rule) + 2 for f in r.rules] + [24])
    lines = [r.period.text(), ""] if r.period is not None else []
    lines += [f"Customers: {r.customers:,}", "", "Stage funnel (reached the stage or a later one)"]
    for row in r.funnel:
        conv = row["conversion_from_previous"]
        lines.append(f"  {row['stage']:<14}{row['reached']:>8,}   {pct(conv) if conv is not None else ''}")
    lines.append(
        "  now: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r.stages.items(), key=lambda kv: -kv[1]))
    )
    if r.segments:
        lines += ["", "Segments (members now; entered and left in the period)"]
        for seg in r.segments:
            lines.append(
                f"  {seg['segment']:<14}{seg['members']:>8,}   entered {seg['entered']:,}, left {seg['left']:,}"
            )
    for b in r.broadcasts:
        counts = ", ".join(f"{status} {n:,}" for status, n in sorted(b["by_status"].items()))
        lines.append(
            f"Broadcast {b['broadcast']} ({b['template']}): {sum(b['by_status'].values()):,} scheduled; {counts}"
        )
    lines += [
        "",
        f"Carts: {r.carts:,}; bought {r.carts_bought:,}, abandoned {r.abandoned:,} "
        f"({pct(r.abandonment_rate)} abandonment)",
        f"  reminded {r.reminded:,}; recovered {r.recovered:,} ({pct(r.recovery_rate)} of abandoned carts, "
        f"{pct(r.reminded_recovery_rate)} of reminded ones)",
        f"Buyers: {r.buyers:,}, repeat {r.repeat_buyers:,} ({pct(r.repeat_purchase_rate)}); revenue "
        f"{format_money(r.revenue, r.currency)}, per customer {format_money(r.revenue_per_customer, r.currency)}",
        f"NPS: {'—' if r.nps is None else f'{r.nps:+.1f}'} (promoters {r.promoters}, passives {r.passives}, "
        f"detractors {r.detractors})",
        "",
        f"  {'rule':<{width}}{'entered':>8}{'emails':>7}{'opened':>7}{'clicked':>8}{'unsub':>6}{'hooks':>6}"
        f"{'conv':>6}{'rate':>7}   uplift vs holdout (95% CI)",
    ]
    for f in r.rules:
        lines.append(
            f"  {f.rule:<{width}}{f.entered:>8,}{f.sent:>7,}{f.opened:>7,}{f.clicked:>8,}{f.unsubscribed:>6,}"
            f"{f.webhooks:>6,}{f'{f.conversions:,}' if f.goal else '—':>6}{pct(f.conversion_rate):>7}   {uplift_text(f)}"
        )
    if r.splits:
        lines += ["", "Splits (A/B): each variant, and its difference with a 95% interval"]
        for split in r.splits:
            lines += split_text(split)
    lines += ["", *deliverability_lines(r, width)]
    if r.definitions:
        lines += ["", "How these are counted:"]
        lines += [f"  {name.replace('_', ' ')}: {text}" for name, text in r.definitions.items()]
    return "\n".join(lines)
