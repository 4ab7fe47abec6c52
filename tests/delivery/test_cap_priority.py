"""The frequency cap and quiet hours as a marketer sets them: priorities decide who is held back,
and a note to the team (webhook) is neither capped nor kept for the customer's morning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from engine.db.schema import sends
from engine.delivery.channels.stub import StubEmailChannel
from engine.delivery.channels.webhook import FileWebhookChannel
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from tests.support.kit import H, Kit
from tests.support.services import utc

T0 = utc("2026-11-02T10:00:00")  # 10:00 UTC: outside the quiet hours below

NEWS = """
id: news
trigger: {event: page_viewed}
steps:
  - send: news
"""
CART = """
id: cart
priority: 10
trigger: {event: cart_updated}
steps:
  - send: cart_reminder
"""
ALERT = """
id: alert
trigger: {event: survey_answered}
steps:
  - send: team_alert
    channel: webhook
    url: https://team.example.com/hooks
"""
SETTINGS = "frequency_cap: {max: 2, per: 7d}\nquiet_hours: '21:00-08:00'\n"


def shop(db: Engine, tmp_path: Path) -> tuple[Kit, Deliverer, StubEmailChannel]:
    kit = Kit(db, tmp_path)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "team_alert.json.j2").write_text('{"customer": {{ customer.id | tojson }}}')
    kit.rules(NEWS, CART, ALERT, settings=SETTINGS)
    settings = Settings(database_url=str(db.url), templates_dir=tmp_path / "templates", secret_key="k")
    email = StubEmailChannel()
    webhook = FileWebhookChannel(tmp_path / "hooks")
    deliverer = Deliverer.create(db, settings, kit.ruleset, channels={"email": email, "webhook": webhook})
    kit.tick(T0 - 24 * H)
    kit.identify("ada", T0 - 20 * H, first_name="Ada", timezone="UTC")
    return kit, deliverer, email


def run(kit: Kit, deliverer: Deliverer, at: Any) -> None:
    kit.tick(at)
    dispatch_due(kit.engine, deliverer.settings, now=at, deliverer=deliverer)


def outcomes(kit: Kit) -> list[tuple[str, str, str | None]]:
    with kit.engine.connect() as conn:
        rows = conn.execute(select(sends.c.rule_id, sends.c.status, sends.c.reason).order_by(sends.c.id))
        return [(r.rule_id, r.status, r.reason) for r in rows]


def test_a_higher_priority_email_is_not_crowded_out_by_lower_ones(db: Engine, tmp_path: Path) -> None:
    kit, deliverer, email = shop(db, tmp_path)
    for i in range(3):  # three newsletters in a row: the cap (2 a week) holds the third back
        kit.track("ada", "page_viewed", T0 + i * H, mid=f"p{i}")
        run(kit, deliverer, T0 + i * H + H / 2)
    kit.track("ada", "cart_updated", T0 + 4 * H)
    run(kit, deliverer, T0 + 4 * H + H / 2)
    kit.track("ada", "cart_updated", T0 + 5 * H)
    run(kit, deliverer, T0 + 5 * H + H / 2)
    kit.track("ada", "cart_updated", T0 + 6 * H)
    run(kit, deliverer, T0 + 6 * H + H / 2)
    kit.track("ada", "page_viewed", T0 + 7 * H, mid="p9")
    run(kit, deliverer, T0 + 7 * H + H / 2)
    assert outcomes(kit) == [
        ("news", "sent", None),
        ("news", "sent", None),
        ("news", "suppressed", "frequency_cap"),
        # the cart (priority 10) counts only emails of its own priority or higher ...
        ("cart", "sent", None),
        ("cart", "sent", None),
        ("cart", "suppressed", "frequency_cap"),  # ... and is capped by those
        ("news", "suppressed", "frequency_cap"),  # a low-priority email counts everything
    ]
    assert len(email.messages) == 4


def test_a_webhook_to_the_team_is_neither_capped_nor_kept_for_the_morning(db: Engine, tmp_path: Path) -> None:
    kit, deliverer, email = shop(db, tmp_path)
    night = utc("2026-11-02T23:00:00")  # 23:00 for Ada: her quiet hours
    for i in range(2):
        kit.track("ada", "page_viewed", T0 + i * H, mid=f"p{i}")
        run(kit, deliverer, T0 + i * H + H / 2)
    kit.track("ada", "survey_answered", night - H / 2, score=2)
    kit.track("ada", "page_viewed", night - H / 2, mid="p-night")
    run(kit, deliverer, night)
    assert outcomes(kit) == [
        ("news", "sent", None),
        ("news", "sent", None),
        ("alert", "sent", None),  # at 23:00 and past the cap: the team hears now
        ("news", "suppressed", "frequency_cap"),  # the customer's cap is still full
    ]
    [hook] = list((tmp_path / "hooks").glob("*.json"))
    assert json.loads(hook.read_text())["payload"] == {"customer": "ada"}
