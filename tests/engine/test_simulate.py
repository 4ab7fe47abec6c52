"""`journey simulate`: what the rules would send, per rule and day, on a throwaway database."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from engine.cli import main
from engine.generate import ShopConfig, write_events
from tests.conftest import ROOT


def test_simulate_reports_per_rule_and_day_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    buf = io.StringIO()
    write_events(ShopConfig(customers=150, days=10, seed=5), buf)
    events.write_text(buf.getvalue())
    monkeypatch.setenv("JOURNEY_DATABASE_URL", f"sqlite:///{tmp_path / 'real.db'}")
    monkeypatch.setenv("JOURNEY_EMAIL_URL", f"file://{tmp_path / 'outbox'}")
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    code = main(
        [
            "simulate",
            str(events),
            "--from",
            "2026-10-22T00:00:00Z",
            "--to",
            "2026-11-01T00:00:00Z",
            "--step",
            "6h",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["day", "rule", "would", "send", "freq.", "cap", "quiet", "hrs", "other"]
    rows = [line.split() for line in lines[1:] if line[:4] == "2026"]
    assert {r[1] for r in rows} >= {"welcome_series", "browse_abandonment"}
    total = int(lines[-1].split()[0].replace(",", ""))
    assert total == sum(int(r[2]) for r in rows) > 0
    assert "nothing was sent" in lines[-1]
    assert not (tmp_path / "outbox").exists() and not (tmp_path / "real.db").exists()
