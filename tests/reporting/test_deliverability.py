"""Delivered, bounce and complaint rates in `journey report` (text, JSON, HTML), per rule and
overall, with a complaint rate over 0.3% flagged; `journey health` warns about the last day's."""

from __future__ import annotations

import pytest

from engine.cli import main
from engine.reporting.deliverability import Deliverability
from engine.reporting.html import render_html
from engine.reporting.report import build
from engine.reporting.text import render_text
from tests.support.feedback_shop import T0, Hooks
from tests.support.kit import H


def test_the_complaint_rate_is_flagged_above_three_in_a_thousand() -> None:
    assert not Deliverability(emails=1000, complained=3).finish(True).complaint_alert
    assert Deliverability(emails=1000, complained=4).finish(True).complaint_alert
    assert Deliverability(emails=0).finish(True).complaint_rate is None


def reported(hooks: Hooks) -> None:
    """Four reminders: Ada's delivered, Bea's bounced, Cy's delivered and complained of, Di's
    reported by no one (the provider does not report every delivery)."""
    ada, bea, cy, _ = hooks.cart_reminders("ada", "bea", "cy", "di")
    at = T0 + 2 * H
    hooks.post("ses", "delivered", ada, at)
    hooks.post("sendgrid", "hard_bounce", bea, at)
    hooks.post("postmark", "delivered", cy, at)
    hooks.post("mailgun", "complaint", cy, at + H)


def test_the_report_shows_the_rates_per_rule_and_overall_and_flags_complaints(hooks: Hooks) -> None:
    reported(hooks)
    r = build(hooks.engine, hooks.kit.ruleset, now=T0 + 5 * H)
    [cart] = [f for f in r.rules if f.rule == "cart_abandonment"]
    d = cart.deliverability
    assert (d.emails, d.delivered, d.bounced, d.complained) == (4, 2, 1, 1)
    assert (d.delivered_rate, d.bounce_rate, d.complaint_rate, d.complaint_alert) == (0.5, 0.25, 0.25, True)
    assert r.deliverability == d
    text = render_text(r)
    assert "Deliverability: 4 emails; delivered 50.0%, bounced 25.0% (1), complaints" in text
    assert "25.00% (over 0.3%!)" in text
    figures = r.as_dict()
    assert figures["deliverability"]["complaint_alert"] is True
    assert figures["rules"][0]["deliverability"]["bounce_rate"] == 0.25
    page = render_html(r)
    assert '<table id="deliverability">' in page and '<span class="alert">25.00% (over 0.3%!)</span>' in page
    # before the complaint came, nothing was flagged
    earlier = build(hooks.engine, hooks.kit.ruleset, now=T0 + 2 * H + H / 2)
    assert earlier.deliverability.complained == 0 and not earlier.deliverability.complaint_alert
    assert "over 0.3%" not in render_text(earlier) and 'class="alert"' not in render_html(earlier)


def test_health_warns_when_the_last_day_s_complaint_rate_is_over_the_limit(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reported(hooks)
    monkeypatch.setenv("JOURNEY_DATABASE_URL", str(hooks.engine.url))
    monkeypatch.delenv("JOURNEY_BROKER_URL", raising=False)
    main(["health", "--allow-no-tick", "--now", (T0 + 5 * H).isoformat()])
    out = capsys.readouterr().out
    assert "deliverability: WARNING: complaint rate 25.00% over the last day (1 complaints, 4 emails)" in out
    # a day and more later, the last day had no email
    main(["health", "--allow-no-tick", "--now", (T0 + 30 * H).isoformat()])
    assert "deliverability: ok: no email sent in the last day" in capsys.readouterr().out
