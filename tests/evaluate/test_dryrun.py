"""`journey tick --dry-run`: per rule and template, what the tick would schedule and a dispatch would
send, with nothing written (every table's row count is the same before and after, on both
databases), and the same figures as the real tick that follows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from engine.cli import main
from engine.db.schema import metadata
from engine.sim.generate import ShopConfig, write_events
from tests.support.services import ROOT

DAY_BEFORE = "2026-10-31T00:00:00Z"
NOW = "2026-11-01T00:00:00Z"


@pytest.fixture
def shop(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    monkeypatch.setenv("JOURNEY_EMAIL_URL", f"file://{tmp_path / 'outbox'}")
    monkeypatch.setenv("JOURNEY_SECRET_KEY", "k")
    monkeypatch.delenv("JOURNEY_BROKER_URL", raising=False)
    buf = io.StringIO()
    write_events(ShopConfig(customers=150, days=12, seed=11), buf)
    events = tmp_path / "events.jsonl"
    events.write_text(buf.getvalue())
    assert main(["ingest", str(events)]) == 0
    assert main(["tick", "--now", DAY_BEFORE]) == 0  # sends are waiting in the ledger, due later
    return tmp_path


def row_counts(db: Engine) -> dict[str, int]:
    with db.connect() as conn:
        out = {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in metadata.sorted_tables
        }
        out["alembic_version"] = int(conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one())
    return out


def test_a_dry_run_writes_nothing_and_its_figures_are_the_real_ticks(
    shop: Path, db: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    sent_before = len(list((shop / "outbox").glob("*.eml")))
    before = row_counts(db)
    capsys.readouterr()
    assert main(["tick", "--dry-run", "--json", "--now", NOW]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert row_counts(db) == before and dry["written"] is False
    assert len(list((shop / "outbox").glob("*.eml"))) == sent_before
    assert main(["tick", "--dry-run", "--now", NOW]) == 0  # the same again: nothing moved
    assert row_counts(db) == before

    capsys.readouterr()
    assert main(["tick", "--json", "--now", NOW]) == 0
    real = json.loads(capsys.readouterr().out)
    scheduled: dict[str, int] = {}
    for line in dry["rules"]:
        scheduled[line["rule"]] = scheduled.get(line["rule"], 0) + line["schedule"]
    assert {k: v for k, v in scheduled.items() if v} == {k: v for k, v in real["scheduled"].items() if v}
    would_send = sum(line["send"] for line in dry["rules"])
    held = sum(sum(line["held"].values()) for line in dry["rules"])
    assert would_send == real["dispatch"]["sent"] > 0
    assert would_send + held == real["dispatch"]["queued"]
    assert held > 0  # quiet hours at midnight hold some: the dry run says so


def test_the_dry_runs_table_has_a_line_per_rule_and_template(
    shop: Path, db: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["rules", "pause", "welcome_series"]) == 0
    capsys.readouterr()
    assert main(["tick", "--dry-run", "--now", NOW]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"dry run of the tick at {NOW.replace('Z', '+00:00')}: nothing was written.")
    assert out[1].split() == ["rule", "template", "schedule", "send", "held"]
    rows = {tuple(line.split()[:2]): line for line in out[2:] if line and not line.startswith("total")}
    ids = {rule for rule, _ in rows}
    assert ids == {p.stem for p in (ROOT / "rules").glob("*.yaml")} - {
        "stages",
        "settings",
        "segments",
        "events",
    }
    welcome = [line for (rule, _), line in rows.items() if rule == "welcome_series"]
    assert all("(paused: its sends wait)" in line for line in welcome)
    assert all(line.split()[2:4] == ["0", "0"] for line in welcome)  # enters no one, sends nothing
