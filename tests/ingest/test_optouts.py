"""Opt-outs that arrive as events: the shop's own `unsubscribed` event stops marketing at once."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select

from engine.db.schema import customers, sends, unsubscribes
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import ROOT, utc

T0 = utc("2026-11-01T10:00:00")

NEWS = """
id: news
topic: newsletter
trigger: {event: cart_updated}
conditions:
  - {subscribed: email}
steps:
  - send: cart_reminder
"""


def shop(db: Engine, tmp_path: Path) -> tuple[Kit, Settings]:
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE, NEWS)
    settings = Settings(
        database_url=str(db.url),
        email_url=f"file://{tmp_path / 'outbox'}",
        rules_dir=tmp_path / "rules",
        templates_dir=ROOT / "message_templates",
        secret_key="test-secret",
    )
    kit.tick(T0 - 2 * H)
    for cid in ("ada", "bob"):
        kit.identify(cid, T0 - H, first_name=cid.title())
        kit.track(
            cid,
            "cart_updated",
            T0,
            items=[{"name": "Shoe", "price": 9.0, "qty": 1, "url": "https://shop.example.com/p/1"}],
        )
    return kit, settings


def outcomes(kit: Kit) -> list[tuple[str, str, str, str | None]]:
    """(rule, customer, status, reason) of every ledger row."""
    with kit.engine.connect() as conn:
        rows = conn.execute(
            select(sends.c.rule_id, customers.c.external_id, sends.c.status, sends.c.reason)
            .join(customers, customers.c.id == sends.c.customer_id)
            .order_by(sends.c.id)
        )
        return [(r.rule_id, r.external_id, r.status, r.reason) for r in rows]


def test_an_unsubscribed_event_from_the_shop_stops_sends_already_scheduled(
    db: Engine, tmp_path: Path
) -> None:
    kit, settings = shop(db, tmp_path)
    kit.tick(T0 + 2 * H)  # both reminders are due now
    kit.track("ada", "unsubscribed", T0 + 2 * H, mid="shop-unsub-1", channel="email")
    deliverer = Deliverer.create(kit.engine, settings, kit.ruleset)
    dispatch_due(kit.engine, settings, now=T0 + 2 * H, deliverer=deliverer)
    got = outcomes(kit)
    assert ("cart_abandonment", "ada", "suppressed", "unsubscribed") in got
    assert ("cart_abandonment", "bob", "sent", None) in got
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == sum(1 for r in got if r[2] == "sent")
    assert all(r[1] == "bob" for r in got if r[2] == "sent")
    with kit.engine.connect() as conn:
        [row] = conn.execute(select(unsubscribes)).all()
    assert (row.channel, row.topic, row.source) == ("email", "*", "event")


def test_an_unsubscribed_event_for_a_topic_leaves_the_other_topics(db: Engine, tmp_path: Path) -> None:
    kit, settings = shop(db, tmp_path)
    kit.track("ada", "unsubscribed", T0 - H / 2, topic="newsletter")
    kit.tick(T0 + 2 * H)
    deliverer = Deliverer.create(kit.engine, settings, kit.ruleset)
    dispatch_due(kit.engine, settings, now=T0 + 2 * H, deliverer=deliverer)
    got = outcomes(kit)
    # the newsletter's `subscribed: email` condition keeps ada out; the cart reminder still goes
    assert [r for r in got if r[1] == "ada"] == [("cart_abandonment", "ada", "sent", None)]
    assert ("news", "bob", "sent", None) in got


def test_the_same_unsubscribed_event_sent_again_after_a_resubscribe_changes_nothing(
    db: Engine, tmp_path: Path
) -> None:
    from engine.consent import save_preferences

    kit, _settings = shop(db, tmp_path)
    kit.track("ada", "unsubscribed", T0, mid="shop-unsub-7")
    ada = customer_id(kit, "ada")
    assert opt_outs(kit) == [(ada, "email", "*")]
    # ada ticks "email" on the preferences page; then the shop's outbox retries the old event
    assert save_preferences(kit.engine, ada, email=True, wanted=set(), topics={}, now=T0 + H)
    assert opt_outs(kit) == []
    kit.track("ada", "unsubscribed", T0, mid="shop-unsub-7")
    kit.ingest(
        {
            "type": "track",
            "customer_id": "ada",
            "event": "unsubscribed",
            "timestamp": "2026-11-01T10:00:00Z",
            "message_id": "shop-unsub-7",
            "properties": {},
        },
        {
            "type": "track",
            "customer_id": "bob",
            "event": "unsubscribed",
            "timestamp": "2026-11-01T10:00:00Z",
            "message_id": "shop-unsub-8",
            "properties": {},
        },
    )
    # ada stays subscribed; bob's new event in the same batch still counts
    assert opt_outs(kit) == [(customer_id(kit, "bob"), "email", "*")]


def customer_id(kit: Kit, cid: str) -> int:
    with kit.engine.connect() as conn:
        return int(conn.execute(select(customers.c.id).where(customers.c.external_id == cid)).scalar_one())


def opt_outs(kit: Kit) -> list[tuple[int, str, str]]:
    with kit.engine.connect() as conn:
        rows = conn.execute(select(unsubscribes.c.customer_id, unsubscribes.c.channel, unsubscribes.c.topic))
        return sorted(tuple(r) for r in rows)  # type: ignore[misc]


def test_an_opt_out_of_a_rule_id_keeps_holding_once_the_rule_has_a_topic(db: Engine, tmp_path: Path) -> None:
    """Before topics, the preference page listed rules: a customer who unticked 'cart_abandonment'
    has an opt-out of that name. Giving the rule a topic must not mail them again."""
    kit, settings = shop(db, tmp_path)
    kit.tick(T0 + 2 * H)  # both reminders are scheduled, due now
    kit.rules(CART_RULE + "topic: carts\n", NEWS, settings="topics: {carts: Your cart, newsletter: News}\n")
    with kit.engine.begin() as conn:
        conn.execute(
            unsubscribes.insert().values(
                customer_id=customer_id(kit, "ada"), channel="email", topic="cart_abandonment", at=T0
            )
        )
    dispatch_due(
        kit.engine, settings, now=T0 + 2 * H, deliverer=Deliverer.create(kit.engine, settings, kit.ruleset)
    )
    got = [r for r in outcomes(kit) if r[0] == "cart_abandonment"]
    assert ("cart_abandonment", "ada", "suppressed", "unsubscribed") in got
    assert ("cart_abandonment", "bob", "sent", None) in got
