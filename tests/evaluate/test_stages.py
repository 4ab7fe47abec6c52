"""Stage changes as a tick reports them: the figure the scheduler logs and `journey tick` prints."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, update

from engine.db.schema import customers, ticks
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import utc

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


def test_customers_without_a_stage_are_found_after_a_tick_from_before_the_upgrade(
    db: Engine, tmp_path: Path
) -> None:
    # Ticks since migration 0004 record the highest customer id they saw, and the next tick takes
    # the customers above it as new. A tick from before the upgrade recorded none: the next tick
    # then looks for customers without a stage, as before.
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE)
    kit.tick(T - 48 * H)
    kit.identify("ada", T - H)
    kit.tick(T)
    assert kit.stage("ada") == "awareness"
    with db.begin() as conn:
        conn.execute(update(customers).values(stage=None))  # as if no tick had seen ada yet
        conn.execute(update(ticks).values(customer_seq=None))
    kit.identify("bob", T + H)
    assert kit.tick(T + 2 * H).stage_changes == 2
    assert (kit.stage("ada"), kit.stage("bob")) == ("awareness", "awareness")
    # and from then on the recorded id is used: carl is new, ada is not looked at again
    kit.identify("carl", T + 3 * H)
    assert kit.tick(T + 4 * H).stage_changes == 1
    assert kit.stage("carl") == "awareness"
