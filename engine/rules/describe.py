"""Rules and conditions in a few words, for listings, previews and `journey explain`."""

from __future__ import annotations

from typing import Any

from engine.rules.conditions import (
    AllCondition,
    AnyCondition,
    AttributeCondition,
    EventCondition,
    NotCondition,
    SegmentCondition,
    StageCondition,
    SubscribedCondition,
    children,
)
from engine.rules.durations import format_duration
from engine.rules.model import Rule
from engine.rules.triggers import (
    AnniversaryTrigger,
    EventTrigger,
    InactivityTrigger,
    ScheduleTrigger,
    SegmentEnteredTrigger,
    StageTrigger,
)


def describe_trigger(rule: Rule) -> str:
    """A rule's trigger in a few words: `inactivity cart_updated 1h`, `stage_entered lapsed`."""
    t = rule.trigger
    if isinstance(t, EventTrigger):
        return f"event {t.event}" + (" (where …)" if t.where else "")
    if isinstance(t, InactivityTrigger):
        return f"inactivity {t.inactivity.event} {format_duration(t.inactivity.for_)}"
    if isinstance(t, StageTrigger):
        return f"stage_entered {t.stage_entered}" + (f" from {t.from_}" if t.from_ else "")
    if isinstance(t, ScheduleTrigger):
        return f"schedule '{t.schedule}'"
    if isinstance(t, SegmentEnteredTrigger):
        return f"segment_entered {t.segment_entered}"
    if isinstance(t, AnniversaryTrigger):
        return f"anniversary {t.anniversary.attribute}"
    return f"segment_exited {t.segment_exited}"


def describe(cond: Any) -> str:
    """A condition written back the way a marketer wrote it, on one line."""
    if isinstance(cond, AllCondition | AnyCondition):
        word = "all" if isinstance(cond, AllCondition) else "any"
        return f"{word} of (" + "; ".join(describe(c) for c in children(cond)) + ")"
    if isinstance(cond, NotCondition):
        return "not (" + describe(cond.not_) + ")"
    if isinstance(cond, AttributeCondition):
        return f"attribute {cond.attribute} {cond.op} {cond.value!r}"
    if isinstance(cond, EventCondition):
        text = f"event {cond.event}"
        if cond.where:
            text += " where " + ", ".join(f"{k} {c.op} {c.value!r}" for k, c in cond.where.items())
        if cond.count is not None:
            text += f" count {cond.count.op} {cond.count.value!r}"
        if cond.within is not None:
            text += f" within {format_duration(cond.within)}"
        return text
    if isinstance(cond, StageCondition):
        return "stage in " + ", ".join(cond.names())
    if isinstance(cond, SubscribedCondition):
        return f"subscribed to {cond.subscribed}"
    if isinstance(cond, SegmentCondition):
        return f"in segment {cond.segment}"
    return repr(cond)
