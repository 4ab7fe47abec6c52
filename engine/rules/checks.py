"""Checks across files of a rule set: rule ids unique, stages named in rules exist, templates
named in `send:` exist. Each problem is located in the rule file that causes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.rules.conditions import stage_names
from engine.rules.model import Rule
from engine.rules.triggers import StageTrigger
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
