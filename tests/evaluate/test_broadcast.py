"""`journey broadcast` (CONTRACT sections 11 and 14): once per member, policies at send time, its
own line in the report; on SQLite and PostgreSQL, through a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from engine.cli import main
from engine.db.schema import customers, sends
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.reporting.html import render_html
from engine.reporting.report import build
from engine.reporting.text import render_text
from engine.settings import Settings
from tests.support.kit import H, Kit
from tests.support.services import utc
from tests.support.smtp import Recorder, smtp_server

T0 = utc("2026-11-01T10:00:00")

SEGMENTS = """
segments:
  - name: buyers
    when: {event: order_placed}
"""


@pytest.fixture
def shop(db: Engine, tmp_path: Path) -> Iterator[tuple[Kit, Settings, Recorder]]:
    kit = Kit(db, tmp_path)
    kit.rules(
        "id: noop\ntrigger: {event: signed_up}\nsteps:\n  - send: hello\n",
        segments=SEGMENTS,
        settings="quiet_hours: '21:00-08:00'\n",
    )
    (tmp_path / "templates" / "newsletter.subject.j2").write_text("News for {{ customer.first_name }}")
    (tmp_path / "templates" / "newsletter.txt.j2").write_text("Hello {{ customer.first_name }}")
    with smtp_server() as (recorder, port):
        settings = Settings(
            database_url=str(db.url),
            email_url=f"smtp://127.0.0.1:{port}",
            rules_dir=tmp_path / "rules",
            templates_dir=tmp_path / "templates",
            secret_key="test-secret",
            base_url="https://shop.example.com",
        )
        kit.tick(T0 - 2 * H)
        for cid, tz in (("ada", "Europe/Berlin"), ("bob", "Europe/Berlin"), ("dee", "America/Los_Angeles")):
            kit.identify(cid, T0 - 2 * H, first_name=cid.title(), timezone=tz)
            kit.track(cid, "order_placed", T0 - H, value=10)
        kit.identify("eve", T0 - 2 * H, first_name="Eve")  # never ordered: not a member
        kit.track("bob", "unsubscribed", T0 - H, channel="email")
        kit.tick(T0)
        yield kit, settings, recorder


def _cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(settings.rules_dir))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(settings.templates_dir))
    return main(list(args))


def test_a_broadcast_run_twice_sends_once_per_member_honouring_opt_outs_and_quiet_hours(
    shop: tuple[Kit, Settings, Recorder],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kit, settings, smtp = shop
    now = "2026-11-01T10:00:00Z"
    args = ("broadcast", "newsletter", "--segment", "buyers", "--id", "nov", "--now", now)
    assert _cli(settings, monkeypatch, *args) == 0
    out = capsys.readouterr()
    assert "broadcast nov: 3 sends scheduled for 3 members" in out.out
    assert "3 of 3 members" in out.err
    assert _cli(settings, monkeypatch, *args) == 0
    assert "broadcast nov was scheduled before: nothing new scheduled" in capsys.readouterr().out

    deliverer = Deliverer.create(kit.engine, settings, kit.ruleset)
    dispatch_due(kit.engine, settings, now=T0, deliverer=deliverer)
    dispatch_due(kit.engine, settings, now=T0 + H, deliverer=deliverer)
    assert sorted(m["To"] for m in smtp.messages) == ["Ada <ada@example.com>"]
    with kit.engine.connect() as conn:
        rows = {
            r.external_id: (r.status, r.reason)
            for r in conn.execute(
                select(customers.c.external_id, sends.c.status, sends.c.reason).join(
                    customers, customers.c.id == sends.c.customer_id
                )
            )
        }
    assert rows["ada"] == ("sent", None)
    assert rows["bob"][0] == "suppressed"
    assert rows["dee"][0] == "due"  # 03:00 in Los Angeles: waits for the end of the quiet hours
    assert "eve" not in rows
    dispatch_due(kit.engine, settings, now=utc("2026-11-01T16:05:00"), deliverer=deliverer)  # 08:05 there
    assert sorted(m["To"] for m in smtp.messages) == ["Ada <ada@example.com>", "Dee <dee@example.com>"]
    assert _cli(settings, monkeypatch, *args) == 0  # still nothing new
    assert len(smtp.messages) == 2

    report = build(kit.engine, kit.ruleset, now=T0 + 8 * H)
    assert "Broadcast nov (newsletter): 3 scheduled; sent 2, suppressed 1" in render_text(report)
    assert "<td>nov</td><td>newsletter</td><td>3</td><td>sent 2, suppressed 1</td>" in render_html(report)


def test_an_unknown_segment_or_template_is_a_clear_error(
    shop: tuple[Kit, Settings, Recorder],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, settings, _ = shop
    assert _cli(settings, monkeypatch, "broadcast", "newsletter", "--segment", "buyer") == 1
    assert "unknown segment 'buyer' (segments: buyers)" in capsys.readouterr().err
    assert _cli(settings, monkeypatch, "broadcast", "newsleter", "--segment", "buyers") == 1
    assert "template 'newsleter' not found" in capsys.readouterr().err
