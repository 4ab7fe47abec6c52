"""Feedback inside a journey: a message a real SMTP server accepted bounces later and the journey's
next step is not sent; the reserved events drive triggers, conditions, `until` and `exit_on`; a
report about an erased customer records nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from engine.db.schema import customers, enrollments
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.http.app import create_app
from engine.privacy import erase
from engine.settings import Settings
from tests.support.feedback import Keys, Sent, filled, request
from tests.support.feedback_shop import T0, Hooks, sns_stand_in
from tests.support.kit import CART_RULE, D, H, Kit
from tests.support.smtp import Recorder, smtp_server


@pytest.fixture
def smtp_shop(db: Engine, tmp_path: Path, keys: Keys) -> Iterator[tuple[Kit, Settings, Recorder, TestClient]]:
    with smtp_server() as (recorder, port):
        kit = Kit(db, tmp_path)
        kit.rules(CART_RULE)
        settings = Settings(
            database_url=str(db.url),
            email_url=f"smtp://127.0.0.1:{port}",
            rules_dir=tmp_path / "rules",
            templates_dir=tmp_path / "templates",
            secret_key="test-secret",
            **keys.settings(),
        )
        kit.tick(T0 - H)
        app = create_app(settings, engine=db, now=lambda: T0 + 3 * H, sns_get=sns_stand_in(keys, []))
        with TestClient(app) as client:
            yield kit, settings, recorder, client


def deliver(kit: Kit, settings: Settings, at: datetime) -> None:
    kit.tick(at)
    dispatch_due(kit.engine, settings, now=at, deliverer=Deliverer.create(kit.engine, settings, kit.ruleset))


@pytest.mark.parametrize("provider", ["ses", "mailgun"])
def test_a_message_the_smtp_server_accepted_bounces_later_and_the_next_step_is_not_sent(
    smtp_shop: tuple[Kit, Settings, Recorder, TestClient], keys: Keys, provider: str
) -> None:
    kit, settings, smtp, client = smtp_shop
    kit.identify("ada", T0 - H)
    kit.track("ada", "cart_updated", T0)
    deliver(kit, settings, T0 + 2 * H)
    [msg] = smtp.messages  # the server answered 250
    sent = Sent.of(msg)  # what the relay keeps of it: the metadata headers, the Message-ID
    assert msg["X-SES-MESSAGE-TAGS"] == f"journey_send_key={sent.token}"
    body, headers = request(
        provider, filled(provider, "hard_bounce", sent, T0 + 2 * H + H / 6), keys, T0 + 3 * H
    )
    assert client.post(f"/feedback/{provider}", content=body, headers=headers).json()["recorded"] == 1
    deliver(kit, settings, T0 + 25 * H)
    assert kit.sends() == [("ada", "cart_reminder", "sent"), ("ada", "cart_last_chance", "suppressed")]
    assert len(smtp.messages) == 1


WATCHES = """
rules:
  - id: undelivered_watch
    description: An email with no delivery report a day later.
    trigger: {inactivity: {event: email_sent, until: [email_delivered, email_bounced], for: 1d}}
    steps: [{wait: 30d}]
  - id: soft_bounce_followup
    description: A soft bounce of someone whose email was delivered before.
    trigger: {event: email_bounced, where: {type: soft}}
    conditions: [{event: email_delivered}]
    steps: [{wait: 30d}]
  - id: complaint_exit
    trigger: {event: cart_updated}
    steps: [{wait: 2d}, {send: cart_last_chance}]
    exit_on: [email_complained]
"""


def test_the_reserved_events_drive_triggers_conditions_until_and_exit_on(hooks: Hooks) -> None:
    hooks.kit.rules(CART_RULE, WATCHES)
    ada, bea, cy, _ = hooks.cart_reminders("ada", "bea", "cy", "di")
    at = T0 + 2 * H + H / 6
    hooks.post("ses", "delivered", ada, at)
    hooks.post("ses", "delivered", cy, at)
    hooks.post("mailgun", "soft_bounce", cy, at + H)  # delivered before: a follow-up
    hooks.post("mailgun", "soft_bounce", bea, at + H)  # never delivered: no follow-up
    hooks.post("postmark", "complaint", ada, at + H)  # leaves the rule that waits two days
    hooks.kit.tick(T0 + 2 * D)
    entered: dict[str, dict[str, str]] = {}
    with hooks.engine.connect() as conn:
        for rule, cid, status in conn.execute(
            select(customers.c.external_id, enrollments.c.rule_id, enrollments.c.status)
            .join(customers, customers.c.id == enrollments.c.customer_id)
            .with_only_columns(enrollments.c.rule_id, customers.c.external_id, enrollments.c.status)
        ):
            entered.setdefault(rule, {})[cid] = status
    # Di's reminder has had neither a delivery nor a bounce report for a day
    assert set(entered["undelivered_watch"]) == {"di"}
    assert set(entered["soft_bounce_followup"]) == {"cy"}
    assert entered["complaint_exit"] == {"ada": "exited", "bea": "done", "cy": "done", "di": "done"}
    assert sorted(c for c, _, _ in hooks.kit.sends("complaint_exit")) == ["bea", "cy", "di"]


def test_a_report_about_an_erased_customer_records_nothing(hooks: Hooks) -> None:
    sent = hooks.cart_reminder("ada")
    erase(hooks.engine, "ada", now=T0 + 3 * H)
    before = hooks.recorded()
    r = hooks.post("ses", "complaint", sent, T0 + 3 * H)
    assert r.json()["erased"] == 1
    assert hooks.recorded() == before
    assert hooks.suppressions() == {None: ("erased", "erasure")}
