"""Triggers as written in rule files (CONTRACT section 5): exactly one per rule, a union told
apart by its key (`event`, `stage_entered`, `inactivity`, `schedule`, `anniversary`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from engine.rules.conditions import CompareOrValue, Condition, Strict
from engine.rules.durations import Duration

#: the trigger kinds, in the order a file's keys are matched against them
KINDS = (
    "event",
    "stage_entered",
    "segment_entered",
    "segment_exited",
    "inactivity",
    "schedule",
    "anniversary",
)


class EventTrigger(Strict):
    """Once for each matching event."""

    kind: Literal["event"] = Field(default="event", exclude=True)
    event: str
    where: dict[str, CompareOrValue] | None = None


class StageTrigger(Strict):
    """Once for each entry into a stage (optionally only from another one)."""

    kind: Literal["stage_entered"] = Field(default="stage_entered", exclude=True)
    stage_entered: str
    from_: str | None = Field(default=None, alias="from")


class SegmentEnteredTrigger(Strict):
    """Once for each entry into a segment (not for the members a new segment starts with)."""

    kind: Literal["segment_entered"] = Field(default="segment_entered", exclude=True)
    segment_entered: str


class SegmentExitedTrigger(Strict):
    """Once for each exit from a segment."""

    kind: Literal["segment_exited"] = Field(default="segment_exited", exclude=True)
    segment_exited: str


class Inactivity(Strict):
    event: str
    until: list[str] = Field(default_factory=list)
    for_: Duration = Field(alias="for")
    #: properties an `until` event must share with this one to stop it (a checkout of *that*
    #: cart); each distinct value of them is timed on its own
    match: list[str] = Field(default_factory=list)

    @field_validator("until", "match", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class InactivityTrigger(Strict):
    """Once for each occurrence of an event that nothing in `until` followed within `for`."""

    kind: Literal["inactivity"] = Field(default="inactivity", exclude=True)
    inactivity: Inactivity


class ScheduleTrigger(Strict):
    """At each cron time, for each customer in the audience (in their timezone with `customer`)."""

    kind: Literal["schedule"] = Field(default="schedule", exclude=True)
    schedule: str
    audience: Condition | None = None
    timezone: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> ScheduleTrigger:
        _check_cron(self.schedule)
        if self.timezone not in (None, "customer", "UTC"):
            check_timezone(self.timezone)
        return self


class Anniversary(Strict):
    attribute: str


class AnniversaryTrigger(Strict):
    """Yearly on the date stored in an attribute."""

    kind: Literal["anniversary"] = Field(default="anniversary", exclude=True)
    anniversary: Anniversary


def _one_kind(value: Any) -> Any:
    if isinstance(value, dict):
        kinds = [k for k in KINDS if k in value]
        if len(kinds) > 1:
            raise ValueError(
                "a trigger needs exactly one of: " + ", ".join(KINDS) + f" (found {', '.join(kinds)})"
            )
    return value


def _trigger_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return f"<{getattr(value, 'kind', '')}>"
    if isinstance(value, dict):
        for key in KINDS:
            if key in value:
                return f"<{key}>"
    return None


Trigger = Annotated[
    Annotated[
        Annotated[EventTrigger, Tag("<event>")]
        | Annotated[StageTrigger, Tag("<stage_entered>")]
        | Annotated[SegmentEnteredTrigger, Tag("<segment_entered>")]
        | Annotated[SegmentExitedTrigger, Tag("<segment_exited>")]
        | Annotated[InactivityTrigger, Tag("<inactivity>")]
        | Annotated[ScheduleTrigger, Tag("<schedule>")]
        | Annotated[AnniversaryTrigger, Tag("<anniversary>")],
        Discriminator(
            _trigger_tag,
            custom_error_type="trigger",
            custom_error_message="a trigger needs exactly one of: " + ", ".join(KINDS),
        ),
    ],
    BeforeValidator(_one_kind),
]


def _check_cron(expr: str) -> None:
    from engine.rules.cron import cron_trigger

    if len(expr.split()) != 5:
        raise ValueError(
            f"schedule '{expr}' needs 5 cron fields: minute hour day month weekday, like '0 9 * * 1'"
        )
    try:
        cron_trigger(expr)
    except ValueError as exc:
        raise ValueError(f"schedule '{expr}' is not a valid cron expression: {exc}") from None


def check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone '{name}': use 'customer', 'UTC' or a name like 'Europe/Berlin'"
        ) from None


ScheduleTrigger.model_rebuild()
