"""Report figures checked against values computed by hand on a small fixed data set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from engine.channels.stub import StubEmailChannel
from engine.deliver import Deliverer
from engine.dispatch import dispatch_due
from engine.report import MIN_GROUP, RuleFigures, build, render_text, uplift_ci, uplift_text, wilson
from engine.report_html import render_html
from engine.schema import customers, enrollments, sends
from engine.settings import Settings
from tests.conftest import utc
from tests.engine.evalkit import CART_RULE, H, Kit

T0 = utc("2026-11-01T10:00:00")
END = T0 + 40 * H

RULE = CART_RULE + "goal: {event: order_placed, within: 3d}\n"
DETRACTOR_RULE = """
id: detractor_recovery
trigger: {event: survey_answered, where: {score: {lte: 6}}}
steps:
  - send: team_alert
    channel: webhook
  - send: detractor_recovery
"""


class _Hooks:
    def __init__(self) -> None:
        self.posts: list[Any] = []

    def open(self) -> None: ...

    def close(self) -> None: ...

    def post(self, url: str, payload: Any, *, key: str, now: Any) -> str:
        self.posts.append(payload)
        return "200 ok"


def send_id(kit: Kit, customer: str, template: str) -> int:
    with kit.engine.connect() as conn:
        return int(
            conn.execute(
                select(sends.c.id)
                .join(customers, customers.c.id == sends.c.customer_id)
                .where(customers.c.external_id == customer, sends.c.template == template)
            ).scalar_one()
        )


@pytest.fixture
def shop(db: Engine, settings: Settings, tmp_path: Path) -> Kit:
    kit = Kit(db, tmp_path)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "team_alert.json.j2").write_text('{"text": "detractor"}')
    kit.rules(RULE, DETRACTOR_RULE, settings="webhook_url: https://hooks.example.com/team\n")
    deliverer = Deliverer.create(
        db, settings, kit.ruleset, channels={"email": StubEmailChannel(), "webhook": _Hooks()}
    )

    def tick_and_send(at: Any) -> None:
        kit.tick(at)
        dispatch_due(db, settings, now=at, deliverer=deliverer)

    tick_and_send(T0 - H)
    # a: cart, reminded at T0+2h, buys at T0+3h (abandoned, then recovered by the reminder)
    # b: cart, reminded, never buys (abandoned); c: cart and buys within the hour (not abandoned)
    # d: only browses, then answers 3 (a detractor); e: opted out of email, then a cart: it enters
    #    the cart journey but its reminder is never sent (abandoned, not reminded)
    for cid in "abcde":
        kit.identify(cid, T0 - H)
    kit.track("e", "unsubscribed", T0 - H / 2, channel="email")
    for cid in "abce":
        kit.track(cid, "cart_updated", T0)
    kit.track("c", "order_placed", T0 + H / 2, value=50.0)
    kit.track("d", "product_viewed", T0)
    tick_and_send(T0 + 2 * H)
    kit.track("a", "order_placed", T0 + 3 * H, value=30.0)
    kit.track("a", "order_placed", T0 + 30 * H, value=20.0)
    for cid, score in (("a", 10), ("b", 9), ("c", 7), ("d", 3)):
        kit.track(cid, "survey_answered", T0 + 4 * H, survey="nps", score=score)
    tick_and_send(END)

    # engagement, as the tracking and unsubscribe links record it
    a_reminder = send_id(kit, "a", "cart_reminder")
    b_reminder = send_id(kit, "b", "cart_reminder")
    d_email = send_id(kit, "d", "detractor_recovery")
    kit.track("a", "email_opened", T0 + 2 * H, "open-a-1", send_id=a_reminder)
    kit.track("a", "email_opened", T0 + 5 * H, "open-a-2", send_id=a_reminder)  # the same email again
    # b's images are blocked: two clicks on the reminder, no open pixel
    kit.track("b", "email_clicked", T0 + 3 * H, "click-b-1", send_id=b_reminder, url="https://x/1")
    kit.track("b", "email_clicked", T0 + 3 * H, "click-b-2", send_id=b_reminder, url="https://x/2")
    kit.track("b", "unsubscribed", T0 + 39 * H, send_id=b_reminder, rule="cart_abandonment")
    kit.track("d", "email_opened", T0 + 39 * H, "open-d", send_id=d_email)
    kit.track("d", "unsubscribed", T0 + 39 * H, rule="detractor_recovery")  # an older link: no send id
    # after the report's `now`: not counted
    kit.track("b", "email_opened", END + H, "open-b-late", send_id=b_reminder)
    return kit


def test_report_figures_match_hand_computed_values(shop: Kit) -> None:
    r = build(shop.engine, shop.ruleset, now=END)
    assert r.customers == 5
    # carts: a, b, c, e; c's order came within the hour; a's only 3 h later
    assert (r.carts, r.carts_bought, r.abandoned, r.abandonment_rate) == (4, 1, 3, 0.75)
    # reminders went out to a and b; e's was held back (opted out); a bought after hers
    assert (r.reminded, r.recovered) == (2, 1)
    assert (r.recovery_rate, r.reminded_recovery_rate) == (0.3333, 0.5)
    assert (r.buyers, r.repeat_buyers, r.repeat_purchase_rate) == (2, 1, 0.5)
    assert r.revenue == 100.0 and r.revenue_per_customer == 20.0
    assert (r.promoters, r.passives, r.detractors, r.nps) == (2, 1, 1, 25.0)
    funnel = {f["stage"]: f["reached"] for f in r.funnel}
    assert funnel["awareness"] == 5 and funnel["advocacy"] == 2  # a and b are promoters
    text = render_text(r)
    assert "NPS: +25.0 (promoters 2, passives 1, detractors 1)" in text
    assert "Carts: 4; bought 1, abandoned 3 (75.0% abandonment)" in text
    assert "reminded 2; recovered 1 (33.3% of abandoned carts, 50.0% of reminded ones)" in text
    assert "abandoned: a cart with no order within 1 h of its last change" in text
    assert "recovered: reminded carts followed by an order within 3 d of the reminder" in text


def test_per_rule_emails_webhooks_opens_clicks_and_unsubscribes(shop: Kit) -> None:
    rules = {f.rule: f for f in build(shop.engine, shop.ruleset, now=END).rules}
    cart, detractor = rules["cart_abandonment"], rules["detractor_recovery"]
    # entered: a, b, e; emails: a's reminder, b's reminder and last chance (e's was suppressed)
    assert (cart.entered, cart.sent, cart.webhooks) == (3, 3, 0)
    # opened: a's reminder (twice: once), b's reminder (clicked: an open too); clicked: b's reminder
    assert (cart.opened, cart.clicked, cart.unsubscribed) == (2, 1, 1)
    # converted: a ordered 2 h after entering, within the 3-day goal window
    assert (cart.conversions, cart.conversion_rate) == (1, 0.3333)
    # d: one email and one post to the team; opened, no click, unsubscribed by rule name
    assert (detractor.entered, detractor.sent, detractor.webhooks) == (1, 1, 1)
    assert (detractor.opened, detractor.clicked, detractor.unsubscribed) == (1, 0, 1)
    row = next(
        line
        for line in render_text(build(shop.engine, shop.ruleset, now=END)).splitlines()
        if "detractor_recovery" in line
    )
    assert row.split()[1:7] == ["1", "1", "1", "0", "1", "1"]  # entered emails opened clicked unsub hooks


def test_uplift_interval_is_newcombes_hybrid_score_interval() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II example: 56/70 vs 48/80 -> 0.0524 to 0.3339
    lift = uplift_ci(56, 70, 48, 80)
    assert lift is not None
    diff, (low, high) = lift
    assert diff == 0.2 and low == pytest.approx(0.0524, abs=1e-4) and high == pytest.approx(0.3339, abs=1e-4)
    # 30/100 treated vs 10/100 held out. Wilson 95%: 30/100 -> [0.2189, 0.3958], 10/100 -> [0.0552, 0.1744]
    assert wilson(30, 100) == pytest.approx((0.2189, 0.3958), abs=1e-4)
    assert wilson(10, 100) == pytest.approx((0.0552, 0.1744), abs=1e-4)
    # low = 0.2 - sqrt((0.30-0.2189)^2 + (0.1744-0.10)^2) = 0.0900; high = 0.2 + sqrt(0.0958^2 + 0.0448^2) = 0.3058
    diff, (low, high) = uplift_ci(30, 100, 10, 100) or (0.0, (0.0, 0.0))
    assert diff == 0.2 and low == pytest.approx(0.0900, abs=1e-3) and high == pytest.approx(0.3058, abs=1e-3)
    assert uplift_ci(1, 10, 0, 0) is None


def test_a_small_holdout_is_too_few_to_tell_not_a_tight_interval() -> None:
    # 0 of 47 treated and 0 of 6 held out converted: the normal interval was [+0.0, +0.0].
    # Wilson upper bound of 0/n is z^2/(n+z^2): 3.8416/50.8416 = 0.0756 and 3.8416/9.8416 = 0.3903
    diff, (low, high) = uplift_ci(0, 47, 0, 6) or (1.0, (0.0, 0.0))
    assert diff == 0.0 and low == pytest.approx(-0.3903, abs=1e-4) and high == pytest.approx(0.0756, abs=1e-4)
    small = RuleFigures("winback", entered=53, holdout=6, uplift=diff, uplift_ci=(low, high))
    small.uplift_verdict = "too few to tell"
    assert uplift_text(small) == f"too few to tell (47 treated, 6 held out; {MIN_GROUP} each needed)"
    big = RuleFigures("winback", entered=200, holdout=100, uplift=0.2, uplift_ci=(0.09, 0.3058))
    big.uplift_verdict = "better than holdout"
    assert uplift_text(big) == "+20.0 pts [+9.0, +30.6] (100 vs 100 held out): better than holdout"


def test_holdout_enrollments_are_measured_apart(shop: Kit) -> None:
    with shop.engine.begin() as conn:
        b = conn.execute(select(customers.c.id).where(customers.c.external_id == "b")).scalar_one()
        assert conn.execute(
            enrollments.update().where(enrollments.c.customer_id == b).values(status="holdout")
        ).rowcount
    r = build(shop.engine, shop.ruleset, now=END)
    cart = next(f for f in r.rules if f.rule == "cart_abandonment")
    assert (cart.holdout, cart.holdout_conversions) == (1, 0)
    # 1 of 2 treated (a, e) converted, 0 of 1 held out: +50 points, and far too few to tell
    assert cart.uplift == 0.5 and cart.uplift_verdict == "too few to tell"
    assert "too few to tell (2 treated, 1 held out" in render_text(r)


def test_the_html_report_is_one_self_contained_page(shop: Kit) -> None:
    page = render_html(build(shop.engine, shop.ruleset, now=END))
    assert page.startswith("<!doctype html>")
    for chart in ('id="funnel"', 'id="sends"', 'id="conversions"'):
        assert chart in page
    assert "<th>emails sent</th>" in page and "<th>webhooks</th>" in page
    assert "How these are counted" in page
    assert "<script" not in page and "http://" not in page.split("<body>")[0]
