"""The shapes of stage, rule and settings files, as pydantic models (unknown keys are errors).

Conditions and steps are unions told apart by their keys; their tags are written `<name>` so that
the loader can drop them from error locations.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    field_validator,
    model_validator,
)

from engine.durations import format_duration, parse_duration

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
Scalar = str | int | float | bool | None
OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "contains")
CHANNELS = ("email", "webhook")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Compare(Strict):
    """Exactly one comparison: `{gte: 3}`, `{in: [a, b]}`, `{exists: true}`."""

    eq: Scalar | list[Scalar] = None
    ne: Scalar = None
    gt: int | float | str | None = None
    gte: int | float | str | None = None
    lt: int | float | str | None = None
    lte: int | float | str | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    exists: bool | None = None
    contains: Scalar = None

    @model_validator(mode="after")
    def _one_op(self) -> Compare:
        given = self.ops()
        if len(given) != 1:
            names = ", ".join(OPS)
            if not given:
                raise ValueError(f"needs one comparison: one of {names}")
            raise ValueError(
                f"has {len(given)} comparisons ({', '.join(op for op, _ in given)}); use all: to combine"
            )
        return self

    def ops(self) -> list[tuple[str, Any]]:
        return [(op, getattr(self, "in_" if op == "in" else op)) for op in OPS if _set(self, op)]

    @property
    def op(self) -> str:
        return self.ops()[0][0]

    @property
    def value(self) -> Any:
        return self.ops()[0][1]


def _set(model: BaseModel, op: str) -> bool:
    return ("in_" if op == "in" else op) in model.model_fields_set


def _compare(value: Any) -> Any:
    """A bare value where a comparison is expected means equality: `{plan: gold}`."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {"in": value}
    return {"eq": value}


CompareOrValue = Annotated[Compare, BeforeValidator(_compare)]


class AttributeCondition(Compare):
    attribute: str


class EventCondition(Strict):
    event: str
    within: Duration | None = None
    count: CompareOrValue | None = None
    where: dict[str, CompareOrValue] | None = None


class StageIn(Strict):
    in_: list[str] = Field(alias="in", min_length=1)


class StageCondition(Strict):
    stage: str | StageIn

    def names(self) -> list[str]:
        return [self.stage] if isinstance(self.stage, str) else list(self.stage.in_)


class SubscribedCondition(Strict):
    subscribed: Literal["email", "webhook"]


class AllCondition(Strict):
    all: list[Condition] = Field(min_length=1)


class AnyCondition(Strict):
    any: list[Condition] = Field(min_length=1)


class NotCondition(Strict):
    not_: Condition = Field(alias="not")


_CONDITION_KEYS = (
    ("attribute", "<attribute>"),
    ("event", "<event>"),
    ("stage", "<stage>"),
    ("subscribed", "<subscribed>"),
    ("all", "<all>"),
    ("any", "<any>"),
    ("not", "<not>"),
)


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {
            AttributeCondition: "<attribute>",
            EventCondition: "<event>",
            StageCondition: "<stage>",
            SubscribedCondition: "<subscribed>",
            AllCondition: "<all>",
            AnyCondition: "<any>",
            NotCondition: "<not>",
        }.get(type(value))
    if isinstance(value, dict):
        for key, tag in _CONDITION_KEYS:
            if key in value:
                return tag
    return None


Condition = Annotated[
    Annotated[AttributeCondition, Tag("<attribute>")]
    | Annotated[EventCondition, Tag("<event>")]
    | Annotated[StageCondition, Tag("<stage>")]
    | Annotated[SubscribedCondition, Tag("<subscribed>")]
    | Annotated[AllCondition, Tag("<all>")]
    | Annotated[AnyCondition, Tag("<any>")]
    | Annotated[NotCondition, Tag("<not>")],
    Discriminator(
        _condition_tag,
        custom_error_type="condition",
        custom_error_message="a condition needs one of: attribute, event, stage, subscribed, all, any, not",
    ),
]

# ----------------------------------------------------------------------------------------- steps


class SendStep(Strict):
    send: str
    channel: Literal["email", "webhook"] = "email"
    #: webhook channel: where to POST (default: `webhook_url` in settings.yaml)
    url: str | None = None


class WaitStep(Strict):
    wait: Duration

    @field_validator("wait")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v.total_seconds() <= 0:
            raise ValueError("a wait must be longer than zero")
        return v


class Branch(Strict):
    if_: Condition = Field(alias="if")
    then: list[Step] = Field(default_factory=list)
    else_: list[Step] = Field(default_factory=list, alias="else")


class BranchStep(Strict):
    branch: Branch


class SplitStep(Strict):
    split: dict[str, int] = Field(min_length=1)
    variants: dict[str, list[Step]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _variants_match(self) -> SplitStep:
        for name, weight in self.split.items():
            if weight < 0:
                raise ValueError(f"split weight of '{name}' is negative")
        if sum(self.split.values()) <= 0:
            raise ValueError("split weights add up to zero")
        for name in self.variants:
            if name not in self.split:
                raise ValueError(f"variant '{name}' has no weight under split:")
        for name in self.split:
            if name != "holdout" and name not in self.variants:
                raise ValueError(
                    f"split entry '{name}' has no steps under variants: (only 'holdout' may have none)"
                )
        return self


class UpdateStep(Strict):
    update: dict[str, Scalar | list[Scalar] | dict[str, Any]] = Field(min_length=1)


_STEP_KEYS = (
    ("send", "<send>"),
    ("wait", "<wait>"),
    ("branch", "<branch>"),
    ("split", "<split>"),
    ("update", "<update>"),
)


def _step_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {
            SendStep: "<send>",
            WaitStep: "<wait>",
            BranchStep: "<branch>",
            SplitStep: "<split>",
            UpdateStep: "<update>",
        }.get(type(value))
    if isinstance(value, dict):
        for key, tag in _STEP_KEYS:
            if key in value:
                return tag
    return None


Step = Annotated[
    Annotated[SendStep, Tag("<send>")]
    | Annotated[WaitStep, Tag("<wait>")]
    | Annotated[BranchStep, Tag("<branch>")]
    | Annotated[SplitStep, Tag("<split>")]
    | Annotated[UpdateStep, Tag("<update>")],
    Discriminator(
        _step_tag,
        custom_error_type="step",
        custom_error_message="a step needs one of: send, wait, branch, split, update",
    ),
]

# -------------------------------------------------------------------------------------- triggers


class Inactivity(Strict):
    event: str
    until: list[str] = Field(default_factory=list)
    for_: Duration = Field(alias="for")

    @field_validator("until", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class Anniversary(Strict):
    attribute: str


class Trigger(Strict):
    event: str | None = None
    where: dict[str, CompareOrValue] | None = None
    stage_entered: str | None = None
    from_: str | None = Field(default=None, alias="from")
    inactivity: Inactivity | None = None
    schedule: str | None = None
    audience: Condition | None = None
    timezone: str | None = None
    anniversary: Anniversary | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        kinds = [
            k for k in ("event", "stage_entered", "inactivity", "schedule", "anniversary") if getattr(self, k)
        ]
        if len(kinds) != 1:
            raise ValueError(
                "a trigger needs exactly one of: event, stage_entered, inactivity, schedule, anniversary"
                + (f" (found {', '.join(kinds)})" if kinds else "")
            )
        if self.where is not None and self.event is None:
            raise ValueError("where: filters an event trigger; use it with event:")
        if self.from_ is not None and self.stage_entered is None:
            raise ValueError("from: belongs to a stage_entered trigger")
        if (self.audience is not None or self.timezone is not None) and self.schedule is None:
            raise ValueError("audience: and timezone: belong to a schedule trigger")
        if self.schedule is not None:
            _check_cron(self.schedule)
            if self.timezone not in (None, "customer", "UTC"):
                _check_timezone(self.timezone)
        return self

    @property
    def kind(self) -> str:
        for k in ("event", "stage_entered", "inactivity", "schedule", "anniversary"):
            if getattr(self, k):
                return k
        raise AssertionError("validated trigger has a kind")


def _check_cron(expr: str) -> None:
    from engine.cron import cron_trigger

    if len(expr.split()) != 5:
        raise ValueError(
            f"schedule '{expr}' needs 5 cron fields: minute hour day month weekday, like '0 9 * * 1'"
        )
    try:
        cron_trigger(expr)
    except ValueError as exc:
        raise ValueError(f"schedule '{expr}' is not a valid cron expression: {exc}") from None


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone '{name}': use 'customer', 'UTC' or a name like 'Europe/Berlin'"
        ) from None


class Goal(Strict):
    event: str
    within: Duration = Field(default_factory=lambda: timedelta(days=7))


_QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


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
    quiet_hours: str | None = None
    priority: int = 0
    transactional: bool = False
    #: preference-centre topic a customer can opt out of (default: the rule id)
    topic: str | None = None

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, v: str | None) -> str | None:
        if v is not None and not _QUIET.match(v):
            raise ValueError(f"quiet_hours '{v}' must look like \"21:00-08:00\" (24-hour HH:MM-HH:MM)")
        return v

    @field_validator("exit_on", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


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


class FrequencyCap(Strict):
    max: int = Field(ge=1)
    per: Duration


class SettingsFile(Strict):
    frequency_cap: FrequencyCap | None = None
    #: default quiet hours for every rule that does not set its own
    quiet_hours: str | None = None
    #: timezone for customers who have none
    default_timezone: str = "UTC"
    webhook_url: str | None = None
    #: where a referral link lands (the code is added as ?ref=CODE)
    referral_landing_url: str = "https://example.com/"

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, v: str | None) -> str | None:
        if v is not None and not _QUIET.match(v):
            raise ValueError(f"quiet_hours '{v}' must look like \"21:00-08:00\" (24-hour HH:MM-HH:MM)")
        return v

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        _check_timezone(v)
        return v


AllCondition.model_rebuild()
AnyCondition.model_rebuild()
NotCondition.model_rebuild()
Branch.model_rebuild()
BranchStep.model_rebuild()
SplitStep.model_rebuild()
Trigger.model_rebuild()
Rule.model_rebuild()
RuleList.model_rebuild()
Stage.model_rebuild()
StagesFile.model_rebuild()

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
            SubscribedCondition,
            AllCondition,
            AnyCondition,
            NotCondition,
            SendStep,
            WaitStep,
            Branch,
            BranchStep,
            SplitStep,
            UpdateStep,
            Inactivity,
            Anniversary,
            Trigger,
            Goal,
            Rule,
            RuleList,
            Stage,
            StagesFile,
            FrequencyCap,
            SettingsFile,
        )
        for name, field in model.model_fields.items()
        for alias in [field.alias]
    }
)


def iter_sends(steps: list[Any]) -> list[SendStep]:
    """Every send step of a step list, nested ones included."""
    out: list[SendStep] = []
    for step in steps:
        if isinstance(step, SendStep):
            out.append(step)
        elif isinstance(step, BranchStep):
            out += iter_sends(step.branch.then) + iter_sends(step.branch.else_)
        elif isinstance(step, SplitStep):
            for variant in step.variants.values():
                out += iter_sends(variant)
    return out
