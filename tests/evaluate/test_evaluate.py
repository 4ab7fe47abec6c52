"""The tick, from the marketer's side: which sends a rule schedules, when, and only once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from engine.db.schema import enrollments, sends, stage_history
from tests.support.kit import CART_RULE, D, H, Kit
from tests.support.services import utc

T0 = utc("2026-11-01T10:00:00")


@pytest.fixture
def kit(db: Engine, tmp_path: Path) -> Kit:
    k = Kit(db, tmp_path)
    k.rules(CART_RULE)
    return k


def test_cart_reminder_fires_at_the_hour_and_not_before(kit: Kit) -> None:
    kit.tick(T0)
    kit.identify("ada", T0)
    kit.track("ada", "cart_updated", T0 + 5 * 60 * (H / 3600), cart_value=42.5)
    kit.tick(T0 + H)  # 55 minutes after the cart: not yet
    assert kit.sends() == []
    kit.tick(T0 + H + 10 * (H / 60))  # 65 minutes after
    assert kit.sends() == [("ada", "cart_reminder", "due")]


def test_a_purchase_inside_the_hour_prevents_the_reminder(kit: Kit) -> None:
    kit.tick(T0)
    kit.identify("bob", T0)
    kit.track("bob", "cart_updated", T0 + 60 * (H / 3600))
    kit.track("bob", "order_placed", T0 + 30 * (H / 60), value=30)
    kit.tick(T0 + 3 * H)
    assert kit.sends() == []


def test_a_second_cart_update_restarts_the_clock(kit: Kit) -> None:
    kit.tick(T0)
    kit.identify("cy", T0)
    kit.track("cy", "cart_updated", T0 + (H / 60))
    kit.tick(T0 + 40 * (H / 60))
    kit.track("cy", "cart_updated", T0 + 45 * (H / 60))
    kit.tick(T0 + H + 2 * (H / 60))  # the first cart is an hour old, but it is not the latest
    assert kit.sends() == []
    kit.tick(T0 + H + 50 * (H / 60))
    rows = kit.send_rows()
    assert [(r.template, r.due_at) for r in rows] == [("cart_reminder", T0 + H + 45 * (H / 60))]


def test_the_wait_step_schedules_the_last_chance_a_day_later(kit: Kit) -> None:
    kit.tick(T0)
    kit.identify("dee", T0)
    kit.track("dee", "cart_updated", T0)
    kit.tick(T0 + 2 * H)
    kit.tick(T0 + 23 * H)
    assert [s[1] for s in kit.sends()] == ["cart_reminder"]
    kit.tick(T0 + 25 * H)
    rows = kit.send_rows()
    assert [(r.template, r.due_at) for r in rows] == [
        ("cart_reminder", T0 + H),
        ("cart_last_chance", T0 + 24 * H),
    ]


def test_exit_on_cancels_the_pending_steps(kit: Kit) -> None:
    kit.tick(T0)
    kit.identify("eve", T0)
    kit.track("eve", "cart_updated", T0)
    kit.tick(T0 + 2 * H)
    kit.track("eve", "order_placed", T0 + 3 * H)
    kit.tick(T0 + 4 * H)
    kit.tick(T0 + 2 * D)
    assert [s[1] for s in kit.sends()] == ["cart_reminder"]
    assert kit.enrollments()[0].status == "exited"


def test_replaying_the_same_tick_and_the_same_events_creates_nothing_new(kit: Kit) -> None:
    kit.tick(T0)
    kit.identify("fay", T0)
    kit.track("fay", "cart_updated", T0, mid="m-1")
    kit.tick(T0 + 2 * H)
    before = (kit.send_rows(), kit.enrollments())
    kit.track("fay", "cart_updated", T0, mid="m-1")  # the same message again
    kit.tick(T0 + 2 * H)
    kit.tick(T0 + 2 * H)
    assert (kit.send_rows(), kit.enrollments()) == before
    assert len(before[0]) == 1


def test_a_customer_without_email_is_not_enrolled(kit: Kit) -> None:
    kit.tick(T0)
    kit.ingest(
        {"type": "track", "customer_id": "anon", "event": "cart_updated", "timestamp": "2026-11-01T10:00:00Z"}
    )
    kit.tick(T0 + 2 * H)
    assert kit.sends() == []


def test_the_first_tick_looks_back_24_hours_only(kit: Kit) -> None:
    for i in range(3):
        kit.identify(f"old{i}", T0 - 10 * D)
        kit.track(f"old{i}", "cart_updated", T0 - 10 * D)
    kit.identify("recent", T0 - 5 * H)
    kit.track("recent", "cart_updated", T0 - 5 * H)
    kit.tick(T0)
    assert kit.sends() == [("recent", "cart_reminder", "due")]


def test_backfill_widens_the_window_on_purpose(kit: Kit) -> None:
    kit.identify("old", T0 - 10 * D)
    kit.track("old", "cart_updated", T0 - 10 * D)
    kit.tick(T0, backfill=30 * D)
    # ten days later, both steps of the journey are due
    assert [(s[0], s[1]) for s in kit.sends()] == [("old", "cart_reminder"), ("old", "cart_last_chance")]


def test_out_of_order_events_give_the_same_result_as_sorted(db: Engine, tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    for i in range(12):
        cid = f"c{i}"
        events.append(
            {
                "type": "identify",
                "customer_id": cid,
                "timestamp": "2026-11-01T08:00:00Z",
                "traits": {"email": f"{cid}@example.com"},
            }
        )
        events.append(
            {
                "type": "track",
                "customer_id": cid,
                "event": "cart_updated",
                "timestamp": f"2026-11-01T09:{i:02d}:00Z",
                "message_id": f"{cid}-cart",
            }
        )
        if i % 3 == 0:
            events.append(
                {
                    "type": "track",
                    "customer_id": cid,
                    "event": "order_placed",
                    "timestamp": f"2026-11-01T09:{i + 20:02d}:00Z",
                    "message_id": f"{cid}-order",
                }
            )
        if i % 4 == 0:
            events.append(
                {
                    "type": "track",
                    "customer_id": cid,
                    "event": "cart_updated",
                    "timestamp": f"2026-11-01T09:{i + 30:02d}:00Z",
                    "message_id": f"{cid}-cart2",
                }
            )
    results = []
    for name, stream in (
        ("sorted", sorted(events, key=lambda e: e["timestamp"])),
        ("reversed", list(reversed(sorted(events, key=lambda e: e["timestamp"])))),
    ):
        from engine.db import make_engine, upgrade

        eng = make_engine(f"sqlite:///{tmp_path / name}.db") if db.dialect.name == "sqlite" else db
        if eng is not db:
            upgrade(eng)
        else:
            from tests.support.services import truncate as _truncate

            _truncate(db)
        kit = Kit(eng, tmp_path / name)
        kit.dir.mkdir()
        kit.rules(CART_RULE)
        kit.tick(T0 - 2 * H)
        for item in stream:
            kit.ingest(item)
        kit.tick(T0 + 3 * H)
        results.append(sorted((s[0], s[1]) for s in kit.sends()))
    assert results[0] == results[1]
    # 12 carts; 4 bought within the hour, but c0 came back to the cart after buying
    assert len(results[0]) == 9


def test_stages_follow_the_journey_and_record_each_change(kit: Kit) -> None:
    kit.tick(T0)
    kit.identify("gus", T0 + H)
    kit.tick(T0 + 2 * H)
    assert kit.stage("gus") == "awareness"
    kit.track("gus", "product_viewed", T0 + 3 * H)
    kit.tick(T0 + 4 * H)
    assert kit.stage("gus") == "consideration"
    kit.track("gus", "order_placed", T0 + 5 * H)
    kit.tick(T0 + 6 * H)
    assert kit.stage("gus") == "purchase"
    kit.track("gus", "order_placed", T0 + 7 * H)
    kit.tick(T0 + 8 * H)
    assert kit.stage("gus") == "retention"
    kit.tick(T0 + 130 * D)  # no order for 120 days: lapsed, without any new event
    assert kit.stage("gus") == "lapsed"
    with kit.engine.connect() as conn:
        history = [r.to_stage for r in conn.execute(select(stage_history).order_by(stage_history.c.id))]
    assert history == ["awareness", "consideration", "purchase", "retention", "lapsed"]


STAGE_RULE = """
id: welcome_buyers
trigger: {stage_entered: purchase}
steps:
  - send: thank_you
"""


def test_stage_entered_fires_once_per_entry(kit: Kit) -> None:
    kit.rules(STAGE_RULE)
    kit.tick(T0)
    kit.identify("hal", T0 + H)
    kit.track("hal", "order_placed", T0 + H)
    kit.tick(T0 + 2 * H)
    kit.tick(T0 + 3 * H)
    kit.tick(T0 + 3 * H)
    assert kit.sends() == [("hal", "thank_you", "due")]


EVENT_RULE = """
id: big_order_thanks
trigger:
  event: order_placed
  where: {value: {gte: 100}}
reentry: 7d
steps:
  - send: vip_thanks
"""


def test_event_trigger_with_where_and_reentry(kit: Kit) -> None:
    kit.rules(EVENT_RULE)
    kit.tick(T0)
    kit.identify("ivy", T0)
    kit.track("ivy", "order_placed", T0 + H, value=50)
    kit.track("ivy", "order_placed", T0 + 2 * H, value=150)
    kit.track("ivy", "order_placed", T0 + 3 * H, value=250)
    kit.tick(T0 + 4 * H)
    assert kit.sends() == [("ivy", "vip_thanks", "due")]
    kit.track("ivy", "order_placed", T0 + 2 * D, value=300)
    kit.tick(T0 + 2 * D + H)
    assert len(kit.sends()) == 1  # within the 7-day reentry
    kit.track("ivy", "order_placed", T0 + 9 * D, value=300)
    kit.tick(T0 + 9 * D + H)
    assert len(kit.sends()) == 2


def test_a_late_event_fires_at_the_next_tick_if_less_than_a_day_old(kit: Kit) -> None:
    kit.rules(EVENT_RULE.replace("reentry: 7d\n", ""))
    kit.tick(T0)
    kit.identify("jo", T0 - 2 * D)
    kit.tick(T0 + 10 * H)
    kit.track("jo", "order_placed", T0 + 2 * H, value=120, mid="late")  # stamped before the last tick
    kit.track("jo", "order_placed", T0 - 2 * D, value=500, mid="too-late")
    kit.tick(T0 + 11 * H)
    rows = kit.send_rows()
    assert len(rows) == 1 and rows[0].due_at == T0 + 2 * H


def test_events_stamped_after_now_are_not_seen_yet(kit: Kit) -> None:
    kit.rules(EVENT_RULE.replace("reentry: 7d\n", ""))
    kit.tick(T0)
    kit.identify("kim", T0)
    kit.track("kim", "order_placed", T0 + 5 * H, value=120)
    kit.tick(T0 + H)
    assert kit.sends() == []
    kit.tick(T0 + 6 * H)
    assert len(kit.sends()) == 1


BRANCH_SPLIT_RULE = """
id: winback
trigger: {event: came_back}
steps:
  - branch:
      if: {attribute: plan, eq: gold}
      then:
        - send: gold_offer
      else:
        - send: plain_offer
  - update: {winback_sent: true}
  - split: {A: 45, B: 45, holdout: 10}
    variants:
      A: [{send: variant_a}]
      B: [{send: variant_b}]
  - send: closing
"""


def test_branch_split_and_update_steps(kit: Kit) -> None:
    kit.rules(BRANCH_SPLIT_RULE)
    kit.tick(T0)
    n = 200
    for i in range(n):
        kit.identify(f"p{i}", T0, plan="gold" if i % 2 else "silver")
        kit.track(f"p{i}", "came_back", T0 + H)
    kit.tick(T0 + 2 * H)
    sent = kit.sends()
    offers = {(c, t) for c, t, _ in sent if t.endswith("offer")}
    assert ("p1", "gold_offer") in offers and ("p0", "plain_offer") in offers and len(offers) == n
    variants = [t for _, t, _ in sent if t.startswith("variant")]
    holdout = [e for e in kit.enrollments() if e.status == "holdout"]
    assert len(variants) + len(holdout) == n
    assert 5 <= len(holdout) <= 40  # about 10%
    assert abs(variants.count("variant_a") - variants.count("variant_b")) < 50
    assert len([t for _, t, _ in sent if t == "closing"]) == n - len(holdout)
    with kit.engine.connect() as conn:
        from engine.db.schema import customers

        attrs = conn.execute(
            select(customers.c.attributes).where(customers.c.external_id == "p3")
        ).scalar_one()
    assert attrs["winback_sent"] is True and attrs["plan"] == "gold"
    # the assignment is stable: the same customer gets the same variant in a second occurrence
    first = {e.customer_id: e.variant for e in kit.enrollments()}
    for i in range(n):
        kit.track(f"p{i}", "came_back", T0 + 3 * H)
    kit.tick(T0 + 4 * H)
    second = {e.customer_id: e.variant for e in kit.enrollments()[n:]}
    assert second == first


SCHEDULE_RULE = """
id: monday_digest
trigger:
  schedule: "0 9 * * 1"
  timezone: customer
  audience: {stage: {in: [awareness, consideration]}}
steps:
  - send: digest
"""


def test_schedule_fires_at_nine_in_each_customers_timezone(kit: Kit) -> None:
    kit.rules(SCHEDULE_RULE)
    monday = utc("2026-11-02T00:00:00")
    kit.tick(monday - D)
    kit.identify("berlin", monday - 2 * H, timezone="Europe/Berlin")
    kit.identify("ny", monday - 2 * H, timezone="America/New_York")
    kit.tick(monday + 8 * H + 30 * (H / 60))  # 09:30 in Berlin (UTC+1), 03:30 in New York
    assert [s[0] for s in kit.sends()] == ["berlin"]
    kit.tick(monday + 15 * H)  # 10:00 in New York
    assert sorted(s[0] for s in kit.sends()) == ["berlin", "ny"]
    kit.tick(monday + 16 * H)
    assert len(kit.sends()) == 2


ANNIVERSARY_RULE = """
id: birthday
trigger:
  anniversary: {attribute: birthday}
steps:
  - send: happy_birthday
"""


def test_anniversary_fires_yearly_on_the_date(kit: Kit) -> None:
    kit.rules(ANNIVERSARY_RULE)
    kit.tick(utc("2026-11-03T12:00:00"))
    kit.identify("liv", utc("2026-11-03T12:00:00"), birthday="1990-11-05")
    kit.identify("max", utc("2026-11-03T12:00:00"), birthday="1985-12-24")
    kit.tick(utc("2026-11-04T12:00:00"))
    assert kit.sends() == []
    kit.tick(utc("2026-11-05T06:00:00"))
    assert kit.sends() == [("liv", "happy_birthday", "due")]


def test_two_concurrent_ticks_create_no_duplicates(kit: Kit) -> None:
    kit.tick(T0)
    for i in range(50):
        kit.identify(f"q{i}", T0)
        kit.track(f"q{i}", "cart_updated", T0)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            kit.tick(T0 + 2 * H)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with kit.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sends)).scalar() == 50
        assert conn.execute(select(func.count()).select_from(enrollments)).scalar() == 50


def test_a_tick_before_the_previous_one_is_refused(kit: Kit) -> None:
    from engine.errors import JourneyError

    kit.tick(T0)
    with pytest.raises(JourneyError, match="before the previous tick"):
        kit.tick(T0 - H)


BROWSE_RULE = """
id: browse
trigger:
  inactivity: {event: product_viewed, until: [cart_updated], for: 4h}
conditions:
  - {not: {event: order_placed}}
  - {event: product_viewed, count: {gte: 2}}
steps:
  - send: browse_reminder
"""


def test_conditions_on_events_inside_an_inactivity_trigger(kit: Kit) -> None:
    kit.rules(BROWSE_RULE)
    kit.tick(T0)
    for cid, views, bought in (("viewer", 2, False), ("buyer", 2, True), ("glance", 1, False)):
        kit.identify(cid, T0)
        for i in range(views):
            kit.track(cid, "product_viewed", T0 + i * (H / 60))
        if bought:
            kit.track(cid, "order_placed", T0 - 3 * H)
    kit.tick(T0 + 5 * H)
    assert kit.sends() == [("viewer", "browse_reminder", "due")]


def test_the_first_tick_lists_only_the_events_a_trigger_can_still_fire_on(kit: Kit) -> None:
    # a full tick re-evaluates every customer's stage, so a year of history need not be copied
    kit.identify("old", T0 - 10 * D)
    kit.track("old", "order_placed", T0 - 10 * D)
    kit.identify("recent", T0 - 5 * H)
    kit.track("recent", "cart_updated", T0 - 5 * H)
    result = kit.tick(T0)
    assert result.new_events == 1
    assert result.stage_changes == 2
