"""`journey report --html FILE`: one self-contained page with SVG charts and every rule's flow with
its counts; opens offline, no script, nothing fetched."""

from __future__ import annotations

import html
from datetime import date

from engine.delivery.money import format_money
from engine.reporting.abtest import SplitResult, comparison_text
from engine.reporting.report import Report
from engine.reporting.text import complaint_text, pct, uplift_text

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f4f4f7;color:#222}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;margin-top:32px}h3{font-size:15px;margin:24px 0 6px}
.period{color:#555;margin:0 0 16px}.note{color:#555;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;padding:12px 16px;border-radius:6px;min-width:150px}
.card b{display:block;font-size:22px}dt{font-weight:600;margin-top:6px}dd{margin:0 0 0 16px}table{border-collapse:collapse;background:#fff;width:100%}
td,th{padding:6px 8px;border-bottom:1px solid #eee;text-align:right}td:first-child,th:first-child{text-align:left}
svg{background:#fff;border-radius:6px;max-width:100%}svg.flow{height:auto}
.flowbox{overflow-x:auto;background:#fff;border-radius:6px;padding:4px;display:inline-block;max-width:100%;box-sizing:border-box}
ul.cmp{margin:6px 0 0;padding-left:20px}
#rules{font-size:13px}#rules td:last-child,#rules th:last-child{text-align:left;min-width:230px}
.alert{color:#c0392b;font-weight:700}
"""


def _bars(
    rows: list[tuple[str, float, str]], *, chart_id: str, width: int = 900, color: str = "#1f3a5f"
) -> str:
    """Horizontal bars: (label, value, text shown)."""
    height = 28 * len(rows) + 10
    top = max([v for _, v, _ in rows] + [1])
    out = [f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img">']
    for i, (label, value, shown) in enumerate(rows):
        y = 8 + 28 * i
        w = int((width - 320) * value / top)
        out.append(f'<text x="8" y="{y + 15}" font-size="13">{html.escape(label)}</text>')
        out.append(f'<rect class="bar" x="200" y="{y}" width="{max(w, 1)}" height="20" fill="{color}"/>')
        out.append(f'<text x="{206 + w}" y="{y + 15}" font-size="12">{html.escape(shown)}</text>')
    out.append("</svg>")
    return "".join(out)


def _line(
    points: list[tuple[str, int]],
    *,
    chart_id: str,
    partial: dict[str, float] | None = None,
    width: int = 900,
    height: int = 220,
) -> str:
    """A line over days; a day the period covers only in part is drawn dashed with a hollow point
    and named, so that a day that is not over does not read as a fall."""
    partial = partial or {}
    if not any(v for _, v in points):
        return f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} 40" width="100%"><text x="8" y="24">no emails sent yet</text></svg>'
    top = max(v for _, v in points) or 1
    step = (width - 60) / max(1, len(points) - 1)
    coords = [(40 + i * step, height - 40 - (height - 70) * v / top) for i, (_, v) in enumerate(points)]
    out = [f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img">']
    for i in range(1, len(coords)):
        (x0, y0), (x1, y1) = coords[i - 1], coords[i]
        part = points[i][0] in partial or points[i - 1][0] in partial
        dash = ' stroke-dasharray="5 4" class="partial"' if part else ""
        out.append(
            f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#e4572e" stroke-width="2"{dash}/>'
        )
    for (day, _), (x, y) in zip(points, coords, strict=True):
        if day in partial:
            out.append(
                f'<circle class="point partial" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#fff" stroke="#e4572e"/>'
            )
        else:
            out.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2" fill="#e4572e"/>')
    out += [
        f'<text x="40" y="{height - 22}" font-size="12">{html.escape(points[0][0])}</text>',
        f'<text x="{width - 120}" y="{height - 22}" font-size="12">{html.escape(points[-1][0])}</text>',
        f'<text x="4" y="20" font-size="12">{top}</text>',
    ]
    notes = [f"{day} covers {hours:g} h" for day, hours in partial.items()]
    if notes:
        text = "dashed: a day only partly in the period (" + "; ".join(notes) + ")"
        out.append(
            f'<text class="partial-note" x="40" y="{height - 4}" font-size="12">{html.escape(text)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _table(head: list[str], rows: list[list[str]], table_id: str | None = None) -> str:
    ident = f' id="{table_id}"' if table_id else ""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{ident}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _split(s: SplitResult) -> str:
    by_goal = s.measure == "goal conversion"
    rows = [
        [
            v.name,
            f"{v.weight:g}%",
            f"{v.entered:,}",
            f"{v.sent:,}",
            f"{v.opened:,}",
            f"{v.clicked:,}",
            f"{(v.converted if by_goal else v.clickers) or 0:,}",
            pct(v.rate),
        ]
        for v in s.variants
    ]
    head = ["variant", "share", "entered", "emails sent", "opened", "clicked"]
    head += ["converted", "conversion rate"] if by_goal else ["clickers", "click rate"]
    what = f"goal: {s.goal}" if by_goal else "no goal: clicks compared"
    cmp = "".join(f"<li>{html.escape(comparison_text(c))}</li>" for c in s.comparisons)
    return (
        f'<h3 id="ab-{html.escape(s.rule)}">{html.escape(s.rule)} <span class="note">(split at step '
        f"{html.escape(s.step)}; {html.escape(what)})</span></h3>"
        + _table(head, rows, f"ab-table-{s.rule}")
        + (f'<ul class="cmp">{cmp}</ul>' if cmp else "")
    )


def render_html(r: Report) -> str:
    def money(value: float) -> str:
        return format_money(value, r.currency) if r.currency else f"{value:,.2f}"

    cards = [
        ("Customers", f"{r.customers:,}"),
        ("Lapsed now", f"{r.lapsed:,}"),
        ("NPS", "—" if r.nps is None else f"{r.nps:+.0f}"),
        ("Cart recovery", pct(r.recovery_rate)),
        ("Repeat purchase", pct(r.repeat_purchase_rate)),
        ("Revenue", money(r.revenue)),
        ("Revenue / customer", money(r.revenue_per_customer)),
    ]
    funnel = _bars(
        [
            (
                f["stage"],
                f["reached"],
                f"{f['reached']:,}"
                + (
                    f"  ({pct(f['conversion_from_previous'])})"
                    if f["conversion_from_previous"] is not None
                    else ""
                ),
            )
            for f in r.funnel
        ],
        chart_id="funnel",
    )
    segments = (
        "<h2>Segments</h2>"
        + _table(
            ["segment", "members now", "entered", "left"],
            [[g["segment"], f"{g['members']:,}", f"{g['entered']:,}", f"{g['left']:,}"] for g in r.segments],
            "segments",
        )
        if r.segments
        else ""
    ) + (
        "<h2>Broadcasts</h2>"
        + _table(
            ["broadcast", "template", "scheduled", "by status"],
            [
                [
                    b["broadcast"],
                    b["template"],
                    f"{sum(b['by_status'].values()):,}",
                    ", ".join(f"{k} {v:,}" for k, v in sorted(b["by_status"].items())),
                ]
                for b in r.broadcasts
            ],
            "broadcasts",
        )
        if r.broadcasts
        else ""
    )
    stages = _bars(
        [
            (stage, n, f"{n:,}  ({pct(n / r.customers if r.customers else None)})")
            for stage, n in r.stages.items()
        ],
        chart_id="stages",
        color="#7b4fb0",
    )
    sends = _line(list(r.sends_per_day.items()), chart_id="sends", partial=r.partial_days)
    with_goal = [f for f in r.rules if f.goal]
    conv = _bars(
        [(f.rule, f.conversions, f"{f.conversions:,} of {f.entered - f.holdout:,}") for f in with_goal],
        chart_id="conversions",
        color="#2a9d8f",
    )
    no_goal = [f.rule for f in r.rules if not f.goal]
    rows = [
        [
            f.rule,
            f"{f.entered:,}",
            f"{f.sent:,}",
            f"{f.opened:,}",
            f"{f.clicked:,}",
            f"{f.unsubscribed:,}",
            f"{f.webhooks:,}",
            f"{f.exited:,}",
            f"{f.conversions:,}" if f.goal else "—",
            pct(f.conversion_rate),
            uplift_text(f) or "—",
        ]
        for f in r.rules
    ]
    head = ["rule", "entered", "emails sent", "opened", "clicked", "unsubscribed", "webhooks", "exited"]
    head += ["conversions", "rate", "uplift vs holdout (95% CI)"]
    splits = "".join(_split(s) for s in r.splits) or "<p>No rule has a split.</p>"
    flows = "".join(
        f'<h3 id="rule-{html.escape(g.rule.id)}">{html.escape(g.rule.id)}</h3>'
        f'<p class="note">{html.escape(g.rule.description)}</p><div class="flowbox">{g.svg()}</div>'
        for g in r.flows
    )
    deliver_rows: list[str] = []
    for name, d in [("all emails", r.deliverability)] + [(f.rule, f.deliverability) for f in r.rules]:
        if not d.emails and name != "all emails":
            continue
        complaints = html.escape(complaint_text(d, color=False))
        if d.complaint_alert:
            complaints = f'<span class="alert">{complaints}</span>'
        cells = [html.escape(x) for x in (name, f"{d.emails:,}", pct(d.delivered_rate), pct(d.bounce_rate))]
        deliver_rows.append(
            "<tr"
            + (' class="complaints-over"' if d.complaint_alert else "")
            + ">"
            + "".join(f"<td>{c}</td>" for c in cells)
            + f"<td>{complaints}</td></tr>"
        )
    definitions = "".join(
        f"<dt>{html.escape(k.replace('_', ' '))}</dt><dd>{html.escape(v)}</dd>"
        for k, v in r.definitions.items()
    )
    period = html.escape(r.period.text()) if r.period is not None else ""
    partial = ", ".join(f"{d} ({h:g} h)" for d, h in r.partial_days.items() if d == _last(r))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Journey report</title><style>{CSS}</style></head>
<body><main>
<h1>Journey report</h1>
<p class="period" id="period">{period}</p>
<div class="cards">{"".join(f'<div class="card">{html.escape(k)}<b>{html.escape(v)}</b></div>' for k, v in cards)}</div>
<h2>Stage funnel</h2>{funnel}
<h2>Customers by stage now</h2>{stages}
{segments}<h2>Emails sent per day</h2>{sends}
{f'<p class="note">The last day, {html.escape(partial)}, is not over: its count is partial.</p>' if partial else ""}
<h2>Conversions per rule</h2>{conv}
{f'<p class="note">No goal, so no conversions: {html.escape(", ".join(no_goal))}.</p>' if no_goal else ""}
<h2>Rules</h2>{_table(head, rows, "rules")}
<h2>Splits (A/B tests)</h2>{splits}
<h2>Deliverability</h2><table id="deliverability"><thead><tr><th>rule</th><th>emails</th><th>delivered</th>
<th>bounced</th><th>complaints</th></tr></thead><tbody>{"".join(deliver_rows)}</tbody></table>
<p>Carts {r.carts:,}: bought {r.carts_bought:,}, abandoned {r.abandoned:,} ({pct(r.abandonment_rate)}),
reminded {r.reminded:,}, recovered {r.recovered:,} ({pct(r.recovery_rate)} of abandoned carts). NPS from
{r.promoters + r.passives + r.detractors:,} answers: promoters {r.promoters}, passives {r.passives},
detractors {r.detractors}.</p>
<h2>Journeys</h2><p class="note">Each rule's steps with the counts of the customers who entered it in the period.</p>
{flows}
<h2>How these are counted</h2><dl>{definitions}</dl>
</main></body></html>
"""


def _last(r: Report) -> str | None:
    """The period's last day."""
    if r.period is None:
        return None
    return date.isoformat(r.period.end.date())
