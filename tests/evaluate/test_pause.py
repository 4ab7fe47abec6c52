"""`journey rules pause` / `resume` / `list`: a paused rule enters no one, its due sends wait across
ticks (neither sent nor dropped) and go after the resume; every scheduler and worker honours it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from engine.cli import main
from engine.db.schema import sends
from engine.delivery.deliverer import deliver_batch
from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from tests.support.kit import CART_RULE, H, Kit, iso
from tests.support.services import utc

T0 = utc("2026-11-01T10:00:00")
M = H / 60


@pytest.fixture
def kit(db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kit:
    k = Kit(db, tmp_path)
    k.rules(CART_RULE)
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(tmp_path / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(tmp_path / "templates"))
    monkeypatch.setenv("JOURNEY_EMAIL_URL", f"file://{tmp_path / 'outbox'}")
    monkeypatch.setenv("JOURNEY_SECRET_KEY", "k")
    monkeypatch.delenv("JOURNEY_BROKER_URL", raising=False)
    return k


def tick(at: object, *extra: str) -> None:
    assert main(["tick", "--now", iso(at), *extra]) == 0  # type: ignore[arg-type]


def outbox(kit: Kit) -> int:
    box = kit.dir / "outbox"
    return len(list(box.glob("*.eml"))) if box.exists() else 0


def test_a_paused_rules_due_send_waits_across_ticks_and_goes_after_resume(
    kit: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    tick(T0)
    kit.identify("ada", T0)
    kit.identify("bo", T0)
    kit.track("ada", "cart_updated", T0 + M)
    tick(T0 + 2 * H, "--no-dispatch")  # ada's reminder is in the ledger, due
    assert kit.sends() == [("ada", "cart_reminder", "due")]

    assert main(["rules", "pause", "cart_abandonment", "--now", iso(T0 + 2 * H)]) == 0
    assert "paused cart_abandonment: no one enters it, and 1 due sends" in capsys.readouterr().out
    kit.track("bo", "cart_updated", T0 + 2 * H + M)  # bo's cart goes quiet during the pause
    tick(T0 + 4 * H)
    tick(T0 + 6 * H)
    assert kit.sends() == [("ada", "cart_reminder", "due")]  # waits: neither sent nor dropped
    assert outbox(kit) == 0

    capsys.readouterr()
    assert main(["rules", "list", "--now", iso(T0 + 6 * H)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[:4] == ["rule", "trigger", "topic", "state"]
    assert listed[1].split()[:6] == ["cart_abandonment", "inactivity", "cart_updated", "1h", "-", "paused"]
    assert listed[1].split()[-2:] == ["1", "0"]  # entered 7d, sent 7d

    assert main(["rules", "resume", "cart_abandonment", "--now", iso(T0 + 10 * H)]) == 0
    assert "resumed cart_abandonment" in capsys.readouterr().out
    tick(T0 + 10 * H)
    assert kit.sends() == [("ada", "cart_reminder", "sent")]  # the last chance waits its 23 hours
    assert outbox(kit) == 1
    tick(T0 + 25 * H)
    assert kit.sends() == [("ada", "cart_reminder", "sent"), ("ada", "cart_last_chance", "sent")]
    # bo's trigger fell in the pause: as for a rule not written yet, it entered no one
    assert [e.customer_id for e in kit.enrollments()] == [kit.enrollments()[0].customer_id]

    capsys.readouterr()
    assert main(["rules", "list", "--json", "--now", iso(T0 + 25 * H)]) == 0
    (line,) = json.loads(capsys.readouterr().out)
    assert line["paused"] is False and line["entered"] == 1 and line["sent"] == 2


def test_customers_stay_at_their_step_during_a_pause_and_go_on_from_the_resume(kit: Kit) -> None:
    tick(T0)
    kit.identify("ada", T0)
    kit.track("ada", "cart_updated", T0 + M)
    tick(T0 + 2 * H)  # the reminder is sent; the last chance is due at T0 + 24h01
    assert main(["rules", "pause", "cart_abandonment", "--now", iso(T0 + 3 * H)]) == 0
    tick(T0 + 30 * H)
    assert kit.sends() == [("ada", "cart_reminder", "sent")]
    assert main(["rules", "resume", "cart_abandonment"]) == 0
    tick(T0 + 40 * H)
    rows = kit.send_rows()
    assert [(r.template, r.status) for r in rows] == [("cart_reminder", "sent"), ("cart_last_chance", "sent")]
    assert rows[1].due_at == T0 + 40 * H  # due at the resume, not in the past


def test_a_send_queued_before_the_pause_goes_back_to_due_without_an_attempt(
    kit: Kit, db: Engine, settings: Settings
) -> None:
    tick(T0)
    kit.identify("ada", T0)
    kit.track("ada", "cart_updated", T0 + M)
    tick(T0 + 2 * H, "--no-dispatch")
    handed: list[int] = []
    dispatch_due(db, settings, now=T0 + 2 * H, enqueue=lambda _channel, ids: handed.extend(ids))
    assert len(handed) == 1  # queued for a worker, then the rule is paused
    assert main(["rules", "pause", "cart_abandonment"]) == 0
    stats = deliver_batch(db, settings.with_(rules_dir=kit.dir / "rules"), handed, now=T0 + 2 * H)
    assert stats.deferred == 1 and stats.by_reason == {"paused": 1}
    with db.connect() as conn:
        row = conn.execute(select(sends)).one()
    assert (row.status, row.reason, row.attempts) == ("due", "paused", 0)
    # and no scheduler claims it while the pause lasts
    assert dispatch_due(db, settings, now=T0 + 3 * H, enqueue=lambda *_: None).queued == 0


def test_pause_and_resume_say_what_they_did_and_refuse_an_unknown_rule(
    kit: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "pause", "cart_abandonment"]) == 0
    assert main(["rules", "pause", "cart_abandonment"]) == 0
    assert "was paused already" in capsys.readouterr().out
    assert main(["rules", "pause", "cart_abandonmnt"]) == 2
    assert "no rule 'cart_abandonmnt' (did you mean 'cart_abandonment'?)" in capsys.readouterr().err
    assert main(["rules", "resume", "cart_abandonment"]) == 0
    assert main(["rules", "resume", "cart_abandonment"]) == 0
    assert "cart_abandonment is not paused" in capsys.readouterr().out
    assert main(["explain", "nobody"]) == 1


def test_explain_says_a_rule_is_paused(kit: Kit, capsys: pytest.CaptureFixture[str]) -> None:
    kit.identify("ada", T0)
    assert main(["rules", "pause", "cart_abandonment", "--now", iso(T0)]) == 0
    assert main(["explain", "ada", "--now", iso(T0 + H)]) == 0
    out = capsys.readouterr().out
    assert f"rule cart_abandonment (paused since {T0.isoformat()}: enters no one, its sends wait)" in out
