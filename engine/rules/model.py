"""The shapes of rule, stage and settings files, as pydantic models (unknown keys are errors).

Conditions, steps and triggers have modules of their own beside this one; their unions are told
apart by their keys, with tags written `<name>` so that the loader can drop them from error
locations.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator, model_validator

from engine.rules.conditions import (
    AllCondition,
    AnyCondition,
    AttributeCondition,
    Compare,
    Condition,
    EventCondition,
    NotCondition,
    SegmentCondition,
    StageCondition,
    StageIn,
    Strict,
    SubscribedCondition,
)
from engine.rules.durations import Duration, QuietWindow
from engine.rules.steps import (
    Branch,
    BranchStep,
    SendSpec,
    SendStep,
    SplitStep,
    Step,
    UpdateStep,
    WaitFor,
    WaitForStep,
    WaitStep,
    iter_wait_fors,
)
from engine.rules.triggers import (
    Anniversary,
    AnniversaryTrigger,
    EventTrigger,
    Inactivity,
    InactivityTrigger,
    ScheduleTrigger,
    SegmentEnteredTrigger,
    SegmentExitedTrigger,
    StageTrigger,
    Trigger,
    check_timezone,
)


class Goal(Strict):
    event: str
    within: Duration = Field(default_factory=lambda: timedelta(days=7))


class Rule(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    description: str = ""
    enabled: bool = True
    trigger: Trigger
    conditions: list[Condition] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    exit_on: list[str] = Field(default_factory=list)
    reentry: Duration | None = None
    goal: Goal | None = None
    quiet_hours: QuietWindow | None = None
    priority: int = 0
    transactional: bool = False
    #: the preference-centre topic (one of settings.yaml `topics:`) a customer can opt out of
    topic: str | None = None

    @field_validator("exit_on", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _match_needs_an_event(self) -> Rule:
        if isinstance(self.trigger, EventTrigger | InactivityTrigger):
            return self
        for wait in iter_wait_fors(self.steps):
            if wait.match:
                raise ValueError(
                    f"wait_for {wait.event} has match: {', '.join(wait.match)}, but this rule's trigger "
                    "has no event to match against (use an event or inactivity trigger)"
                )
        return self

    def opt_out_topics(self) -> tuple[str, ...]:
        """The topics whose opt-out stops this rule (besides '*', everything): its topic, and its
        id, which was the topic of a rule that named none, so that such opt-outs keep holding."""
        return tuple(dict.fromkeys(t for t in (self.topic, self.id) if t))


class RuleList(Strict):
    rules: list[Rule]


class Stage(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = ""
    when: Condition | None = None


class StagesFile(Strict):
    stages: list[Stage] = Field(min_length=1)

    @model_validator(mode="after")
    def _last_is_default(self) -> StagesFile:
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique: {', '.join(dupes)} appears more than once")
        for stage in self.stages[:-1]:
            if stage.when is None:
                raise ValueError(
                    f"stage '{stage.name}' has no when: and is not last; only the last stage is the default"
                )
        return self


class Segment(Strict):
    """A named audience (`rules/segments.yaml`): members are the customers its condition holds for."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = ""
    when: Condition


class SegmentsFile(Strict):
    segments: list[Segment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> SegmentsFile:
        names = [s.name for s in self.segments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"segment names must be unique: {', '.join(dupes)} appears more than once")
        return self


TOPIC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class FrequencyCap(Strict):
    max: int = Field(ge=1)
    per: Duration


class SoftBounce(Strict):
    """Soft bounces suppress an address after `count` of them within `within` (CONTRACT 14)."""

    count: int = Field(default=3, ge=1)
    within: Duration = Field(default_factory=lambda: timedelta(days=7))


RATE_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")


def parse_rate(text: str) -> tuple[int, int]:
    """`50000/h` as (sends, window in seconds); ValueError saying how to write it."""
    found = _RATE.match(str(text))
    if not found or found.group(2) not in RATE_UNITS or int(found.group(1)) < 1:
        raise ValueError(f"rate limit {text!r} is not like 50000/h (a number per s, m, h or d)")
    return int(found.group(1)), RATE_UNITS[found.group(2)]


class SettingsFile(Strict):
    frequency_cap: FrequencyCap | None = None
    #: sends per channel and fixed window (`{email: 50000/h, webhook: 10/s}`), across all workers
    rate_limit: dict[str, str] = Field(default_factory=dict)

    @field_validator("rate_limit")
    @classmethod
    def _rates(cls, v: dict[str, str]) -> dict[str, str]:
        for channel, rate in v.items():
            if channel not in ("email", "webhook"):
                raise ValueError(f"rate_limit is per channel: email or webhook, not '{channel}'")
            parse_rate(rate)
        return v

    def rate_limits(self) -> dict[str, tuple[int, int]]:
        """(sends, window in seconds) per limited channel."""
        return {channel: parse_rate(rate) for channel, rate in self.rate_limit.items()}

    #: default quiet hours for every rule that does not set its own
    quiet_hours: QuietWindow | None = None
    #: timezone for customers who have none
    default_timezone: str = "UTC"
    webhook_url: str | None = None
    #: where a referral link lands (the code is added as ?ref=CODE)
    referral_landing_url: str = "https://example.com/"
    soft_bounce: SoftBounce = Field(default_factory=SoftBounce)
    #: preference-centre topics: name -> what customers read ("News and offers"); rules name one
    topics: dict[str, str] = Field(default_factory=dict)

    @field_validator("topics")
    @classmethod
    def _topic_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name, label in v.items():
            if not TOPIC_NAME.match(name):
                raise ValueError(
                    f"topic '{name}' must be a short name in lower case, digits and _ (like news_and_offers)"
                )
            if not label.strip():
                raise ValueError(f"topic '{name}' needs the name customers read, like \"News and offers\"")
        return v

    #: ISO 4217 code of the shop's currency: prices in templates (`| money`) and report figures
    currency: str | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str | None) -> str | None:
        if v is None:
            return None
        code = v.strip().upper()
        if len(code) != 3 or not code.isascii() or not code.isalpha():
            raise ValueError(f"currency must be a three-letter ISO 4217 code like EUR or USD, not {v!r}")
        return code

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        check_timezone(v)
        return v


Rule.model_rebuild()
RuleList.model_rebuild()
Stage.model_rebuild()
StagesFile.model_rebuild()
Segment.model_rebuild()
SegmentsFile.model_rebuild()

#: every key a rule, stage or settings file may use: the vocabulary for "did you mean"
KNOWN_KEYS = sorted(
    {
        alias or name
        for model in (
            Compare,
            AttributeCondition,
            EventCondition,
            StageCondition,
            StageIn,
            SegmentCondition,
            SubscribedCondition,
            AllCondition,
            AnyCondition,
            NotCondition,
            SendStep,
            SendSpec,
            WaitStep,
            WaitFor,
            WaitForStep,
            Branch,
            BranchStep,
            SplitStep,
            UpdateStep,
            Inactivity,
            Anniversary,
            EventTrigger,
            StageTrigger,
            SegmentEnteredTrigger,
            SegmentExitedTrigger,
            InactivityTrigger,
            ScheduleTrigger,
            AnniversaryTrigger,
            Goal,
            Rule,
            RuleList,
            Stage,
            StagesFile,
            Segment,
            SegmentsFile,
            FrequencyCap,
            SoftBounce,
            SettingsFile,
        )
        for name, field in model.model_fields.items()
        for alias in [field.alias]
    }
)


__all__ = [
    "KNOWN_KEYS",
    "AllCondition",
    "AnyCondition",
    "AttributeCondition",
    "BranchStep",
    "Compare",
    "Condition",
    "EventCondition",
    "FrequencyCap",
    "Goal",
    "NotCondition",
    "Rule",
    "RuleList",
    "Segment",
    "SegmentCondition",
    "SegmentEnteredTrigger",
    "SegmentExitedTrigger",
    "SegmentsFile",
    "SendSpec",
    "SendStep",
    "SettingsFile",
    "SoftBounce",
    "SplitStep",
    "Stage",
    "StageCondition",
    "StagesFile",
    "Step",
    "SubscribedCondition",
    "Trigger",
    "UpdateStep",
    "WaitFor",
    "WaitForStep",
    "WaitStep",
]
