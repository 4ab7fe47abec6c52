"""The shipped journeys, end to end: the demo sends each journey to the right customers only."""

from __future__ import annotations

import email
import html
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.cli import main
from engine.db import make_engine
from engine.db.schema import customers, enrollments, events, sends, ticks
from engine.delivery.deliverer import Deliverer
from engine.delivery.mime import build_email, send_key
from engine.delivery.money import format_money
from engine.rules.loader import load_ruleset
from tests.support.services import ROOT

#: the demo of a whole shop, once per session
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`journey demo` at small size, run once for the module."""
    import os

    work = tmp_path_factory.mktemp("demo")
    old = os.getcwd()
    env = {"JOURNEY_RULES_DIR": str(ROOT / "rules"), "JOURNEY_TEMPLATES_DIR": str(ROOT / "message_templates")}
    saved = {k: os.environ.get(k) for k in (*env, "JOURNEY_DATABASE_URL", "JOURNEY_EMAIL_URL")}
    os.environ.update(env)
    os.environ.pop("JOURNEY_DATABASE_URL", None)
    os.environ.pop("JOURNEY_EMAIL_URL", None)
    os.chdir(work)
    try:
        assert main(["demo", "--customers", "700", "--days", "60", "--seed", "3"]) == 0
    finally:
        os.chdir(old)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return work


def test_every_journey_reaches_the_right_customers_and_only_them(demo_db: Path) -> None:
    engine = make_engine(f"sqlite:///{demo_db / 'journey.db'}")
    ruleset = load_ruleset(ROOT / "rules", ROOT / "message_templates")
    transactional = {r.id for r in ruleset.rules if r.transactional}
    with engine.connect() as conn:
        sent = conn.execute(
            select(sends.c.rule_id, sends.c.template, sends.c.customer_id, sends.c.sent_at).where(
                sends.c.status == "sent"
            )
        ).all()
        history: dict[int, list[tuple[str, datetime, dict[str, Any]]]] = defaultdict(list)
        for cid, name, ts, props in conn.execute(
            select(events.c.customer_id, events.c.name, events.c.ts, events.c.properties).order_by(
                events.c.ts
            )
        ):
            history[cid].append((name, ts, props or {}))
        holdout = {
            r[0]
            for r in conn.execute(
                select(enrollments.c.customer_id).where(
                    enrollments.c.rule_id == "winback", enrollments.c.variant == "holdout"
                )
            )
        }
        first_tick, last_tick = conn.execute(select(func.min(ticks.c.now), func.max(ticks.c.now))).one()
    # the customer's own word, as the shop's events say it (not only what the engine recorded)
    opted_out = {
        cid: min(ts for name, ts, _ in h if name == "unsubscribed")
        for cid, h in history.items()
        if any(name == "unsubscribed" for name, _, _ in h)
    }
    by_rule: dict[str, int] = defaultdict(int)
    for rule, template, cid, at in sent:
        by_rule[rule] += 1
        h = history[cid]
        if rule == "cart_abandonment":  # reminder and last chance: never after the cart was bought
            last_cart = max(ts for name, ts, _ in h if name == "cart_updated" and ts <= at)
            bought = [ts for name, ts, _ in h if name == "order_placed" and last_cart < ts <= at]
            assert not bought, (cid, template, "sent after the customer bought")
        if rule == "referral_invite":
            scores = [p["score"] for name, ts, p in h if name == "survey_answered" and ts <= at]
            assert scores and scores[-1] >= 9, (cid, "not a promoter")
        if rule == "detractor_recovery":
            scores = [p["score"] for name, ts, p in h if name == "survey_answered" and ts <= at]
            assert scores and scores[-1] <= 6, (cid, "not a detractor")
        if rule == "winback":
            assert cid not in holdout, (cid, "held out, yet mailed")
        if cid in opted_out and rule not in transactional and template != "team_alert":
            assert at < opted_out[cid], (cid, rule, "mailed after unsubscribing")
    for rule in (
        "welcome_series",
        "browse_abandonment",
        "cart_abandonment",
        "order_thanks",
        "order_followup",
        "replenishment",
        "loyalty_milestone",
        "winback",
        "referral_invite",
        "detractor_recovery",
    ):
        assert by_rule[rule] > 0, f"{rule} sent nothing"
    assert opted_out  # the generated shop has unsubscribers, and they were honoured above
    # every order the ticks saw was thanked, once
    thanked: dict[int, int] = defaultdict(int)
    for rule, _, cid, _ in sent:
        if rule == "order_thanks":
            thanked[cid] += 1
    orders: dict[int, int] = defaultdict(int)
    for cid, h in history.items():
        orders[cid] += sum(1 for name, ts, _ in h if name == "order_placed" and first_tick < ts <= last_tick)
    assert {c: n for c, n in orders.items() if n} == dict(thanked)
    emls = list(demo_db.glob("outbox/*.eml"))
    assert len(emls) == sum(1 for r in sent if not r.template.startswith("team_"))
    assert list(demo_db.glob("outbox/webhooks/*.json"))


def test_every_shipped_template_renders_for_a_generated_customer(demo_db: Path) -> None:
    engine = make_engine(f"sqlite:///{demo_db / 'journey.db'}")
    ruleset = load_ruleset(ROOT / "rules", ROOT / "message_templates")
    from engine.delivery.context import context_for, signer_for
    from engine.settings import Settings

    settings = Settings(database_url=str(engine.url), base_url="https://shop.example.com", secret_key="k")
    deliverer = Deliverer.create(engine, settings, ruleset, channels={})
    with engine.connect() as conn:
        customer = conn.execute(select(customers).where(customers.c.email.is_not(None)).limit(1)).first()
        event = conn.execute(select(events).where(events.c.name == "order_placed").limit(1)).first()
        assert customer is not None and event is not None
        for rule in ruleset.rules:
            from engine.rules.walk import iter_sends

            for step in iter_sends(list(rule.steps)):
                ctx = context_for(
                    conn,
                    settings,
                    signer_for(settings, engine),
                    send_id=1,
                    rule_id=rule.id,
                    customer=customer,
                    event=event,
                    description=rule.description,
                    now=event.ts,
                )
                if step.channel == "webhook":
                    body = deliverer.templates.render_json(step.template, ctx)
                    assert body["customer"] == customer.external_id
                    continue
                rendered = deliverer.templates.render(
                    step.template, ctx, subject=step.subject, blocks=step.blocks
                )
                # every email has its subject as its HTML title; prices carry the shop's currency
                assert rendered.html is not None
                title = re.search(r"<title>(.*?)</title>", rendered.html)
                assert title is not None and html.unescape(title.group(1)) == rendered.subject, step.template
                if step.template == "order_thanks":
                    total = format_money(event.properties["value"], "EUR")
                    assert f"Order total: {total}" in rendered.html and "× €" in rendered.html
                if step.subject is not None:  # the winback subject test
                    assert rendered.subject.endswith("your gear is repaired free, for life")
                msg = build_email(
                    rendered=rendered,
                    mail_from=settings.mail_from,
                    to_email=customer.email,
                    to_name=customer.first_name,
                    key=send_key(rule.id, "0", customer.id, 1),
                    rule_id=rule.id,
                    unsubscribe_url=ctx["links"].unsubscribe,
                    date=event.ts,
                )
                parsed = email.message_from_bytes(msg.as_bytes())
                assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                assert parsed["List-Unsubscribe"].startswith("<https://shop.example.com/u/")
                text = rendered.text
                assert "Unsubscribe" in text and "https://shop.example.com/u/" in text, step.template
                assert settings.postal_address in text
                assert "{{" not in text and "<" not in text.replace("<http", ""), step.template
                assert rendered.subject and "\n" not in rendered.subject


def test_the_demo_readers_open_and_click_only_emails_they_were_sent(demo_db: Path) -> None:
    engine = make_engine(f"sqlite:///{demo_db / 'journey.db'}")
    with engine.connect() as conn:
        sent = {
            r.id: (r.customer_id, r.sent_at)
            for r in conn.execute(
                select(sends.c.id, sends.c.customer_id, sends.c.sent_at).where(
                    sends.c.status == "sent", sends.c.channel == "email"
                )
            )
        }
        engaged = conn.execute(
            select(events.c.name, events.c.customer_id, events.c.ts, events.c.properties).where(
                events.c.name.in_(["email_opened", "email_clicked"])
            )
        ).all()
    engine.dispose()
    opened = [e for e in engaged if e.name == "email_opened"]
    clicked = [e for e in engaged if e.name == "email_clicked"]
    assert 0.2 * len(sent) < len(opened) < 0.7 * len(sent)  # a plausible open rate
    assert 0 < len(clicked) < len(opened)
    for e in engaged:
        customer, at = sent[e.properties["send_id"]]
        assert e.customer_id == customer and e.ts > at  # read by its recipient, after it was sent
