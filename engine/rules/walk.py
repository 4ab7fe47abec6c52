"""The step tree of a rule, walked in one place, and step paths: where an enrollment stands.

A path is dotted: `'0'` is the first top-level step, `'2.then.1'` the second step of the `then`
list of the branch at step 2, `'3.A.0'` the first step of variant A of the split at step 3.
Paths are listed in preorder, so an enrollment only ever moves to a later path: one pass over
`positions(rule)` in order carries every enrollment through all the steps that are due.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypedDict

from engine.rules.conditions import walk as walk_condition
from engine.rules.model import BranchStep, Rule, SendStep, SplitStep, Step, WaitForStep, WaitStep
from engine.rules.triggers import ScheduleTrigger


def walk_steps(steps: Sequence[Step], prefix: str = "") -> Iterator[tuple[str, Step]]:
    """(path, step) of every step of a step list, nested ones included, in preorder."""
    for index, step in enumerate(steps):
        path = f"{prefix}{index}"
        yield path, step
        if isinstance(step, BranchStep):
            yield from walk_steps(step.branch.then, f"{path}.then.")
            yield from walk_steps(step.branch.else_, f"{path}.else.")
        elif isinstance(step, WaitForStep):
            yield from walk_steps(step.wait_for.then, f"{path}.then.")
            yield from walk_steps(step.wait_for.timeout, f"{path}.timeout.")
        elif isinstance(step, SplitStep):
            for name, variant in step.variants.items():
                yield from walk_steps(variant, f"{path}.{name}.")


def iter_sends(steps: Sequence[Step]) -> list[SendStep]:
    """Every send step of a step list, nested ones included."""
    return [step for _, step in walk_steps(steps) if isinstance(step, SendStep)]


def rule_conditions(rule: Rule) -> Iterator[Any]:
    """Every condition tree of a rule: its conditions, its audience, its branches' `if`."""
    yield from rule.conditions
    if isinstance(rule.trigger, ScheduleTrigger) and rule.trigger.audience is not None:
        yield rule.trigger.audience
    for _, step in walk_steps(rule.steps):
        if isinstance(step, BranchStep):
            yield step.branch.if_


def rule_condition_parts(rule: Rule) -> Iterator[Any]:
    """Every part of every condition tree of a rule (see `rule_conditions`)."""
    for tree in rule_conditions(rule):
        yield from walk_condition(tree)


def _child_list(step: Any, key: str) -> Sequence[Any]:
    if isinstance(step, BranchStep):
        if key == "then":
            return step.branch.then
        if key == "else":
            return step.branch.else_
    if isinstance(step, WaitForStep):
        if key == "then":
            return step.wait_for.then
        if key == "timeout":
            return step.wait_for.timeout
    if isinstance(step, SplitStep) and key in step.variants:
        return step.variants[key]
    raise KeyError(key)


def step_at(rule: Rule, path: str) -> Any:
    """The step model at `path` (KeyError if the rule has no such step)."""
    parts = path.split(".")
    steps: Sequence[Any] = rule.steps
    step: Any = None
    i = 0
    while True:
        index = int(parts[i])
        if index >= len(steps):
            raise KeyError(path)
        step = steps[index]
        if i + 1 == len(parts):
            return step
        steps = _child_list(step, parts[i + 1])
        i += 2


def send_step_at(rule: Rule, path: str) -> SendStep:
    step = step_at(rule, path)
    if not isinstance(step, SendStep):
        raise KeyError(f"{path} is not a send step")
    return step


class Overrides(TypedDict, total=False):
    """What a send step changes in its template: the keyword arguments of `Templates.render`."""

    subject: str | None
    blocks: dict[str, str]


def send_overrides(rule: Rule, path: str, template: str) -> Overrides:
    """The subject and block overrides of the send step at `path`, when it still sends `template`;
    none when the rule changed since the send was scheduled (the template's own text is used)."""
    try:
        step = send_step_at(rule, path)
    except (KeyError, ValueError):
        return {}
    if step.template != template:
        return {}
    return {"subject": step.subject, "blocks": step.blocks}


def positions(rule: Rule) -> list[str]:
    """Every step path of the rule, in preorder."""
    return [path for path, _ in walk_steps(rule.steps)]


def first_of(rule: Rule, parent: str | None, key: str | None) -> str | None:
    """The first step of a nested list; when it is empty, the step after the parent."""
    if parent is None:
        return "0" if rule.steps else None
    assert key is not None
    if _child_list(step_at(rule, parent), key):
        return f"{parent}.{key}.0"
    return next_path(rule, parent)


def next_path(rule: Rule, path: str) -> str | None:
    """The path that follows `path` once its step is done (None: the rule is finished)."""
    parts = path.split(".")
    while parts:
        index = int(parts[-1])
        parent = ".".join(parts[:-2]) if len(parts) > 1 else None
        siblings: Sequence[Any] = (
            rule.steps if parent is None else _child_list(step_at(rule, parent), parts[-2])
        )
        if index + 1 < len(siblings):
            return ".".join([*parts[:-1], str(index + 1)])
        if parent is None:
            return None
        parts = parent.split(".")
    return None


def past_waits(rule: Rule, path: str | None) -> tuple[str | None, float]:
    """Where an enrollment arriving at `path` stands once the plain `wait` steps from there on are
    counted in: the first step that is not one (None: the end), and the waits' total seconds. A
    tick moves an enrollment through a send and the wait after it in one statement."""
    seconds = 0.0
    while path is not None:
        step = step_at(rule, path)
        if not isinstance(step, WaitStep):
            break
        seconds += step.wait.total_seconds()
        path = next_path(rule, path)
    return path, seconds
