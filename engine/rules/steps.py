"""Steps as written in rule files (CONTRACT sections 5 and 11): send, wait, wait_for, branch,
split, update.

A step is a union told apart by its keys, like a condition. `engine.rules.walk` walks a rule's
step tree.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, field_validator, model_validator

from engine.rules.conditions import CompareOrValue, Condition, Scalar, Strict, key_tagger
from engine.rules.durations import Duration

#: a template name: the start of its files' names (`NAME.subject.j2`), inside the templates directory
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def template_name(value: str) -> str:
    """`value` when it can name a template; a clear error for a path, a dot or a long name."""
    if not _TEMPLATE_NAME.fullmatch(value):
        shown = value if len(value) <= 60 else value[:60] + "…"
        raise ValueError(
            f"'{shown}' is not a template name (letters, digits, _ and -, at most 100, as in "
            "cart_reminder; no path: templates are files inside the templates directory)"
        )
    return value


TemplateName = Annotated[str, AfterValidator(template_name)]


class SendSpec(Strict):
    """`send: {template: NAME, subject: "…", blocks: {NAME: "…"}}`: a template with overrides, so
    that a variant of a split differs from another by its subject or a block, not by a copy."""

    template: TemplateName
    #: a Jinja template string rendered like NAME.subject.j2, in its place
    subject: str | None = Field(default=None, min_length=1)
    #: Jinja source for `{% block NAME %}` of the template's bodies, in place of the template's own
    blocks: dict[str, str] = Field(default_factory=dict)

    @field_validator("blocks")
    @classmethod
    def _block_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not name.isidentifier() or name.startswith("_"):
                raise ValueError(
                    f"'{name}' is not a block name (letters, digits and _, as in {{% block intro %}})"
                )
        return v


def _send_tag(value: Any) -> str:
    return "<spec>" if isinstance(value, dict | SendSpec) else "<name>"


class SendStep(Strict):
    send: Annotated[
        Annotated[TemplateName, Tag("<name>")] | Annotated[SendSpec, Tag("<spec>")],
        Discriminator(_send_tag),
    ]
    channel: Literal["email", "webhook"] = "email"
    #: webhook channel: where to POST (default: `webhook_url` in settings.yaml)
    url: str | None = None

    @model_validator(mode="after")
    def _overrides_are_for_email(self) -> SendStep:
        if (
            isinstance(self.send, SendSpec)
            and self.channel == "webhook"
            and (self.send.subject is not None or self.send.blocks)
        ):
            raise ValueError("a webhook has no subject or blocks: overrides are for email sends")
        return self

    @property
    def template(self) -> str:
        """The template's name, whichever way the step names it."""
        return self.send.template if isinstance(self.send, SendSpec) else self.send

    @property
    def subject(self) -> str | None:
        """The subject override (a Jinja template string), if any."""
        return self.send.subject if isinstance(self.send, SendSpec) else None

    @property
    def blocks(self) -> dict[str, str]:
        """Block overrides by block name (Jinja source), if any."""
        return dict(self.send.blocks) if isinstance(self.send, SendSpec) else {}


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
        # Weights are shares of the customers who reach the split. They add up to 100, the holdout
        # included ({winback: 90, holdout: 10}) or on top of variants that add up to 100
        # ({A: 50, B: 50, holdout: 10}, CONTRACT section 5): anything else is a slip of the pen.
        total = sum(self.split.values())
        variants = total - self.split.get("holdout", 0)
        if 100 not in (total, variants):
            raise ValueError(
                f"split weights add up to {total}: make them add up to 100 (the variants alone, "
                "with a holdout on top, or all of them with the holdout)"
            )
        for name in self.variants:
            if name not in self.split:
                raise ValueError(f"variant '{name}' has no weight under split:")
        for name in self.split:
            if name != "holdout" and name not in self.variants:
                raise ValueError(
                    f"split entry '{name}' has no steps under variants: (only 'holdout' may have none)"
                )
        return self


class WaitFor(Strict):
    """`wait_for: {event, within, match, where, then, timeout}`: released at the first tick after
    the event (`then:`), or sent down `timeout:` once `within` has passed since the step was
    reached. `match` names properties the awaited event shares with the trigger event."""

    event: str = Field(min_length=1)
    within: Duration
    match: list[str] = Field(default_factory=list)
    where: dict[str, CompareOrValue] | None = None
    then: list[Step] = Field(default_factory=list)
    timeout: list[Step] = Field(default_factory=list)

    @field_validator("match", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("within")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v.total_seconds() <= 0:
            raise ValueError("wait_for needs a `within` longer than zero")
        return v


class WaitForStep(Strict):
    wait_for: WaitFor


class UpdateStep(Strict):
    update: dict[str, Scalar | list[Scalar] | dict[str, Any]] = Field(min_length=1)


#: `wait_for` before `wait`: a mapping is tagged by the first of these keys it holds
_step_tag = key_tagger(
    (
        ("send", SendStep),
        ("wait_for", WaitForStep),
        ("wait", WaitStep),
        ("branch", BranchStep),
        ("split", SplitStep),
        ("update", UpdateStep),
    )
)


Step = Annotated[
    Annotated[SendStep, Tag("<send>")]
    | Annotated[WaitStep, Tag("<wait>")]
    | Annotated[WaitForStep, Tag("<wait_for>")]
    | Annotated[BranchStep, Tag("<branch>")]
    | Annotated[SplitStep, Tag("<split>")]
    | Annotated[UpdateStep, Tag("<update>")],
    Discriminator(
        _step_tag,
        custom_error_type="step",
        custom_error_message="a step needs one of: send, wait, wait_for, branch, split, update",
    ),
]


WaitFor.model_rebuild()
WaitForStep.model_rebuild()
Branch.model_rebuild()
BranchStep.model_rebuild()
SplitStep.model_rebuild()


def iter_wait_fors(steps: list[Any]) -> list[WaitFor]:
    """Every `wait_for` of a step list, nested ones included."""
    out: list[WaitFor] = []
    for step in steps:
        if isinstance(step, WaitForStep):
            out += [
                step.wait_for,
                *iter_wait_fors(step.wait_for.then),
                *iter_wait_fors(step.wait_for.timeout),
            ]
        elif isinstance(step, BranchStep):
            out += iter_wait_fors(step.branch.then) + iter_wait_fors(step.branch.else_)
        elif isinstance(step, SplitStep):
            for variant in step.variants.values():
                out += iter_wait_fors(variant)
    return out
