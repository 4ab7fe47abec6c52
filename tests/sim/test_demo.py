"""`journey demo` starts clean, and deletes only what an earlier demo made."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.cli import main
from tests.support.services import ROOT

#: whole demo runs
pytestmark = pytest.mark.slow

SMALL = ["demo", "--customers", "60", "--days", "7", "--seed", "2"]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh directory with the embedded defaults: ./journey.db and ./outbox."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JOURNEY_DATABASE_URL", raising=False)
    monkeypatch.delenv("JOURNEY_EMAIL_URL", raising=False)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    return tmp_path


def events_in(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def emails_reported(out: str) -> int:
    line = next(line for line in out.splitlines() if " emails in " in line)
    return int(line.split()[0].replace(",", ""))


def test_running_the_demo_twice_starts_clean(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(SMALL) == 0
    first = capsys.readouterr().out
    assert "Running `journey demo` again deletes this database (journey.db)" in first
    (here / "outbox" / "notes.txt").write_text("mine")  # not the demo's: kept
    assert main(SMALL) == 0
    second = capsys.readouterr().out
    assert "starting clean: deleted journey.db and" in second
    # the outbox holds this run's emails only, not the first run's as well
    assert len(list((here / "outbox").glob("*.eml"))) == emails_reported(second) > 0
    assert (here / "outbox" / "notes.txt").read_text() == "mine"

    # events added to the demo's database afterwards make it someone's data: the demo stops
    (here / "mine.jsonl").write_text(
        '{"type": "track", "customer_id": "c-0000001", "event": "note", "timestamp": "2026-11-01T09:00:00Z"}\n'
    )
    assert main(["ingest", "mine.jsonl"]) == 0
    before = events_in(here / "journey.db")
    capsys.readouterr()
    assert main(SMALL) == 1
    err = capsys.readouterr().err
    assert "events were added to it after the demo" in err and "Nothing was deleted" in err
    assert events_in(here / "journey.db") == before


def test_a_database_the_demo_did_not_make_is_kept_unless_fresh(
    here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "events.jsonl").write_text(
        '{"type": "identify", "customer_id": "real-1", "timestamp": "2026-10-01T09:00:00Z", '
        '"traits": {"email": "someone@example.com"}}\n'
    )
    assert main(["db", "upgrade"]) == 0
    assert main(["ingest", "events.jsonl"]) == 0
    capsys.readouterr()
    assert main(SMALL) == 1
    err = capsys.readouterr().err
    assert "journey.db is not that: it holds data the demo did not make. Nothing was deleted." in err
    assert "JOURNEY_DATABASE_URL=sqlite:///demo.db" in err and "journey demo --fresh" in err
    with sqlite3.connect(here / "journey.db") as conn:
        assert conn.execute("SELECT external_id FROM customers").fetchall() == [("real-1",)]

    # as the message says: another database leaves journey.db alone, or --fresh deletes it
    monkeypatch.setenv("JOURNEY_DATABASE_URL", "sqlite:///demo.db")
    assert main(SMALL) == 0
    with sqlite3.connect(here / "journey.db") as conn:
        assert conn.execute("SELECT external_id FROM customers").fetchall() == [("real-1",)]
    monkeypatch.delenv("JOURNEY_DATABASE_URL")
    assert main([*SMALL, "--fresh"]) == 0
    with sqlite3.connect(here / "journey.db") as conn:
        assert conn.execute("SELECT count(*) FROM customers WHERE external_id = 'real-1'").fetchone()[0] == 0


def test_an_outbox_with_someone_elses_emails_is_kept(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (here / "outbox").mkdir()
    (here / "outbox" / "from-my-shop.eml").write_text("Subject: hi\n\nhello\n")
    assert main(SMALL) == 1
    assert "it holds 1 emails or posts the demo did not write" in capsys.readouterr().err
    assert (here / "outbox" / "from-my-shop.eml").exists() and not (here / "journey.db").exists()


def test_the_demo_refuses_a_real_mail_server(
    here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOURNEY_EMAIL_URL", "smtp://user:secret@127.0.0.1:1")
    assert main(SMALL) == 1
    err = capsys.readouterr().err
    assert "smtp://127.0.0.1:1, a real mail server" in err and "secret" not in err
    assert "--send-real-email" in err
    assert not (here / "journey.db").exists()


def test_the_demo_runs_on_sqlite_only(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    assert main(SMALL) == 1


def test_the_same_seed_gives_the_same_demo(
    here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = []
    for name in ("first", "second"):
        (here / name).mkdir()
        monkeypatch.chdir(here / name)
        assert main(["demo", "--customers", "150", "--days", "20", "--seed", "7"]) == 0
        report = [line for line in capsys.readouterr().out.splitlines() if " ticks in " not in line]
        with sqlite3.connect("journey.db") as conn:
            # who entered which rule, in which split variant or holdout, and what they were sent
            paths = sorted(
                conn.execute(
                    "SELECT c.external_id, e.rule_id, e.status, coalesce(e.variant, ''), count(s.id) "
                    "FROM enrollments e JOIN customers c ON c.id = e.customer_id "
                    "LEFT JOIN sends s ON s.enrollment_id = e.id AND s.status = 'sent' "
                    "GROUP BY e.id, c.external_id, e.rule_id, e.status, e.variant"
                ).fetchall()
            )
        runs.append((report, paths))
    assert runs[0][1] and runs[0] == runs[1]
