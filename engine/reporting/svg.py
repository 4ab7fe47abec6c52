"""A laid-out flow (`engine.reporting.flow`) drawn as one standalone SVG: boxes for the trigger,
the steps and the end, each with its counts; lines with arrows between them; the ways out of a
branch or a split named on their lines. Plain SVG with its own styles: no script, no font to load."""

from __future__ import annotations

import re
from html import escape

from engine.reporting.flow import Flow
from engine.reporting.layout import LINE_H, PAD, Node

#: fill, stroke and title colour of each kind of box
COLOURS = {
    "trigger": ("#1f3a5f", "#1f3a5f", "#ffffff"),
    "send": ("#ffffff", "#1f3a5f", "#1f3a5f"),
    "wait": ("#f1f3f6", "#8a94a6", "#333333"),
    "branch": ("#fff6e0", "#d9a400", "#5c4500"),
    "split": ("#f3ecfb", "#7b4fb0", "#4a2a73"),
    "update": ("#f1f3f6", "#8a94a6", "#333333"),
    "holdout": ("#fafafa", "#9aa0a6", "#555555"),
    "end": ("#e8f5f1", "#2a9d8f", "#1d6b61"),
}

#: scoped to the flow drawings, so that the HTML report can hold them beside its charts
STYLE = (
    "svg.flow text{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:12px;fill:#222}"
    "svg.flow .title{font-weight:700;font-size:13px}svg.flow .detail{fill:#555;font-style:italic}"
    "svg.flow .edge{fill:none;stroke:#8a94a6;stroke-width:1.5}"
    "svg.flow .way{font-size:11px;fill:#4a2a73;font-weight:600}"
)


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)


def _node(node: Node) -> str:
    fill, stroke, ink = COLOURS.get(node.kind, COLOURS["wait"])
    dash = ' stroke-dasharray="5 3"' if node.kind == "holdout" else ""
    out = [
        f'<g class="node {node.kind}" data-step="{escape(node.id)}">',
        f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{node.w:.0f}" height="{node.h:.0f}" rx="6" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}/>',
    ]
    y = node.y + PAD + LINE_H - 4
    for text, style in node.rows():
        colour = f' style="fill:{ink}"' if style == "title" or node.kind == "trigger" else ""
        out.append(f'<text class="{style}" x="{node.x + 10:.1f}" y="{y:.1f}"{colour}>{escape(text)}</text>')
        y += LINE_H
    out.append("</g>")
    return "".join(out)


def render_svg(flow: Flow) -> str:
    """The flow as an SVG document (also fit to be inlined in an HTML page)."""
    arrow = f"arrow-{_safe_id(flow.rule)}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flow" id="flow-{_safe_id(flow.rule)}" '
        f'data-rule="{escape(flow.rule)}" viewBox="0 0 {flow.width:.0f} {flow.height:.0f}" '
        f'width="{flow.width:.0f}" height="{flow.height:.0f}" role="img">',
        f"<title>{escape(flow.rule)}: the journey and its counts</title>",
        f"<style>{STYLE}</style>",
        f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#8a94a6"/></marker></defs>',
    ]
    for edge in flow.edges:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in edge.points)
        head = f' marker-end="url(#{arrow})"' if edge.target else ""
        out.append(f'<polyline class="edge" points="{points}"{head}/>')
        if edge.label:
            x, y = edge.points[-1]
            if edge.target == "":  # an empty arm: the label sits on its straight line
                x, y = edge.points[-2]
                y += 14
            out.append(f'<text class="way" x="{x + 5:.1f}" y="{y - 6:.1f}">{escape(edge.label)}</text>')
    for x, y in flow.joins:
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#8a94a6"/>')
    out += [_node(node) for node in flow.nodes]
    out.append("</svg>")
    return "\n".join(out)
