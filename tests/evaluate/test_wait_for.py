"""`wait_for` and inactivity `match:` (CONTRACT section 11), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from engine.evaluate.explain import explain
from engine.rules.loader import load_ruleset
from tests.support.kit import D, H, Kit
from tests.support.services import utc

T0 = utc("2026-11-01T10:00:00")
M = H / 60

NPS = """
id: nps
trigger: {event: order_placed}
steps:
  - send: nps_survey
  - wait_for:
      event: survey_answered
      within: 3d
      then:
        - send: nps_thanks
      timeout:
        - send: nps_reminder
exit_on: [account_closed]
"""

CART_ORDER = """
id: cart_checkout
trigger: {event: cart_updated}
steps:
  - wait_for:
      event: order_placed
      within: 1d
      match: [cart_id]
      then:
        - send: cart_thanks
      timeout:
        - send: cart_reminder
"""

CART_QUIET = """
id: cart_abandonment
trigger:
  inactivity: {event: cart_updated, until: [order_placed, cart_cleared], for: 1h, match: [cart_id]}
steps:
  - send: cart_reminder
"""


@pytest.fixture
def kit(db: Engine, tmp_path: Path) -> Kit:
    k = Kit(db, tmp_path)
    k.rules(NPS)
    k.tick(T0 - H)
    k.identify("ada", T0 - H)
    return k


def _explain(kit: Kit, at: object) -> str:
    from datetime import datetime

    assert isinstance(at, datetime)
    return explain(kit.engine, kit.ruleset, "ada", now=at).render()


def test_an_answer_an_hour_after_the_survey_releases_at_the_next_tick(kit: Kit) -> None:
    kit.track("ada", "order_placed", T0, value=30)
    kit.tick(T0 + M)
    assert kit.sends() == [("ada", "nps_survey", "due")]
    assert "waiting for survey_answered since 2026-11-01T10:00:00+00:00; times out at 2026-11-04T10:00" in (
        _explain(kit, T0 + M)
    )
    kit.track("ada", "survey_answered", T0 + H, score=9)
    kit.tick(T0 + H + M)
    rows = kit.send_rows()
    assert [(r.template, r.due_at) for r in rows] == [("nps_survey", T0), ("nps_thanks", T0 + H)]
    assert "released from its wait_for by survey_answered at 2026-11-01T11:00:00+00:00" in _explain(
        kit, T0 + H + M
    )
    kit.tick(T0 + 4 * D)  # the timeout passes: nothing more
    assert [s[1] for s in kit.sends()] == ["nps_survey", "nps_thanks"]


def test_no_answer_in_three_days_sends_the_reminder_once(kit: Kit) -> None:
    kit.track("ada", "order_placed", T0, value=30)
    kit.tick(T0 + M)
    kit.tick(T0 + 2 * D)
    assert [s[1] for s in kit.sends()] == ["nps_survey"]
    kit.tick(T0 + 3 * D + M)
    rows = kit.send_rows()
    assert [(r.template, r.due_at) for r in rows] == [("nps_survey", T0), ("nps_reminder", T0 + 3 * D)]
    kit.track("ada", "survey_answered", T0 + 3 * D + 2 * M, score=3)  # too late: no thanks
    kit.tick(T0 + 4 * D)
    assert [s[1] for s in kit.sends()] == ["nps_survey", "nps_reminder"]
    assert kit.enrollments()[0].status == "done"


def test_an_answer_before_a_late_tick_releases_rather_than_times_out(kit: Kit) -> None:
    kit.track("ada", "order_placed", T0, value=30)
    kit.track("ada", "survey_answered", T0 + 2 * D, score=7)
    kit.tick(T0 + 5 * D)  # one tick after everything: the answer came within the three days
    assert [s[1] for s in kit.sends()] == ["nps_survey", "nps_thanks"]


def test_exit_on_ends_the_wait(kit: Kit) -> None:
    kit.track("ada", "order_placed", T0, value=30)
    kit.tick(T0 + M)
    kit.track("ada", "account_closed", T0 + H)
    kit.tick(T0 + H + M)
    kit.tick(T0 + 4 * D)
    assert [s[1] for s in kit.sends()] == ["nps_survey"]
    assert kit.enrollments()[0].status == "exited"


def test_wait_for_match_ties_the_order_to_its_cart(db: Engine, tmp_path: Path) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(CART_ORDER)
    kit.tick(T0 - H)
    kit.identify("ada", T0 - H)
    kit.track("ada", "cart_updated", T0, cart_id="A")
    kit.track("ada", "cart_updated", T0 + M, cart_id="B")
    kit.tick(T0 + 2 * M)
    kit.track("ada", "order_placed", T0 + H, cart_id="A", value=20)
    kit.tick(T0 + H + M)
    assert kit.sends() == [("ada", "cart_thanks", "due")]
    kit.tick(T0 + D + 2 * M)
    assert kit.sends() == [("ada", "cart_thanks", "due"), ("ada", "cart_reminder", "due")]
    rows = kit.send_rows()
    assert rows[1].due_at == T0 + M + D  # cart B's day, from when its wait began


def test_two_carts_one_checked_out_one_reminder_for_the_other(db: Engine, tmp_path: Path) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(CART_QUIET)
    kit.tick(T0 - H)
    kit.identify("ada", T0 - H)
    kit.track("ada", "cart_updated", T0, cart_id="A")
    kit.track("ada", "cart_updated", T0 + 5 * M, cart_id="B")
    kit.track("ada", "cart_updated", T0 + 10 * M, cart_id="A")  # A again: its clock restarts
    kit.track("ada", "order_placed", T0 + 30 * M, cart_id="A", value=20)
    kit.tick(T0 + 3 * H)
    rows = kit.send_rows()
    assert [(r.template, r.due_at) for r in rows] == [("cart_reminder", T0 + 65 * M)]
    assert len(kit.enrollments()) == 1


def test_two_carts_left_get_a_reminder_each(db: Engine, tmp_path: Path) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(CART_QUIET)
    kit.tick(T0 - H)
    kit.identify("ada", T0 - H)
    kit.track("ada", "cart_updated", T0, cart_id="A")
    kit.track("ada", "cart_updated", T0 + 5 * M, cart_id="B")
    kit.tick(T0 + H + 2 * M)
    assert [s[1] for s in kit.sends()] == ["cart_reminder"]
    kit.tick(T0 + 2 * H)
    assert [s[1] for s in kit.sends()] == ["cart_reminder", "cart_reminder"]


def test_match_without_a_trigger_event_is_an_error_at_load(tmp_path: Path) -> None:
    from engine.errors import RuleError

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "x.yaml").write_text(
        "id: x\ntrigger: {stage_entered: purchase}\nsteps:\n"
        "  - wait_for: {event: order_placed, within: 1d, match: [cart_id]}\n"
    )
    (rules / "stages.yaml").write_text("stages:\n  - name: purchase\n")
    with pytest.raises(RuleError) as info:
        load_ruleset(rules, None)
    assert "x.yaml:1:1" in str(info.value) or "x.yaml:" in str(info.value)
    assert "has no event to match against" in str(info.value)
    (rules / "x.yaml").write_text(
        "id: x\ntrigger: {event: a}\nsteps:\n  - wait_for: {event: order_placed, whithin: 1d}\n"
    )
    with pytest.raises(RuleError) as info:
        load_ruleset(rules, None)
    assert "x.yaml:4:" in str(info.value) and "within" in str(info.value)


def test_events_without_the_matched_property_are_one_cart_as_before(db: Engine, tmp_path: Path) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(CART_QUIET)
    kit.tick(T0 - H)
    kit.identify("ada", T0 - H)
    kit.identify("bob", T0 - H)
    kit.track("ada", "cart_updated", T0)
    kit.track("ada", "cart_updated", T0 + 5 * M)  # restarts the clock: one reminder, for this one
    kit.track("bob", "cart_updated", T0, cart_id="A")
    kit.track("bob", "order_placed", T0 + 30 * M)  # an order tied to no cart stops every cart
    kit.tick(T0 + 3 * H)
    assert [(r.template, r.due_at) for r in kit.send_rows()] == [("cart_reminder", T0 + 65 * M)]
