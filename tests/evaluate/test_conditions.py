"""Every condition form of CONTRACT section 4, compiled to SQL and evaluated per customer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import Engine, select

from engine.db.schema import customers, unsubscribes
from engine.evaluate.conditions import Ctx, compile_condition, event_names, summary_pivot
from engine.rules.model import Condition
from tests.support.kit import CART_RULE, D, H, Kit
from tests.support.services import utc

NOW = utc("2026-11-10T12:00:00")
parse = TypeAdapter(Condition).validate_python


@pytest.fixture
def shop(db: Engine, tmp_path: Path) -> Kit:
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE)
    kit.identify(
        "ada",
        NOW - 40 * D,
        first_name="Ada",
        plan="gold",
        score=42,
        vip=True,
        tags=["eu", "beta"],
        timezone="Europe/Berlin",
    )
    kit.identify("bob", NOW - 40 * D, first_name="Bob", plan="silver", score=7, vip=False, tags=["us"])
    kit.ingest({"type": "identify", "customer_id": "cat", "timestamp": "2026-10-01T00:00:00Z", "traits": {}})
    for i in range(3):
        kit.track("ada", "order_placed", NOW - (i * 10 + 1) * D, value=100 + i, category="shoes")
    kit.track("bob", "order_placed", NOW - 50 * D, value=20, category="hats")
    kit.track("bob", "product_viewed", NOW - 2 * H, category="hats")
    kit.track("ada", "survey_answered", NOW - D, survey="nps", score=10)
    kit.track("bob", "survey_answered", NOW - D, survey="nps", score=3)
    kit.track("ada", "page_viewed", NOW + D)  # in the future: not seen yet
    with db.begin() as conn:
        bob = conn.execute(select(customers.c.id).where(customers.c.external_id == "bob")).scalar_one()
        conn.execute(unsubscribes.insert().values(customer_id=bob, channel="email", topic="*", at=NOW - D))
        conn.execute(customers.update().where(customers.c.external_id == "ada").values(stage="retention"))
        conn.execute(customers.update().where(customers.c.external_id == "bob").values(stage="lapsed"))
    return kit


def matching(kit: Kit, cond: dict[str, Any], *, pivoted: bool = False) -> list[str]:
    """The customers for whom `cond` holds; `pivoted`: compiled as the incremental stage
    recompute compiles it, over each customer's summary rows read once (summary_pivot)."""
    parsed = parse(cond)
    with kit.engine.connect() as conn:
        query = select(customers.c.external_id)
        pivot = None
        if pivoted:
            pivot = summary_pivot(sorted(event_names(parsed)), select(customers.c.id))
            query = query.select_from(
                customers.outerjoin(pivot.query, pivot.query.c.customer_id == customers.c.id)
            )
        expr = compile_condition(parsed, Ctx(conn=conn, now=NOW, summary=pivot))
        rows = conn.execute(query.where(expr).order_by(customers.c.external_id))
        return [r[0] for r in rows]


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ({"attribute": "plan", "eq": "gold"}, ["ada"]),
        ({"attribute": "plan", "ne": "gold"}, ["bob", "cat"]),
        ({"attribute": "score", "gt": 7}, ["ada"]),
        ({"attribute": "score", "gte": 7}, ["ada", "bob"]),
        ({"attribute": "score", "lt": 42}, ["bob"]),
        ({"attribute": "score", "lte": 42}, ["ada", "bob"]),
        ({"attribute": "plan", "in": ["gold", "silver"]}, ["ada", "bob"]),
        ({"attribute": "plan", "not_in": ["gold"]}, ["bob", "cat"]),
        ({"attribute": "plan", "exists": True}, ["ada", "bob"]),
        ({"attribute": "plan", "exists": False}, ["cat"]),
        ({"attribute": "email", "exists": True}, ["ada", "bob"]),
        ({"attribute": "email", "contains": "ada@"}, ["ada"]),
        ({"attribute": "tags", "contains": "beta"}, ["ada"]),
        ({"attribute": "vip", "eq": True}, ["ada"]),
        ({"attribute": "first_name", "eq": "Bob"}, ["bob"]),
        ({"attribute": "timezone", "eq": "Europe/Berlin"}, ["ada"]),
    ],
)
def test_attribute_conditions(shop: Kit, cond: dict[str, Any], expected: list[str]) -> None:
    assert matching(shop, cond) == expected


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ({"event": "order_placed"}, ["ada", "bob"]),
        ({"event": "order_placed", "within": "7d"}, ["ada"]),
        ({"event": "order_placed", "within": "30d"}, ["ada"]),
        ({"event": "order_placed", "count": {"gte": 3}}, ["ada"]),
        ({"event": "order_placed", "count": {"lt": 1}}, ["cat"]),
        # a count that holds for zero (no summary row) and one that does not, each operator
        ({"event": "order_placed", "count": {"eq": 0}}, ["cat"]),
        ({"event": "order_placed", "count": {"ne": 3}}, ["bob", "cat"]),
        ({"event": "order_placed", "count": {"in": [0, 3]}}, ["ada", "cat"]),
        ({"event": "order_placed", "count": {"not_in": [0]}}, ["ada", "bob"]),
        ({"event": "order_placed", "count": {"lte": 3}}, ["ada", "bob", "cat"]),
        ({"event": "order_placed", "count": {"gt": 0}}, ["ada", "bob"]),
        ({"event": "order_placed", "count": {"gte": 2}, "within": "15d"}, ["ada"]),
        ({"event": "order_placed", "count": {"gte": 3}, "within": "15d"}, []),
        ({"event": "order_placed", "where": {"category": {"eq": "hats"}}}, ["bob"]),
        ({"event": "order_placed", "where": {"value": {"gte": 101}}}, ["ada"]),
        ({"event": "order_placed", "where": {"value": {"gte": 100}}, "count": {"gte": 2}}, ["ada"]),
        ({"event": "survey_answered", "where": {"score": {"gte": 9}}}, ["ada"]),
        ({"event": "survey_answered", "where": {"score": {"lte": 6}}, "within": "2d"}, ["bob"]),
        ({"event": "product_viewed", "within": "1h"}, []),
        ({"event": "product_viewed", "within": "3h"}, ["bob"]),
    ],
)
def test_event_conditions(shop: Kit, cond: dict[str, Any], expected: list[str]) -> None:
    assert matching(shop, cond) == expected
    assert matching(shop, cond, pivoted=True) == expected


def test_stage_and_subscription_conditions(shop: Kit) -> None:
    assert matching(shop, {"stage": "retention"}) == ["ada"]
    assert matching(shop, {"stage": {"in": ["lapsed", "retention"]}}) == ["ada", "bob"]
    assert matching(shop, {"subscribed": "email"}) == ["ada"]  # bob unsubscribed, cat has no email


def test_combinations(shop: Kit) -> None:
    assert matching(shop, {"all": [{"event": "order_placed"}, {"attribute": "plan", "eq": "silver"}]}) == [
        "bob"
    ]
    assert matching(shop, {"any": [{"stage": "retention"}, {"attribute": "plan", "eq": "silver"}]}) == [
        "ada",
        "bob",
    ]
    assert matching(shop, {"not": {"event": "order_placed", "within": "30d"}}) == ["bob", "cat"]
    # the same over the pivoted summary, where a customer without the event has no row at all
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"not": {"event": "order_placed", "within": "30d"}}, ["bob", "cat"]),
        ({"not": {"event": "order_placed"}}, ["cat"]),
        ({"not": {"event": "order_placed", "count": {"gte": 2}}}, ["bob", "cat"]),
        ({"not": {"event": "survey_answered", "where": {"score": {"gte": 9}}}}, ["bob", "cat"]),
        (
            {"all": [{"event": "order_placed"}, {"not": {"event": "order_placed", "within": "30d"}}]},
            ["bob"],
        ),
    ]
    for cond, expected in cases:
        assert matching(shop, cond) == expected, cond
        assert matching(shop, cond, pivoted=True) == expected, cond
    # missing data is false, and its negation true: never NULL
    assert matching(shop, {"not": {"attribute": "score", "gt": 10}}) == ["bob", "cat"]
