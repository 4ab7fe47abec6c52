"""`journey preview` and `journey send-test`, from the outside, on both databases: the preview says
which event it used (the kind the template's rule is triggered by), webhooks preview their JSON,
and a test message reaches a real SMTP server while the ledger stays untouched."""

from __future__ import annotations

import json
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from engine.cli import main
from engine.db.schema import events, sends
from tests.support.hooks import Hooks
from tests.support.kit import H, Kit, iso
from tests.support.services import ROOT, utc
from tests.support.smtp import smtp_server

T0 = utc("2026-10-30T10:00:00")
CART = [{"name": "Day pack", "price": 79.0, "qty": 2, "url": "https://shop.example.com/p/31"}]


@pytest.fixture
def shop(db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kit:
    """The shipped rules and templates, and customers who did a few things."""
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    monkeypatch.setenv("JOURNEY_EMAIL_URL", f"file://{tmp_path / 'outbox'}")
    monkeypatch.setenv("JOURNEY_SECRET_KEY", "k")
    monkeypatch.delenv("JOURNEY_BROKER_URL", raising=False)
    kit = Kit(db, tmp_path)
    kit.identify("bo", T0, first_name="Bo", locale="en-GB")
    kit.track("bo", "cart_updated", T0 + H, mid="cart-1", items=[CART[0] | {"qty": 1}])
    kit.track("bo", "cart_updated", T0 + 2 * H, mid="cart-2", items=CART)
    kit.track("bo", "product_viewed", T0 + 3 * H, mid="view-1", name="Rain shell")  # the latest event
    kit.track("bo", "survey_answered", T0 + 4 * H, mid="nps-1", survey="nps", score=9)
    kit.identify("zoe", T0, first_name="Zoé", locale="fr-CA")
    kit.track("zoe", "survey_answered", T0 + H, mid="nps-2", survey="nps", score=3, comment="Too slow")
    return kit


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_preview_uses_the_event_the_templates_rule_is_triggered_by_and_says_which(
    shop: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "preview", "cart_reminder", "--customer", "bo", "--now", iso(T0 + 5 * H))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Template: cart_reminder (email), as rule cart_abandonment sends it"
    assert lines[1] == (
        f"Event: cart_updated at {iso(T0 + 2 * H)}, message_id cart-2 of bo, their latest cart_updated: "
        "the event that triggers rule cart_abandonment"
    )
    assert "Subject: Bo, you left something in your cart" in out
    assert "- Day pack (2 × €79.00)" in out  # not the product view that came after


def test_preview_takes_a_chosen_event_and_refuses_one_the_customer_does_not_have(
    shop: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "preview", "cart_reminder", "--customer", "bo", "--event", "cart-1")
    assert code == 0
    assert f"Event: cart_updated at {iso(T0 + H)}, message_id cart-1 of bo, as asked (--event)" in out
    assert "- Day pack (1 × €79.00)" in out
    code, _, err = run(capsys, "preview", "cart_reminder", "--customer", "bo", "--event", "nps-2")
    assert code == 1 and "customer 'bo' has no event with message_id 'nps-2'" in err  # zoe's, not bo's
    code, _, err = run(capsys, "preview", "cart_reminder", "--customer", "bo", "--event", "x", "--sample")
    assert code == 1 and "--event and --sample exclude each other" in err


def test_a_template_of_a_rule_without_a_trigger_event_previews_without_one(
    shop: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "preview", "winback_1", "--customer", "bo")
    assert code == 0
    assert "Event: none: rule winback is triggered by stage_entered lapsed, which carries no event" in out
    code, out, _ = run(capsys, "preview", "nps_survey", "--customer", "zoe")
    assert "Event: none: zoe has no order_placed yet, so the template sees no event" in out


def test_a_webhook_template_previews_its_json_and_where_it_would_post(
    shop: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "preview", "team_alert", "--customer", "zoe")
    assert code == 0
    head, _, body = out.partition("Content-Type: application/json\n")
    assert "Template: team_alert (webhook), as rule detractor_recovery sends it" in head
    assert "their matching survey_answered" in head and "message_id nps-2" in head
    assert "POST http://localhost:8000/hooks/team" in head
    payload = json.loads(body)
    assert payload["score"] == 3 and payload["comment"] == "Too slow" and payload["customer"] == "zoe"
    # bo's only answer is a 9: it does not match the rule's `where: {score: {lte: 6}}`
    code, out, _ = run(capsys, "preview", "team_alert", "--customer", "bo")
    assert "bo has no survey_answered that matches the trigger yet" in out


def test_preview_writes_the_html_to_a_file_and_renders_other_locales(
    shop: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "welcome.html"
    code, out, err = run(capsys, "preview", "welcome_1", "--customer", "zoe", "--html", str(page))
    assert code == 0
    assert "Locale: fr (the customer's fr-CA)" in out and "Subject: Bienvenue, Zoé : tout commence ici" in out
    assert (
        page.read_text().startswith('<!DOCTYPE html><html lang="fr">') and "Se désabonner" in page.read_text()
    )
    assert f"HTML written to {page}" in err
    code, out, _ = run(capsys, "preview", "welcome_1", "--customer", "zoe", "--locale", "en", "--text-only")
    assert "Hi Zoé," in out and "Welcome to Journey Shop" in out
    code, out, _ = run(capsys, "preview", "cart_reminder", "--sample")
    assert code == 0 and "Event: a sample cart_updated (--sample)" in out and "- Trail runner" in out
    code, _, err = run(capsys, "preview", "cart_reminder")
    assert code == 1 and "--customer ID (or --sample for sample data)" in err


def decoded(msg: Message, name: str) -> str:
    return str(make_header(decode_header(str(msg[name]))))


def counts(db: Engine) -> tuple[int, int]:
    with db.connect() as conn:
        ledger = conn.execute(select(func.count()).select_from(sends)).scalar_one()
        sent = conn.execute(select(func.count()).where(events.c.name == "email_sent")).scalar_one()
    return int(ledger), int(sent)


def test_send_test_reaches_the_smtp_server_marked_as_a_test_and_leaves_the_ledger_untouched(
    shop: Kit, db: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server() as (recorder, port):
        monkeypatch.setenv("JOURNEY_EMAIL_URL", f"smtp://127.0.0.1:{port}")
        code, out, err = run(
            capsys, "send-test", "cart_reminder", "--to", "marketer@example.com", "--customer", "bo"
        )
        assert code == 0, err
    (msg,) = recorder.messages
    assert decoded(msg, "Subject") == "[test] Bo, you left something in your cart"
    assert msg["To"] == "marketer@example.com" and msg["X-Journey-Test"] == "yes"
    assert str(msg["X-Journey-Send-Key"]).startswith("test:cart_reminder:")
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    assert "- Day pack (2 × €79.00)" in text.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "sent '[test] Bo, you left something in your cart' to marketer@example.com" in out
    assert counts(db) == (0, 0)  # no ledger row, no email_sent: no cap, no report counts it


def test_send_test_of_a_webhook_posts_its_json_to_the_url_given(
    shop: Kit, db: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with Hooks() as hooks:
        code, out, err = run(
            capsys, "send-test", "team_alert", "--to", f"{hooks.url}/alerts", "--customer", "zoe"
        )
        assert code == 0, err
    ((path, headers, body),) = hooks.requests
    assert path == "/alerts" and json.loads(body)["score"] == 3
    assert headers["Idempotency-Key"].startswith("test:team_alert:")
    assert counts(db) == (0, 0)


def test_send_test_says_why_it_could_not_send(
    shop: Kit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "send-test", "cart_reminder", "--to", "not an address")
    assert code == 1 and "--to 'not an address' is not an email address" in err
    code, _, err = run(capsys, "send-test", "team_alert", "--to", "me@example.com")
    assert code == 1 and "'team_alert' is a webhook: --to takes the URL to post to" in err
    monkeypatch.setenv("JOURNEY_EMAIL_URL", "smtp://127.0.0.1:9")  # nothing listens there
    code, _, err = run(capsys, "send-test", "welcome_1", "--to", "me@example.com")
    assert code == 1 and err.startswith("error: the test message was not sent:")
    assert "Traceback" not in err


def test_preview_of_a_template_with_a_misspelt_variable_says_where_and_what_was_meant(
    shop: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "message_templates", templates)
    (templates / "cart_reminder.txt.j2").write_text("Hi {{ customer.first_name }},\n{{ customer.lcoale }}\n")
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(templates))
    code, _, err = run(capsys, "preview", "cart_reminder", "--customer", "bo", "--now", iso(T0 + 5 * H))
    assert code == 1
    assert err == (
        "error: cart_reminder.txt.j2:2: undefined variable: 'dict object' has no attribute 'lcoale' "
        "(did you mean 'locale'?)\n"
    )
