"""Stage changes as a tick reports them: the figure the scheduler logs and `journey tick` prints."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from tests.conftest import utc
from tests.engine.evalkit import CART_RULE, H, Kit

T = utc("2026-11-01T10:00:00")


def test_a_tick_counts_the_stage_changes_it_recorded(db: Engine, tmp_path: Path) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE)
    assert kit.tick(T - 48 * H).stage_changes == 0  # nobody yet
    kit.identify("ada", T - H)
    kit.identify("bob", T - H)
    kit.track("ada", "product_viewed", T - H)
    assert kit.tick(T).stage_changes == 2  # both get their first stage
    kit.track("ada", "cart_updated", T + H)
    assert kit.tick(T + 2 * H).stage_changes == 1  # ada: consideration -> decision
    assert kit.tick(T + 3 * H).stage_changes == 0
    assert (kit.stage("ada"), kit.stage("bob")) == ("decision", "awareness")
