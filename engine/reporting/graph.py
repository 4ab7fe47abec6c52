"""`journey graph RULE`: a rule drawn as a flow with live counts, as text, JSON or SVG; the HTML
report draws every rule the same way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from engine.reporting.counts import RuleCounts, rule_counts
from engine.reporting.flow import Flow, build_flow
from engine.reporting.period import Period, period
from engine.reporting.svg import render_svg
from engine.rules.loader import RuleSet
from engine.rules.model import Rule


@dataclass
class Graph:
    rule: Rule
    counts: RuleCounts
    flow: Flow
    period: Period

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.id,
            "description": self.rule.description,
            "period": self.period.as_dict(),
            "totals": self.counts.total.as_dict(),
            "variants": {name: g.as_dict() for name, g in self.counts.variants.items()},
            "nodes": [node.as_dict() for node in self.flow.nodes],
            "links": [{"from": a, "to": b, "way": way} for a, b, way in self.flow.links],
        }

    def svg(self) -> str:
        return render_svg(self.flow)

    def text(self) -> str:
        """The flow for a terminal: one line per box, nested ways indented under their name."""
        inside = {target: way for source, target, way in self.flow.links if way and target.startswith(source)}
        empty = [(source, way) for source, target, way in self.flow.links if way and target not in inside]
        lines = [f"{self.rule.id}: {self.rule.description}".rstrip(": "), self.period.text(), ""]
        for node in self.flow.nodes:
            # '0' is at level 1; a way of the fork at '0' at 2, its steps ('0.a.1', '0.holdout') at 3
            level = 0 if node.kind in ("trigger", "end") else 1 + 2 * ((node.id.count(".") + 1) // 2)
            if node.id in inside:
                lines.append("  " * (level - 1) + f"{inside[node.id]}:")
            head = " · ".join([node.title, *node.detail])
            figures = "; ".join(node.figures)
            lines.append("  " * level + head + (f": {figures}" if figures else ""))
            lines += ["  " * (level + 1) + f"{way}: no steps" for source, way in empty if source == node.id]
        return "\n".join(lines)


def graphs(conn: Connection, rules: list[Rule], p: Period) -> list[Graph]:
    """The graph of each rule, counted together (a bounded number of statements in all)."""
    counts = rule_counts(conn, rules, start=p.start, end=p.end)
    return [Graph(rule, counts[rule.id], build_flow(rule, counts[rule.id]), p) for rule in rules]


def rule_graph(
    engine: Engine,
    ruleset: RuleSet,
    rule_id: str,
    *,
    start: datetime | None,
    end: datetime,
    now: datetime,
) -> Graph:
    """The graph of one rule (KeyError for an unknown id)."""
    rule = ruleset.rule(rule_id)
    with engine.connect() as conn:
        return graphs(conn, [rule], period(conn, start, end, now))[0]
