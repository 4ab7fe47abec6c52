"""Subject and block variants without copies: `send: {template: NAME, subject: "…", blocks: {…}}`,
prices in the shop's currency, and the subject as the HTML `<title>`."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from engine.db.schema import customers, enrollments
from engine.delivery.channels.stub import StubEmailChannel, StubWebhookChannel
from engine.delivery.checks import check_all, sample_context
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.delivery.money import format_money
from engine.delivery.render import Templates
from engine.errors import RuleError, TemplateError
from engine.rules.loader import load_ruleset
from engine.settings import Settings
from tests.support.kit import STAGES, H, Kit
from tests.support.services import utc

T0 = utc("2026-11-02T10:00:00")

SPLIT_RULE = """
id: subject_test
trigger: {event: signed_up}
steps:
  - split: {plain: 50, named: 50}
    variants:
      plain:
        - send: hello
      named:
        - send:
            template: hello
            subject: "{{ customer.first_name }}, a subject of its own"
            blocks: {intro: "<p>Only for {{ customer.first_name }} & co</p>"}
"""

HELLO_SUBJECT = "Hello {{ customer.first_name }}"
HELLO_HTML = """<!doctype html><html><head><title>{{ subject }}</title></head><body>
{% block intro %}<p>The usual intro</p>{% endblock %}
<p>Shoes from {{ 89 | money }}</p></body></html>"""


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def test_a_split_of_two_subjects_sends_one_template_with_each_variant_s_subject(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(SPLIT_RULE, settings="currency: EUR\n")
    (tmp_path / "templates" / "hello.subject.j2").write_text(HELLO_SUBJECT)
    (tmp_path / "templates" / "hello.html.j2").write_text(HELLO_HTML)
    (tmp_path / "templates" / "hello.txt.j2").unlink()
    outbox = StubEmailChannel()
    settings = dataclasses.replace(settings, templates_dir=tmp_path / "templates")
    deliverer = Deliverer.create(
        db, settings, kit.ruleset, channels={"email": outbox, "webhook": StubWebhookChannel()}
    )
    kit.tick(T0 - H)
    names = [f"c{i:02d}" for i in range(24)]
    for cid in names:
        kit.identify(cid, T0, first_name=cid.upper())
        kit.track(cid, "signed_up", T0)
    kit.tick(T0 + H)
    dispatch_due(db, settings, now=T0 + H, deliverer=deliverer)

    with db.connect() as conn:
        variant = dict(
            conn.execute(
                select(customers.c.email, enrollments.c.variant).join(
                    enrollments, enrollments.c.customer_id == customers.c.id
                )
            ).all()
        )
    assert set(variant.values()) == {"plain", "named"}  # 24 customers fall on both sides
    assert len(outbox.messages) == len(names)
    for sent in outbox.messages:
        msg = parse(sent.raw)
        first = sent.recipient.split("@")[0].upper()
        page = html_of(msg)
        if variant[sent.recipient] == "named":
            assert msg["Subject"] == f"{first}, a subject of its own"
            assert f"Only for {first} &amp; co" in page and "The usual intro" not in page
        else:
            assert msg["Subject"] == f"Hello {first}"
            assert "The usual intro" in page and "Only for" not in page
        # the subject is the page's title, and prices carry the shop's currency
        assert f"<title>{msg['Subject']}</title>" in page
        assert "Shoes from €89.00" in page


def test_rules_check_renders_each_override_and_locates_its_mistakes(tmp_path: Path) -> None:
    rules, templates = tmp_path / "rules", tmp_path / "templates"
    rules.mkdir()
    templates.mkdir()
    (rules / "stages.yaml").write_text(STAGES)
    (templates / "hello.subject.j2").write_text(HELLO_SUBJECT)
    (templates / "hello.html.j2").write_text(HELLO_HTML)
    (rules / "subject_test.yaml").write_text(SPLIT_RULE)
    problems, summary = check_all(rules, templates)
    assert problems == [] and summary.startswith("ok:")

    (rules / "subject_test.yaml").write_text(
        SPLIT_RULE.replace("customer.first_name }}, a", "customer.first_nam }}, a")
    )
    (problem,) = check_all(rules, templates)[0]
    assert str(problem) == (
        f"{rules}/subject_test.yaml:12:22: undefined variable: 'customer' has no attribute 'first_nam' "
        "(in subject override of hello)"
    )

    (rules / "subject_test.yaml").write_text(SPLIT_RULE.replace("blocks: {intro:", "blocks: {outro:"))
    (problem,) = check_all(rules, templates)[0]
    assert (problem.line, problem.message) == (
        13,
        "template 'hello' has no block 'outro' (its blocks: intro)",
    )

    (rules / "subject_test.yaml").write_text(SPLIT_RULE.replace("{{ customer.first_name }} & co", "{% if %}"))
    (problem,) = check_all(rules, templates)[0]
    assert problem.line == 13 and "syntax error" in problem.message

    (rules / "subject_test.yaml").write_text(SPLIT_RULE.replace("subject: ", "subjet: "))
    with pytest.raises(
        RuleError, match=r"subject_test.yaml:12:13: unknown key 'subjet' \(did you mean 'subject'"
    ):
        load_ruleset(rules, templates)


def test_a_plain_send_name_still_works_and_webhooks_take_no_subject(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "stages.yaml").write_text(STAGES)
    (rules / "r.yaml").write_text(
        "id: r\ntrigger: {event: x}\nsteps:\n  - send: hello\n  - send: {template: hook, subject: Hi}\n"
        "    channel: webhook\n"
    )
    with pytest.raises(RuleError, match="r.yaml:5:5: a webhook has no subject or blocks"):
        load_ruleset(rules)
    (rules / "r.yaml").write_text("id: r\ntrigger: {event: x}\nsteps:\n  - send: {template: hello}\n")
    (step,) = load_ruleset(rules).rules[0].steps
    assert (step.template, step.subject, step.blocks) == ("hello", None, {})  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        (89, "EUR", "€89.00"),
        (1250.5, "USD", "$1,250.50"),
        ("19.9", "gbp", "£19.90"),
        (900, "JPY", "¥900"),
        (89, "SEK", "SEK\u00a089.00"),
        (-5, "EUR", "-€5.00"),
        (89, None, "89.00"),
        ("n/a", "EUR", "n/a"),
    ],
)
def test_money_is_written_with_the_currency_s_symbol_and_decimals(
    value: object, currency: str | None, shown: str
) -> None:
    assert format_money(value, currency) == shown


def test_templates_see_the_currency_and_an_order_may_name_its_own(tmp_path: Path) -> None:
    (tmp_path / "t.subject.j2").write_text("{{ 10 | money }} in {{ currency }}")
    (tmp_path / "t.txt.j2").write_text("{{ 10 | money('USD') }}")
    rendered = Templates(tmp_path, currency="EUR").render("t", {})
    assert (rendered.subject, rendered.text) == ("€10.00 in EUR", "$10.00\n")
    with pytest.raises(TemplateError, match="syntax error"):
        Templates(tmp_path).render("t", sample_context(), subject="{% if %}")


def test_a_settings_currency_must_be_an_iso_code(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "stages.yaml").write_text(STAGES)
    (rules / "settings.yaml").write_text("currency: euro\n")
    with pytest.raises(RuleError, match="settings.yaml:1:11: currency must be a three-letter ISO 4217 code"):
        load_ruleset(rules)
    (rules / "settings.yaml").write_text("currency: usd\n")
    assert load_ruleset(rules).settings.currency == "USD"
