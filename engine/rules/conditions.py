"""Conditions as written in rule and stage files (CONTRACT section 4), as pydantic models.

A condition is a union told apart by its keys; the tags are written `<name>` so that the loader
can drop them from error locations. `children` and `walk` are the one traversal of a condition
tree: everything that only needs to visit the parts of a condition uses them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from engine.rules.durations import Duration

Scalar = str | int | float | bool | None

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "contains")
#: the comparisons that order values: numbers, or ISO dates and times (which order as text)
ORDERING = ("gt", "gte", "lt", "lte")
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


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
        op, value = given[0]
        if op in ORDERING and isinstance(value, str) and not _DATE_LIKE.match(value):
            raise ValueError(
                f"'{op}' compares numbers or dates: {value!r} is neither "
                f"(write a number like {op}: 2, or a date like {op}: 2026-01-31)"
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

    @field_validator("count", mode="before")
    @classmethod
    def _count_is_a_number(cls, count: Any) -> Any:
        """A count is a number of times: `count: {gte: two}` is a mistake, not a text comparison."""
        ops = count if isinstance(count, dict) else {"eq": count}
        for op, value in ops.items():
            if op in ("exists", "contains"):
                raise ValueError(f"count compares a number of times: use gte, lte, eq, … not '{op}'")
            if op not in OPS:
                continue  # an unknown key: the comparison itself reports it
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v != int(v):
                    raise ValueError(
                        f"count is a whole number of times: {v!r} is not one (like count: {{{op}: 2}})"
                    )
        return count


class StageIn(Strict):
    in_: list[str] = Field(alias="in", min_length=1)


class StageCondition(Strict):
    stage: str | StageIn

    def names(self) -> list[str]:
        return [self.stage] if isinstance(self.stage, str) else list(self.stage.in_)


class SegmentCondition(Strict):
    """`{segment: NAME}`: the customer is a member of a segment of `rules/segments.yaml`."""

    segment: str


class SubscribedCondition(Strict):
    subscribed: Literal["email", "webhook"]


class AllCondition(Strict):
    all: list[Condition] = Field(min_length=1)


class AnyCondition(Strict):
    any: list[Condition] = Field(min_length=1)


class NotCondition(Strict):
    not_: Condition = Field(alias="not")


def key_tagger(tags: tuple[tuple[str, type[BaseModel]], ...]) -> Callable[[Any], str | None]:
    """The discriminator of a union written as one-key YAML mappings (`{event: ...}`, `{send: ...}`):
    a model's tag by its type, a raw mapping's by the first of `tags`' keys it holds. Tags are
    `<key>`, so that they cannot collide with a key's value."""
    by_type = {model: f"<{key}>" for key, model in tags}

    def tag(value: Any) -> str | None:
        if isinstance(value, BaseModel):
            return by_type.get(type(value))
        if isinstance(value, dict):
            for key, _ in tags:
                if key in value:
                    return f"<{key}>"
        return None

    return tag


_condition_tag = key_tagger(
    (
        ("attribute", AttributeCondition),
        ("event", EventCondition),
        ("stage", StageCondition),
        ("segment", SegmentCondition),
        ("subscribed", SubscribedCondition),
        ("all", AllCondition),
        ("any", AnyCondition),
        ("not", NotCondition),
    )
)


Condition = Annotated[
    Annotated[AttributeCondition, Tag("<attribute>")]
    | Annotated[EventCondition, Tag("<event>")]
    | Annotated[StageCondition, Tag("<stage>")]
    | Annotated[SegmentCondition, Tag("<segment>")]
    | Annotated[SubscribedCondition, Tag("<subscribed>")]
    | Annotated[AllCondition, Tag("<all>")]
    | Annotated[AnyCondition, Tag("<any>")]
    | Annotated[NotCondition, Tag("<not>")],
    Discriminator(
        _condition_tag,
        custom_error_type="condition",
        custom_error_message="a condition needs one of: attribute, event, stage, segment, subscribed, all, any, not",
    ),
]


AllCondition.model_rebuild()
AnyCondition.model_rebuild()
NotCondition.model_rebuild()


def children(cond: Any) -> list[Any]:
    """The conditions directly inside `all:`, `any:` or `not:`; none for a leaf."""
    if isinstance(cond, AllCondition):
        return list(cond.all)
    if isinstance(cond, AnyCondition):
        return list(cond.any)
    if isinstance(cond, NotCondition):
        return [cond.not_]
    return []


def walk(cond: Any) -> Iterator[Any]:
    """Every part of a condition tree, the tree itself first (preorder)."""
    stack = [cond]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))


def event_names(cond: Any) -> set[str]:
    """Every event name a condition reads."""
    return {c.event for c in walk(cond) if isinstance(c, EventCondition)}


def stage_names(cond: Any) -> list[str]:
    """Every stage a condition names, in order."""
    return [name for c in walk(cond) if isinstance(c, StageCondition) for name in c.names()]


def segment_names(cond: Any) -> list[str]:
    """Every segment a condition names, in order."""
    return [c.segment for c in walk(cond) if isinstance(c, SegmentCondition)]
