"""A rule as a flow: its trigger and conditions, steps, branches, split variants and holdout,
waits and end, each box with the counts of `engine.reporting.counts`, laid out by
`engine.reporting.layout`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.reporting.counts import RuleCounts, StepCounts
from engine.reporting.layout import Edge, Node, lay_out
from engine.rules.durations import format_duration
from engine.rules.model import (
    BranchStep,
    Rule,
    SendStep,
    SplitStep,
    Step,
    UpdateStep,
    WaitForStep,
    WaitStep,
)
from engine.rules.walk import next_path, walk_steps


@dataclass
class Flow:
    rule: str
    nodes: list[Node]
    #: the lines drawn
    edges: list[Edge]
    #: (from step, to step, the way: yes/no or a variant's name) for each way through the rule
    links: list[tuple[str, str, str | None]]
    #: merge points (small dots) where columns join
    joins: list[tuple[float, float]]
    width: float
    height: float


# ------------------------------------------------------------------------------------- text


def plain(value: Any) -> str:
    """A value of a rule file written back as YAML flow text: `{event: order_placed, within: 30d}`."""
    if isinstance(value, dict):
        first = [k for k in ("attribute", "event", "stage", "subscribed", "segment") if k in value]
        keys = first + [k for k in value if k not in first]
        return "{" + ", ".join(f"{k}: {plain(value[k])}" for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(plain(v) for v in value) + "]"
    if isinstance(value, timedelta):
        return format_duration(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def dumped(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def _reasons(label: str, by_reason: dict[str, int]) -> str | None:
    total = sum(by_reason.values())
    if not total:
        return None
    parts = ", ".join(f"{reason.replace('_', ' ')} {n:,}" for reason, n in sorted(by_reason.items()))
    return f"{label} {total:,} ({parts})"


def send_figures(c: StepCounts, email: bool) -> list[str]:
    lines = [f"sent {c.sent:,}" + (f" · opened {c.opened:,} · clicked {c.clicked:,}" if email else "")]
    for label, by_reason in (("suppressed", c.suppressed), ("failed", c.failed), ("cancelled", c.cancelled)):
        line = _reasons(label, by_reason)
        if line:
            lines.append(line)
    if c.scheduled:
        lines.append(f"scheduled {c.scheduled:,}")
    if c.waiting:
        lines.append(f"due here now {c.waiting:,}")
    return lines


# ------------------------------------------------------------------------------------- build


def _waiting(rule: Rule, rc: RuleCounts) -> None:
    """Active customers by where they stand: past a wait, the step after it holds them until their
    due time, so they are counted on the wait (when one wait alone leads there)."""
    into: dict[str, list[str]] = {}
    for path, step in walk_steps(rule.steps):
        if isinstance(step, WaitStep):
            target = next_path(rule, path)
            if target is not None:
                into.setdefault(target, []).append(path)
    for (position, ahead), n in rc.positions.items():
        waits = into.get(position, [])
        where = waits[0] if ahead and len(waits) == 1 else position
        rc.steps[where].waiting += n


def _variant_of(path: str) -> str | None:
    """The split variant a step path lies in (the innermost), if any."""
    parts = path.split(".")
    found = None
    for i in range(1, len(parts) - 1, 2):
        if parts[i] not in ("then", "else", "timeout"):
            found = parts[i]
    return found


def _split_names(rule: Rule) -> list[str]:
    """The variant names of the rule's splits, in the order they are written."""
    names: list[str] = []
    for _, step in walk_steps(rule.steps):
        if isinstance(step, SplitStep):
            names += [name for name in step.split if name not in names]
    return names


class _Builder:
    def __init__(self, rule: Rule, rc: RuleCounts) -> None:
        self.rule = rule
        self.rc = rc
        self.nodes: list[Node] = []

    def node(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def step(self, path: str, step: Step) -> Any:
        """The block of one step: a Node, or ('fork', head, [(label, block|None, goes_on)])."""
        c = self.rc.steps.get(path, StepCounts())
        variant = _variant_of(path)
        if isinstance(step, SendStep):
            detail = []
            if step.subject is not None:
                detail.append(f'subject: "{step.subject}"')
            if step.blocks:
                detail.append("blocks: " + ", ".join(step.blocks))
            title = f"send {step.template}" + (" (webhook)" if step.channel == "webhook" else "")
            return self.node(
                Node(
                    path,
                    "send",
                    title,
                    detail,
                    send_figures(c, step.channel == "email"),
                    {
                        **c.as_dict(),
                        "template": step.template,
                        "channel": step.channel,
                        "subject": step.subject,
                    },
                    variant,
                )
            )
        if isinstance(step, WaitStep):
            return self.node(
                Node(
                    path,
                    "wait",
                    f"wait {format_duration(step.wait)}",
                    [],
                    [f"waiting now {c.waiting:,}"],
                    {"duration": format_duration(step.wait), "waiting": c.waiting},
                    variant,
                )
            )
        if isinstance(step, WaitForStep):
            wf = step.wait_for
            detail = [f"match: {', '.join(wf.match)}"] if wf.match else []
            head = self.node(
                Node(
                    path,
                    "wait_for",
                    f"wait for {wf.event} up to {format_duration(wf.within)}",
                    detail,
                    [f"waiting now {c.waiting:,}"],
                    {"event": wf.event, "within": format_duration(wf.within), "waiting": c.waiting},
                    variant,
                )
            )
            ways = [
                (wf.event, self.steps(wf.then, f"{path}.then."), True),
                ("timeout", self.steps(wf.timeout, f"{path}.timeout."), True),
            ]
            return ("fork", head, ways)
        if isinstance(step, UpdateStep):
            detail = ["set " + plain(dumped(step)["update"])]
            figures = [f"due here now {c.waiting:,}"] if c.waiting else []
            return self.node(Node(path, "update", "update", detail, figures, {"waiting": c.waiting}, variant))
        if isinstance(step, BranchStep):
            head = self.node(
                Node(
                    path,
                    "branch",
                    "branch",
                    ["if " + plain(dumped(step)["branch"]["if"])],
                    [f"due here now {c.waiting:,}"] if c.waiting else [],
                    {"waiting": c.waiting},
                    variant,
                )
            )
            ways = [
                ("yes", self.steps(step.branch.then, f"{path}.then."), True),
                ("no", self.steps(step.branch.else_, f"{path}.else."), True),
            ]
            return ("fork", head, ways)
        if isinstance(step, SplitStep):
            total = sum(step.split.values())
            weights = [f"{name} {100 * w / total:.0f}%" for name, w in step.split.items()]
            head = self.node(
                Node(
                    path,
                    "split",
                    "split",
                    [" · ".join(weights)],
                    [],
                    {"weights": dict(step.split)},
                    variant,
                )
            )
            arms: list[tuple[str, Any, bool]] = []
            for name in step.split:
                g = self.rc.variants.get(name)
                entered = g.entered if g else 0
                if name == "holdout":
                    held = self.node(
                        Node(
                            f"{path}.holdout",
                            "holdout",
                            "holdout: no messages",
                            [],
                            self._holdout_figures(name),
                            self._group_dict(name),
                            "holdout",
                        )
                    )
                    arms.append((f"holdout · {entered:,} in", held, False))
                else:
                    arms.append(
                        (f"{name} · {entered:,} in", self.steps(step.variants[name], f"{path}.{name}."), True)
                    )
            head.counts["entered"] = {
                name: (self.rc.variants[name].entered if name in self.rc.variants else 0)
                for name in step.split
            }
            return ("fork", head, arms)
        raise TypeError(step)  # pragma: no cover - the model admits no other step

    def _group_dict(self, name: str) -> dict[str, Any]:
        g = self.rc.variants.get(name)
        return g.as_dict() if g else {}

    def _holdout_figures(self, name: str) -> list[str]:
        g = self.rc.variants.get(name)
        if g is None:
            return ["held out 0"]
        line = f"held out {g.entered:,}"
        if g.converted is not None:
            line += f" · converted {g.converted:,}"
        return [line]

    def steps(self, steps: Sequence[Step], prefix: str) -> list[Any] | None:
        blocks = [self.step(f"{prefix}{i}", step) for i, step in enumerate(steps)]
        return blocks or None


def build_flow(rule: Rule, rc: RuleCounts) -> Flow:
    """The rule's flow with its counts, laid out."""
    _waiting(rule, rc)
    b = _Builder(rule, rc)
    t = rc.total
    trigger = b.node(
        Node(
            "trigger",
            "trigger",
            "when " + plain(dumped(rule.trigger))[1:-1],
            ["if " + plain(dumped(c)) for c in rule.conditions],
            [f"entered {t.entered:,}"],
            {"entered": t.entered},
        )
    )
    body = b.steps(rule.steps, "")
    end_lines = [f"finished {t.finished:,}" + (f" · in progress {t.active:,}" if t.active else "")]
    if rule.exit_on:
        end_lines.append(f"exited ({', '.join(rule.exit_on)}) {t.exited:,}")
    if rule.goal is not None and t.converted is not None:
        treated = t.entered - t.held_out
        end_lines.append(f"converted {t.converted - (t.held_out_converted or 0):,} of {treated:,}")
    for name in _split_names(rule):
        g = rc.variants.get(name)
        if name == "holdout" or g is None:
            continue
        line = f"{name}: {g.entered:,} in"
        if g.converted is not None:
            line += f" · converted {g.converted:,}"
        if rule.exit_on:
            line += f" · exited {g.exited:,}"
        end_lines.append(line)
    detail = []
    if rule.goal is not None:
        detail.append(f"goal: {rule.goal.event} within {format_duration(rule.goal.within)}")
    end = b.node(Node("end", "end", "end", detail, end_lines, t.as_dict()))
    blocks: list[Any] = [trigger, *(body or []), end]
    lay, width, height = lay_out(blocks)
    return Flow(rule.id, b.nodes, lay.edges, lay.links, lay.joins, width, height)
