"""Checks across files of a rule set: rule ids unique, stages named in rules exist, templates
named in `send:` exist. Each problem is located in the rule file that causes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.rules.conditions import segment_names, stage_names
from engine.rules.model import Rule, Segment
from engine.rules.triggers import SegmentEnteredTrigger, SegmentExitedTrigger, StageTrigger
from engine.rules.walk import iter_sends, rule_conditions
from engine.rules.yaml import RuleFile, display, find_key, suggest


def template_exists(templates_dir: Path, name: str, channel: str = "email") -> bool:
    if channel == "webhook":
        return (templates_dir / f"{name}.json.j2").is_file()
    return (templates_dir / f"{name}.subject.j2").is_file() and (
        (templates_dir / f"{name}.html.j2").is_file() or (templates_dir / f"{name}.txt.j2").is_file()
    )


def rule_stage_refs(rule: Rule) -> list[str]:
    """Every stage a rule names: its trigger's, and those in its conditions and branches."""
    out: list[str] = []
    if isinstance(rule.trigger, StageTrigger):
        out.append(rule.trigger.stage_entered)
        if rule.trigger.from_ is not None:
            out.append(rule.trigger.from_)
    for tree in rule_conditions(rule):
        out += stage_names(tree)
    return out


def check_unique_id(f: RuleFile, loc: tuple[Any, ...], rule: Rule, sources: dict[str, str]) -> bool:
    """Record where the rule is defined; False (and a problem) when its id is taken already."""
    line, _ = f.at(loc + ("id",))
    if rule.id in sources:
        f.add(loc + ("id",), f"duplicate rule id '{rule.id}': also defined at {sources[rule.id]}")
        return False
    sources[rule.id] = f"{f.name}:{line}"
    return True


def check_stages(f: RuleFile, loc: tuple[Any, ...], item: Any, rule: Rule, stages: list[str]) -> None:
    """Every stage the rule names is one of the stage file's."""
    for name in rule_stage_refs(rule):
        if name not in stages:
            sub = (
                find_key(item, "stage_entered", name)
                or find_key(item, "from", name)
                or find_key(item, "stage", name)
                or ("trigger",)
            )
            f.add(loc + sub, f"unknown stage '{name}' (stages: {', '.join(stages)})", suggest(name, stages))


def check_topic(f: RuleFile, loc: tuple[Any, ...], rule: Rule, topics: dict[str, str]) -> None:
    """A rule's topic is one of settings.yaml `topics:` (when it has any): the preference page
    shows customers those names, so a topic without one would be an opt-out they cannot see."""
    if rule.topic is None or not topics or rule.topic in topics:
        return
    f.add(
        loc + ("topic",),
        f"unknown topic '{rule.topic}' (topics in settings.yaml: {', '.join(topics)})",
        suggest(rule.topic, list(topics)),
    )


def check_templates_exist(
    f: RuleFile, loc: tuple[Any, ...], item: Any, rule: Rule, templates_dir: Path
) -> None:
    """Every `send:` names a template whose files exist."""
    for send in iter_sends(rule.steps):
        name = send.template
        if template_exists(templates_dir, name, send.channel):
            continue
        sub = find_key(item, "send", name) or find_key(item, "template", name)
        # other names only: a name whose other parts exist is not its own suggestion
        names = sorted({p.name.split(".")[0] for p in Path(templates_dir).glob("*.j2")} - {name})
        needs = (
            f"{name}.json.j2"
            if send.channel == "webhook"
            else f"{name}.subject.j2 and {name}.html.j2 or .txt.j2"
        )
        f.add(
            loc + sub,
            f"template '{name}' not found in {display(Path(templates_dir))} (needs {needs})",
            suggest(name, names),
        )


def rule_segment_refs(rule: Rule) -> list[str]:
    """Every segment a rule names: its trigger's, and those in its conditions and branches."""
    out: list[str] = []
    if isinstance(rule.trigger, SegmentEnteredTrigger):
        out.append(rule.trigger.segment_entered)
    if isinstance(rule.trigger, SegmentExitedTrigger):
        out.append(rule.trigger.segment_exited)
    for tree in rule_conditions(rule):
        out += segment_names(tree)
    return out


def check_segments(f: RuleFile, loc: tuple[Any, ...], item: Any, names: list[str], used: list[str]) -> None:
    """Every segment named (by a rule or a segment) is one of segments.yaml's."""
    for name in used:
        if name in names:
            continue
        sub = (
            find_key(item, "segment", name)
            or find_key(item, "segment_entered", name)
            or find_key(item, "segment_exited", name)
            or ()
        )
        known = ", ".join(names) if names else "none: add rules/segments.yaml"
        f.add(loc + sub, f"unknown segment '{name}' (segments: {known})", suggest(name, names))


def segment_order(segments: list[Segment]) -> tuple[list[Segment], list[str] | None]:
    """The segments with each one after those it uses, and the first cycle found (names, the
    first repeated at the end), if any."""
    by_name = {s.name: s for s in segments}
    order: list[Segment] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(name: str, trail: list[str]) -> list[str] | None:
        if state.get(name) == 2 or name not in by_name:
            return None
        if state.get(name) == 1:
            return [*trail[trail.index(name) :], name]
        state[name] = 1
        for used in segment_names(by_name[name].when):
            cycle = visit(used, [*trail, name])
            if cycle is not None:
                return cycle
        state[name] = 2
        order.append(by_name[name])
        return None

    for s in segments:
        cycle = visit(s.name, [])
        if cycle is not None:
            return segments, cycle
    return order, None
