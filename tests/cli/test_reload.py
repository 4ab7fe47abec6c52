"""`journey run` picks up changed rule and template files at its next tick; a set with problems
is refused, the running one kept (rules and templates), and the problems logged once."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from engine.cli import main
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.evaluate.tick import run_tick
from engine.logs import configure
from engine.scheduler import Scheduler
from engine.settings import Settings
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import utc

T0 = utc("2026-11-01T10:00:00")
WELCOME = """
id: welcome
trigger: {event: signed_up}
steps:
  - send: welcome
"""


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def touch(path: Path, text: str) -> None:
    """Write a file and move its time on, so that a change within the same clock tick is seen."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    later = max(before + 1_000_000, path.stat().st_mtime_ns)
    os.utime(path, ns=(later, later))


@pytest.fixture
def kit(db: Engine, tmp_path: Path) -> Kit:
    k = Kit(db, tmp_path)
    k.rules(CART_RULE, WELCOME)
    (tmp_path / "rules" / "rule1.yaml").unlink()  # the welcome rule comes later, under the scheduler
    return k


@pytest.fixture
def scheduler(kit: Kit, settings: Settings, tmp_path: Path) -> Iterator[tuple[Scheduler, Clock]]:
    configure("json")  # as `journey run` does: one JSON line per log record, on stderr
    clock = Clock(T0)
    s = Scheduler(
        settings.with_(rules_dir=tmp_path / "rules", templates_dir=tmp_path / "templates"),
        kit.engine,
        every=timedelta(seconds=30),
        dispatch_every=timedelta(seconds=30),
        clock=clock,
    )
    yield s, clock
    s.leadership.release()


def outbox(kit: Kit) -> list[str]:
    box = kit.dir / "outbox"
    return sorted(p.read_text() for p in box.glob("*.eml")) if box.exists() else []


def refusals(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if "rules refused" in line]


def test_a_changed_rule_file_takes_effect_at_the_next_tick(
    kit: Kit, scheduler: tuple[Scheduler, Clock]
) -> None:
    s, clock = scheduler
    s.tick_once()
    kit.identify("ada", T0)
    kit.track("ada", "signed_up", T0 + H)
    clock.at = T0 + 2 * H
    s.tick_once()
    assert kit.sends() == []  # no welcome rule yet
    touch(kit.dir / "rules" / "welcome.yaml", WELCOME)
    kit.track("ada", "signed_up", T0 + 3 * H, mid="again")
    clock.at = T0 + 4 * H
    s.tick_once()
    assert kit.sends() == [("ada", "welcome", "sent")]
    assert s.live().reloads == 1


def test_a_broken_rule_set_is_refused_logged_once_and_the_old_rules_keep_sending(
    kit: Kit, scheduler: tuple[Scheduler, Clock], capsys: pytest.CaptureFixture[str]
) -> None:
    s, clock = scheduler
    s.tick_once()
    capsys.readouterr()
    touch(kit.dir / "rules" / "broken.yaml", "id: broken\ntrigger: {event: x}\nsteps:\n  - wiat: 1h\n")
    kit.identify("ada", T0)
    kit.track("ada", "cart_updated", T0 + H / 2)
    for n in range(2, 5):  # three ticks with the broken file: the cart reminder still goes
        clock.at = T0 + n * H
        s.tick_once()
    assert kit.sends() == [("ada", "cart_reminder", "sent")]
    (refused,) = refusals(capsys.readouterr().err)  # once, not at every tick
    assert refused["level"] == "error"
    assert any("broken.yaml:4:5: unknown step 'wiat'" in p for p in refused["problems"])
    assert s.live().refusals == 1 and s.live().reloads == 0
    touch(kit.dir / "rules" / "broken.yaml", "id: broken\ntrigger: {event: x}\nsteps:\n  - wait: 1h\n")
    clock.at = T0 + 5 * H
    s.tick_once()  # fixed: taken at the next tick
    assert s.live().reloads == 1 and [r.id for r in s.ruleset().rules] == ["broken", "cart_abandonment"]


def test_a_broken_template_is_refused_and_the_running_one_keeps_rendering(
    kit: Kit, scheduler: tuple[Scheduler, Clock], capsys: pytest.CaptureFixture[str]
) -> None:
    s, clock = scheduler
    touch(kit.dir / "templates" / "cart_reminder.txt.j2", "Hello {{ customer.first_name }}, your cart")
    s.tick_once()
    touch(kit.dir / "templates" / "cart_reminder.txt.j2", "Hello {{ customer.frist_name }}")
    kit.identify("ada", T0, first_name="Ada")
    kit.track("ada", "cart_updated", T0 + H / 2)
    clock.at = T0 + 2 * H
    s.tick_once()
    assert kit.sends() == [("ada", "cart_reminder", "sent")]  # not failed: the kept template rendered
    (mail,) = outbox(kit)
    assert "Hello Ada, your cart" in mail
    (refused,) = refusals(capsys.readouterr().err)
    assert "did you mean 'first_name'?" in str(refused["problems"])


def test_a_worker_takes_changed_files_before_a_batch(kit: Kit, settings: Settings, tmp_path: Path) -> None:
    """A worker's deliverer (made without a rule set) reads the files again when they change: a
    rule added under a running scheduler is not 'removed' for the workers."""
    worker_settings = settings.with_(rules_dir=tmp_path / "rules", templates_dir=tmp_path / "templates")
    deliverer = Deliverer.create(kit.engine, worker_settings)
    deliverer.live.recheck_seconds = 0  # type: ignore[union-attr]
    touch(kit.dir / "rules" / "welcome.yaml", WELCOME)
    ruleset = kit.rules(CART_RULE, WELCOME)
    run_tick(kit.engine, ruleset, now=T0)
    kit.identify("ada", T0)
    kit.track("ada", "signed_up", T0 + H)
    run_tick(kit.engine, ruleset, now=T0 + 2 * H)
    dispatch_due(kit.engine, worker_settings, now=T0 + 2 * H, deliverer=deliverer)
    assert kit.sends() == [("ada", "welcome", "sent")]


def test_journey_run_refuses_to_start_on_a_broken_rule_set(
    kit: Kit, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (kit.dir / "rules" / "broken.yaml").write_text("id: broken\ntrigger: {event: x}\nsteps: [{sned: a}]\n")
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(kit.dir / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(kit.dir / "templates"))
    assert main(["run", "--once", "--log-format", "console"]) == 1
    assert "broken.yaml:3:10: unknown step 'sned' (did you mean 'send'?)" in capsys.readouterr().err
