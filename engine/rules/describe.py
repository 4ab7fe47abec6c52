"""Rules in a few words, for listings and previews."""

from __future__ import annotations

from engine.rules.durations import format_duration
from engine.rules.model import Rule
from engine.rules.triggers import EventTrigger, InactivityTrigger, ScheduleTrigger, StageTrigger


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
    return f"anniversary {t.anniversary.attribute}"
