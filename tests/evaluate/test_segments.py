"""Segments (CONTRACT sections 11 and 14): membership, entry and exit triggers, history, report and
explain, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from engine.db.schema import customers, segment_history
from engine.errors import RuleError
from engine.evaluate.explain import explain
from engine.reporting.report import build
from engine.reporting.text import render_text
from engine.rules.loader import load_ruleset
from tests.support.kit import D, H, Kit
from tests.support.services import utc

T0 = utc("2026-11-01T10:00:00")

SEGMENTS = """
segments:
  - name: vip
    description: three orders in 90 days
    when: {event: order_placed, count: {gte: 3}, within: 90d}
  - name: vip_subscriber
    when: {all: [{segment: vip}, {subscribed: email}]}
"""

WELCOME_VIP = """
id: vip_welcome
trigger: {segment_entered: vip}
steps:
  - send: vip_welcome
"""

VIP_GOODBYE = """
id: vip_goodbye
trigger: {segment_exited: vip}
steps:
  - send: vip_goodbye
"""

VIP_ONLY = """
id: vip_order_thanks
trigger: {event: order_placed}
conditions:
  - {segment: vip}
steps:
  - send: vip_order_thanks
"""


@pytest.fixture
def kit(db: Engine, tmp_path: Path) -> Kit:
    k = Kit(db, tmp_path)
    k.rules(WELCOME_VIP, VIP_GOODBYE, VIP_ONLY, segments=SEGMENTS)
    return k


def _orders(kit: Kit, cid: str, *times: object) -> None:
    from datetime import datetime

    for i, t in enumerate(times):
        assert isinstance(t, datetime)
        kit.track(cid, "order_placed", t, value=10 + i)


def test_entering_and_leaving_a_segment_fire_each_trigger_once(kit: Kit) -> None:
    kit.tick(T0 - H)
    kit.identify("ada", T0 - H)
    _orders(kit, "ada", T0, T0 + D)
    kit.tick(T0 + D + H)
    assert kit.sends() == []
    _orders(kit, "ada", T0 + 2 * D)
    kit.tick(T0 + 2 * D + H)  # the third order: in
    assert sorted(s[1] for s in kit.sends()) == ["vip_order_thanks", "vip_welcome"]
    kit.tick(T0 + 10 * D)
    kit.tick(T0 + 89 * D)
    assert len(kit.sends()) == 2
    kit.tick(T0 + 90 * D + H)  # the first order is 90 days old: out, without any new event
    kit.tick(T0 + 91 * D)
    assert sorted(s[1] for s in kit.sends()) == ["vip_goodbye", "vip_order_thanks", "vip_welcome"]
    with kit.engine.connect() as conn:
        history = conn.execute(
            select(segment_history.c.segment, segment_history.c.entered).order_by(segment_history.c.id)
        ).all()
    assert history == [("vip", True), ("vip_subscriber", True), ("vip", False), ("vip_subscriber", False)]


def test_a_new_segment_records_its_members_silently(db: Engine, tmp_path: Path) -> None:
    kit = Kit(db, tmp_path)
    kit.rules("id: noop\ntrigger: {event: signed_up}\nsteps:\n  - send: hello\n")
    kit.tick(T0 - H)
    kit.identify("ada", T0 - H)
    _orders(kit, "ada", T0, T0 + H, T0 + 2 * H)
    kit.tick(T0 + 3 * H)
    kit.rules(WELCOME_VIP, segments=SEGMENTS)
    kit.tick(T0 + 4 * H)  # vip is new: ada is a member, and no one is mailed
    assert kit.sends() == []
    kit.identify("bob", T0 + 4 * H)
    _orders(kit, "bob", T0 + 5 * H, T0 + 6 * H, T0 + 7 * H)
    kit.tick(T0 + 8 * H)
    assert kit.sends() == [("bob", "vip_welcome", "due")]
    text = render_text(build(kit.engine, kit.ruleset, now=T0 + 8 * H))
    assert "Segments (members now; entered and left in the period)" in text
    line = next(x for x in text.splitlines() if x.strip().startswith("vip "))
    assert line.split() == ["vip", "2", "entered", "1,", "left", "0"]


def test_explain_lists_the_customers_segments(kit: Kit) -> None:
    kit.tick(T0 - H)
    kit.identify("ada", T0 - H)
    _orders(kit, "ada", T0, T0 + H, T0 + 2 * H)
    kit.tick(T0 + 3 * H)
    ex = explain(kit.engine, kit.ruleset, "ada", now=T0 + 3 * H)
    assert ex.segments == ["vip", "vip_subscriber"]
    assert "segments: vip (since 2026-11-01T13:00:00+00:00), vip_subscriber" in ex.render()


def test_an_identify_that_unsubscribes_moves_a_customer_out_of_a_segment_using_it(kit: Kit) -> None:
    kit.tick(T0 - H)
    kit.identify("ada", T0 - H)
    _orders(kit, "ada", T0, T0 + H, T0 + 2 * H)
    kit.tick(T0 + 3 * H)
    kit.track("ada", "unsubscribed", T0 + 4 * H, channel="email")
    kit.tick(T0 + 5 * H)
    with kit.engine.connect() as conn:
        cid = conn.execute(select(customers.c.id).where(customers.c.external_id == "ada")).scalar_one()
        last = conn.execute(
            select(segment_history.c.segment, segment_history.c.entered)
            .where(segment_history.c.customer_id == cid)
            .order_by(segment_history.c.id.desc())
            .limit(1)
        ).one()
    assert tuple(last) == ("vip_subscriber", False)


def test_segments_in_a_cycle_and_unknown_segments_are_errors_at_rules_check(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "stages.yaml").write_text("stages:\n  - name: awareness\n")
    (rules / "segments.yaml").write_text(
        "segments:\n"
        "  - name: a\n    when: {segment: b}\n"
        "  - name: b\n    when: {any: [{segment: a}, {event: x}]}\n"
        "  - name: c\n    when: {segment: vipp}\n"
    )
    (rules / "r.yaml").write_text("id: r\ntrigger: {segment_entered: d}\nsteps:\n  - send: hello\n")
    with pytest.raises(RuleError) as info:
        load_ruleset(rules, None)
    text = str(info.value)
    assert "segments.yaml:3:11: segments use each other in a cycle: a -> b -> a" in text
    assert "segments.yaml:7:21: unknown segment 'vipp'" in text
    assert "r.yaml:2:" in text and "unknown segment 'd' (segments: a, b, c)" in text
