"""The send-time policies, through a real Celery worker on Redis and a real SMTP server: an
unsubscribe recorded after the send was queued, a 451 that retries, a 550 that bounces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from engine.consent import unsubscribe
from engine.db.schema import customers, sends
from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from tests.support.kit import H, Kit
from tests.support.smtp import Recorder
from tests.support.waiting import wait_for
from tests.support.workers import T0, Start, carts, count
from workers.enqueue import celery_enqueuer

#: Celery worker subprocesses
pytestmark = pytest.mark.slow


def rows(kit: Kit) -> dict[str, tuple[str, str | None]]:
    with kit.engine.connect() as conn:
        found = conn.execute(
            select(customers.c.external_id, sends.c.status, sends.c.reason).join(
                customers, customers.c.id == sends.c.customer_id
            )
        )
        return {r.external_id: (r.status, r.reason) for r in found}


def test_a_real_worker_applies_unsubscribes_retries_and_bounces_at_send_time(
    shop: tuple[Kit, Settings, Recorder],
    start_worker: Start,
) -> None:
    kit, settings, smtp = shop
    carts(kit, 4)  # c0 … c3
    kit.tick(T0 + 2 * H)
    smtp.answers["c1@example.com"] = ["451 4.7.1 Greylisted, try again later"]
    smtp.answers["c2@example.com"] = ["550 5.1.1 No such user"]
    # queued on the broker first, with no worker running yet ...
    stats = dispatch_due(
        kit.engine, settings, now=T0 + 2 * H, enqueue=celery_enqueuer(settings), batch_size=4
    )
    assert stats.queued == 4
    # ... then c0 unsubscribes: the send already queued for c0 must not go
    with kit.engine.connect() as conn:
        c0 = conn.execute(select(customers.c.id).where(customers.c.external_id == "c0")).scalar_one()
    assert unsubscribe(kit.engine, c0, now=T0 + 2 * H, source="one-click", rule=None, send_id=None)
    start_worker(settings)
    wait_for(lambda: count(kit.engine, "queued") + count(kit.engine, "sending") == 0)
    got = rows(kit)
    assert got["c0"] == ("suppressed", "unsubscribed")
    assert got["c1"] == ("due", "retry")
    assert got["c2"] == ("failed", "refused")
    assert got["c3"] == ("sent", None)
    with kit.engine.connect() as conn:
        bounced = conn.execute(select(customers.c.email_suppressed_at).where(customers.c.external_id == "c2"))
        assert bounced.scalar_one() is not None
    # the retry is a row due later: the next dispatch after its backoff delivers it, once
    later = datetime.now(UTC) + timedelta(days=2)
    dispatch_due(kit.engine, settings, now=later, enqueue=celery_enqueuer(settings))
    wait_for(lambda: rows(kit)["c1"][0] == "sent")
    assert sorted(m["To"] for m in smtp.messages) == ["C1 <c1@example.com>", "C3 <c3@example.com>"]
    assert max(smtp.by_message_id().values()) == 1
