"""Report figures checked against values computed by hand on a small fixed data set."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from engine.report import build, render_text, uplift_ci
from engine.report_html import render_html
from engine.schema import enrollments
from tests.conftest import utc
from tests.engine.evalkit import CART_RULE, H, Kit

T0 = utc("2026-11-01T10:00:00")

RULE = CART_RULE + "goal: {event: order_placed, within: 3d}\n"


@pytest.fixture
def shop(db: Engine, tmp_path: Path) -> Kit:
    kit = Kit(db, tmp_path)
    kit.rules(RULE)
    kit.tick(T0 - H)
    # a: cart, reminded, buys 2 h after the reminder (recovered); b: cart, reminded, never buys;
    # c: cart and buys within the hour (not abandoned, never reminded); d: only browses
    for cid in "abcd":
        kit.identify(cid, T0 - H)
    kit.track("a", "cart_updated", T0)
    kit.track("b", "cart_updated", T0)
    kit.track("c", "cart_updated", T0)
    kit.track("c", "order_placed", T0 + H / 2, value=50.0)
    kit.track("d", "product_viewed", T0)
    kit.tick(T0 + 2 * H)
    kit.track("a", "order_placed", T0 + 3 * H, value=30.0)
    kit.track("a", "order_placed", T0 + 30 * H, value=20.0)
    for cid, score in (("a", 10), ("b", 9), ("c", 7), ("d", 3)):
        kit.track(cid, "survey_answered", T0 + 4 * H, survey="nps", score=score)
    kit.tick(T0 + 40 * H)
    return kit


def test_report_figures_match_hand_computed_values(shop: Kit) -> None:
    r = build(shop.engine, shop.ruleset, now=T0 + 40 * H)
    assert r.customers == 4
    assert (r.carts, r.abandoned) == (3, 1)  # b never bought; a bought after the cart
    assert (r.reminded, r.recovered, r.recovery_rate) == (2, 1, 0.5)
    assert (r.buyers, r.repeat_buyers, r.repeat_purchase_rate) == (2, 1, 0.5)
    assert r.revenue == 100.0 and r.revenue_per_customer == 25.0
    assert (r.promoters, r.passives, r.detractors, r.nps) == (2, 1, 1, 25.0)
    (rule,) = r.rules
    assert (rule.rule, rule.entered, rule.conversions, rule.conversion_rate) == (
        "cart_abandonment",
        2,
        1,
        0.5,
    )
    funnel = {f["stage"]: f["reached"] for f in r.funnel}
    assert funnel["awareness"] == 4 and funnel["advocacy"] == 2  # a and b are promoters
    assert "NPS: +25.0 (promoters 2, passives 1, detractors 1)" in render_text(r)


def test_uplift_against_the_holdout_with_a_confidence_interval() -> None:
    lift = uplift_ci(30, 100, 10, 100)
    assert lift is not None
    diff, (low, high) = lift
    assert diff == 0.2
    assert low == pytest.approx(0.0926, abs=1e-3) and high == pytest.approx(0.3074, abs=1e-3)
    assert uplift_ci(1, 10, 0, 0) is None


def test_holdout_enrollments_are_measured_apart(shop: Kit) -> None:
    with shop.engine.begin() as conn:
        from sqlalchemy import select

        from engine.schema import customers

        b = conn.execute(select(customers.c.id).where(customers.c.external_id == "b")).scalar_one()
        assert conn.execute(
            enrollments.update().where(enrollments.c.customer_id == b).values(status="holdout")
        ).rowcount
    r = build(shop.engine, shop.ruleset, now=T0 + 40 * H)
    (rule,) = r.rules
    assert (rule.holdout, rule.holdout_conversions) == (1, 0)
    assert rule.uplift == 1.0  # 1 of 1 treated converted, 0 of 1 held out


def test_the_html_report_is_one_self_contained_page(shop: Kit) -> None:
    page = render_html(build(shop.engine, shop.ruleset, now=T0 + 40 * H))
    assert page.startswith("<!doctype html>")
    for chart in ('id="funnel"', 'id="sends"', 'id="conversions"'):
        assert chart in page
    assert "<script" not in page and "http://" not in page.split("<body>")[0]
