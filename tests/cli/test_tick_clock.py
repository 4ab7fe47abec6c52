"""`journey tick --now` in the future never breaks a later real-time tick: the clock's tick waits
(evaluates nothing, says so, still dispatches) until it passes; a given `--now` in the past is
still refused, located."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.cli import main
from tests.support.services import ROOT

Env = pytest.CaptureFixture[str]


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Env) -> Iterator[Env]:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    monkeypatch.setenv("JOURNEY_EMAIL_URL", f"file://{tmp_path / 'outbox'}")
    monkeypatch.delenv("JOURNEY_BROKER_URL", raising=False)
    yield capsys


def tick(capsys: Env, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["tick", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_tick_in_the_future_makes_a_later_real_time_tick_wait_not_fail(cli: Env) -> None:
    future = datetime.now(UTC) + timedelta(days=3)
    assert tick(cli, "--now", future.isoformat())[0] == 0
    status, out, err = tick(cli, "--json")
    assert status == 0, err
    figures = json.loads(out)
    assert "later than the clock" in figures["skipped"]
    assert figures["dispatch"]["queued"] == 0  # the dispatch still ran
    # a given --now before the previous tick is a mistake, and said so
    status, _, err = tick(cli, "--now", (future - timedelta(hours=1)).isoformat())
    assert status != 0
    assert "time only moves forward" in err and "Traceback" not in err
    # once the clock passes the future tick, ticks evaluate again
    assert tick(cli, "--now", (future + timedelta(minutes=1)).isoformat())[0] == 0


def test_a_tick_says_where_its_time_went(cli: Env) -> None:
    """`journey tick --json` gives the seconds of each part: new events, stages, segments, each
    enabled rule; they add up to no more than the tick's own time."""
    status, out, err = tick(cli, "--json", "--now", "2026-11-02T10:00:00+00:00")
    assert status == 0, err
    figures = json.loads(out)
    timings = figures["timings"]
    assert {"new events", "stages", "segments", "rule cart_abandonment", "rule winback"} <= set(timings)
    assert all(seconds >= 0 for seconds in timings.values())
    assert sum(timings.values()) <= figures["seconds"] + 0.01
