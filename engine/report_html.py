"""`journey report --html FILE`: one self-contained page with SVG charts; opens offline, no script."""

from __future__ import annotations

import html

from engine.report import Report, _pct, uplift_text

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f4f4f7;color:#222}
main{max-width:960px;margin:0 auto;padding:24px}
h1{font-size:24px}h2{font-size:18px;margin-top:32px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;padding:12px 16px;border-radius:6px;min-width:150px}
.card b{display:block;font-size:22px}dt{font-weight:600;margin-top:6px}dd{margin:0 0 0 16px}table{border-collapse:collapse;background:#fff;width:100%}
td,th{padding:6px 8px;border-bottom:1px solid #eee;text-align:right}td:first-child,th:first-child{text-align:left}
svg{background:#fff;border-radius:6px;max-width:100%}
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


def _line(points: list[tuple[str, int]], *, chart_id: str, width: int = 900, height: int = 220) -> str:
    if not points:
        return f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} 40" width="100%"><text x="8" y="24">no emails sent yet</text></svg>'
    top = max(v for _, v in points) or 1
    step = (width - 60) / max(1, len(points) - 1)
    coords = [(40 + i * step, height - 30 - (height - 60) * v / top) for i, (_, v) in enumerate(points)]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(coords))
    out = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img">',
        f'<path d="{path}" fill="none" stroke="#e4572e" stroke-width="2"/>',
        f'<text x="40" y="{height - 8}" font-size="12">{html.escape(points[0][0])}</text>',
        f'<text x="{width - 120}" y="{height - 8}" font-size="12">{html.escape(points[-1][0])}</text>',
        f'<text x="4" y="20" font-size="12">{top}</text>',
    ]
    for x, y in coords:
        out.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2" fill="#e4572e"/>')
    out.append("</svg>")
    return "".join(out)


def render_html(r: Report) -> str:
    cards = [
        ("Customers", f"{r.customers:,}"),
        ("NPS", "—" if r.nps is None else f"{r.nps:+.0f}"),
        ("Cart recovery", _pct(r.recovery_rate)),
        ("Repeat purchase", _pct(r.repeat_purchase_rate)),
        ("Revenue / customer", f"{r.revenue_per_customer:,.2f}"),
    ]
    funnel = _bars(
        [
            (
                f["stage"],
                f["reached"],
                f"{f['reached']:,}"
                + (
                    f"  ({_pct(f['conversion_from_previous'])})"
                    if f["conversion_from_previous"] is not None
                    else ""
                ),
            )
            for f in r.funnel
        ],
        chart_id="funnel",
    )
    sends = _line(list(r.sends_per_day.items()), chart_id="sends")
    conv = _bars(
        [(f.rule, f.conversions, f"{f.conversions:,} of {f.entered:,}") for f in r.rules],
        chart_id="conversions",
        color="#2a9d8f",
    )
    rows: list[str] = []
    for f in r.rules:
        cells = [
            f.rule,
            f"{f.entered:,}",
            f"{f.sent:,}",
            f"{f.opened:,}",
            f"{f.clicked:,}",
            f"{f.unsubscribed:,}",
            f"{f.webhooks:,}",
            f"{f.conversions:,}",
            _pct(f.conversion_rate),
            uplift_text(f) or "—",
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "rule",
            "entered",
            "emails sent",
            "opened",
            "clicked",
            "unsubscribed",
            "webhooks",
            "conversions",
            "rate",
            "uplift vs holdout (95% CI)",
        )
    )
    definitions = "".join(
        f"<dt>{html.escape(k.replace('_', ' '))}</dt><dd>{html.escape(v)}</dd>"
        for k, v in r.definitions.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Journey report</title><style>{CSS}</style></head>
<body><main>
<h1>Journey report</h1>
<div class="cards">{"".join(f'<div class="card">{html.escape(k)}<b>{html.escape(v)}</b></div>' for k, v in cards)}</div>
<h2>Stage funnel</h2>{funnel}
<h2>Emails sent per day</h2>{sends}
<h2>Conversions per rule</h2>{conv}
<h2>Rules</h2><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>
<p>Carts {r.carts:,}: bought {r.carts_bought:,}, abandoned {r.abandoned:,} ({_pct(r.abandonment_rate)}),
reminded {r.reminded:,}, recovered {r.recovered:,} ({_pct(r.recovery_rate)} of abandoned carts). NPS from
{r.promoters + r.passives + r.detractors:,} answers: promoters {r.promoters}, passives {r.passives},
detractors {r.detractors}.</p>
<h2>How these are counted</h2><dl>{definitions}</dl>
</main></body></html>
"""
