"""A small shop whose report figures are computed by hand in tests/reporting (the `shop` fixture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from engine.db.schema import customers, sends
from engine.delivery.channels.stub import StubEmailChannel, StubWebhookChannel
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import utc

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
        db, settings, kit.ruleset, channels={"email": StubEmailChannel(), "webhook": StubWebhookChannel()}
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
