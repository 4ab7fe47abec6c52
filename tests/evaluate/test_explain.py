"""`journey explain` and `journey preview`, as a marketer reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from engine.cli import main
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import ROOT, utc

T0 = utc("2026-11-01T10:00:00")


@pytest.fixture
def kit(db: Engine, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Kit:
    k = Kit(db, tmp_path)
    k.rules(
        CART_RULE,
        """
id: vip
trigger: {event: order_placed}
conditions:
  - {attribute: plan, eq: gold}
steps:
  - send: vip_thanks
""",
    )
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(tmp_path / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(tmp_path / "templates"))
    return k


def test_explain_says_why_each_rule_fires_waits_or_not(kit: Kit, capsys: pytest.CaptureFixture[str]) -> None:
    kit.tick(T0 - H)
    kit.identify("ada", T0 - H, first_name="Ada", plan="silver")
    kit.track("ada", "cart_updated", T0)
    kit.tick(T0 + 30 * (H / 60))
    assert main(["explain", "ada", "--now", "2026-11-01T10:30:00Z"]) == 0
    out = capsys.readouterr().out
    assert "customer ada: stage decision" in out
    assert "✓ event cart_updated within 14d" in out
    assert "fires at 2026-11-01T11:00:00+00:00 unless order_placed or cart_cleared" in out
    assert "rule vip: not firing" in out and "✗ trigger: has never done order_placed" in out
    assert "✗ attribute plan eq 'gold'" in out
    kit.tick(T0 + 2 * H)
    assert main(["explain", "ada", "--now", "2026-11-01T12:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "rule cart_abandonment: waiting" in out
    assert "next step 2: send cart_last_chance by email, at 2026-11-02T10:00:00+00:00" in out
    assert "send cart_reminder [0]: due" in out
    assert main(["explain", "nobody"]) == 1
    assert "no customer 'nobody'" in capsys.readouterr().err


def test_preview_prints_subject_headers_and_both_bodies(
    kit: Kit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    monkeypatch.setenv("JOURNEY_SECRET_KEY", "k")
    kit.identify("bo", T0, first_name="Bo")
    kit.track("bo", "cart_updated", T0, items=[{"name": "Day pack", "price": 79.0, "qty": 2}])
    assert main(["preview", "cart_reminder", "--customer", "bo"]) == 0
    out = capsys.readouterr().out
    assert "Subject: Bo, you left something in your cart" in out
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in out
    assert "- Day pack (2 × 79.00)" in out and "----- html -----" in out
    assert main(["preview", "no_such_template", "--customer", "bo"]) == 1
    assert "no template 'no_such_template'" in capsys.readouterr().err


def test_explain_says_when_the_address_is_suppressed_and_what_that_stops(
    kit: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    kit.identify("bo", T0 - H, first_name="Bo")
    assert main(["explain", "bo", "--now", "2026-11-01T10:30:00Z"]) == 0
    assert "suppressed" not in capsys.readouterr().out
    assert main(["suppressions", "add", "BO@Example.com", "--reason", "complaint"]) == 0
    capsys.readouterr()
    assert main(["explain", "bo", "--now", "2026-11-01T10:30:00Z"]) == 0
    out = capsys.readouterr().out
    assert "address suppressed (complaint, from cli)" in out
    assert "this stops marketing email (transactional still goes)" in out
