"""A database that was never created: every command says `journey db upgrade`, and only that
command (and the demo) creates the database; nothing leaves an empty file behind."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli import main
from tests.support.services import ROOT, need_postgres, throwaway_database

COMMANDS = [
    ["tick", "--now", "2026-11-01T10:00:00Z"],
    ["report"],
    ["health"],
    ["events", "export"],
    ["sends", "list", "--status", "failed"],
    ["explain", "c1", "--now", "2026-11-01T10:00:00Z"],
    ["ingest", "events.jsonl"],
    ["serve", "--port", "0"],
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def never_upgraded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database nobody ran `journey db upgrade` on: a SQLite file that does not exist,
    or an empty PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'journey.db'}"
        return
    need_postgres()
    with throwaway_database() as url:
        yield url


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_command_before_db_upgrade_says_so_and_creates_no_database(
    command: list[str],
    never_upgraded: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.jsonl").write_text(
        '{"type": "track", "customer_id": "c1", "event": "x", "timestamp": "2026-11-01T10:00:00Z"}\n'
    )
    monkeypatch.setenv("JOURNEY_DATABASE_URL", never_upgraded)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    monkeypatch.setenv("JOURNEY_EMAIL_URL", f"file://{tmp_path / 'outbox'}")
    monkeypatch.delenv("JOURNEY_BROKER_URL", raising=False)
    assert main(command) == 1
    said = capsys.readouterr()
    assert "the database has no schema yet: run `journey db upgrade` first" in said.err + said.out
    assert "Traceback" not in said.err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("journey.db")) == []


def test_db_upgrade_creates_the_database_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journey.db"
    monkeypatch.setenv("JOURNEY_DATABASE_URL", f"sqlite:///{path}")
    assert main(["db", "upgrade"]) == 0
    assert "database at revision" in capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["report"]) == 0


def test_db_upgrade_makes_an_older_world_readable_database_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journey.db"
    monkeypatch.setenv("JOURNEY_DATABASE_URL", f"sqlite:///{path}")
    assert main(["db", "upgrade"]) == 0
    path.chmod(0o644)
    capsys.readouterr()
    assert main(["db", "upgrade"]) == 0
    assert "now readable by its owner alone" in capsys.readouterr().err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for extra in (tmp_path / "journey.db-wal", tmp_path / "journey.db-shm"):
        assert not extra.exists() or stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0


def test_webhook_calls_written_to_files_are_owner_only(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from engine.delivery.channels.webhook import FileWebhookChannel

    channel = FileWebhookChannel(tmp_path / "hooks")
    channel.post("https://example.com/h", {"email": "ada@example.com"}, key="k", now=datetime.now(UTC))
    (written,) = (tmp_path / "hooks").iterdir()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
