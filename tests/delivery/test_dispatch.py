"""Dispatch: due rows are claimed once, handed out in batches per channel, and taken back when a
worker or a task is lost."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from engine.db.schema import customers, sends
from engine.delivery.channels.stub import StubEmailChannel
from engine.delivery.deliverer import Deliverer, deliver_batch
from engine.delivery.dispatch import claim, dispatch_due, recover
from engine.delivery.ledger import LEASE
from engine.settings import Settings
from tests.support.kit import CART_RULE, Kit
from tests.support.services import utc

NOW = utc("2026-11-02T10:00:00")


class Enqueued:
    """Records what dispatch hands to the broker."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int]]] = []

    def __call__(self, channel: str, ids: list[int]) -> None:
        self.calls.append((channel, list(ids)))

    def ids(self) -> list[int]:
        return [i for _, batch in self.calls for i in batch]


def add_customer(engine: Engine, n: int) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                customers.insert()
                .values(
                    external_id=f"c{n}",
                    email=f"c{n}@example.com",
                    first_name=f"C{n}",
                    attributes={},
                    salt=n,
                    created_at=NOW - timedelta(days=1),
                )
                .returning(customers.c.id)
            ).scalar_one()
        )


def add_send(
    engine: Engine,
    customer_id: int,
    *,
    step: str = "0",
    channel: str = "email",
    priority: int = 0,
    due_at: datetime = NOW,
    status: str = "due",
    **values: Any,
) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                sends.insert()
                .values(
                    rule_id="cart_abandonment",
                    step=step,
                    customer_id=customer_id,
                    occurrence=1,
                    template="cart_reminder",
                    channel=channel,
                    priority=priority,
                    due_at=due_at,
                    created_at=NOW - timedelta(hours=1),
                    status=status,
                    **values,
                )
                .returning(sends.c.id)
            ).scalar_one()
        )


def status_of(engine: Engine, send_id: int) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(select(sends.c.status, sends.c.reason).where(sends.c.id == send_id)).one()
    return str(row.status), row.reason


def test_due_sends_go_out_in_batches_per_channel_highest_priority_first(db: Engine) -> None:
    cids = [add_customer(db, n) for n in range(6)]
    email = [add_send(db, c, due_at=NOW - timedelta(minutes=n)) for n, c in enumerate(cids[:4])]
    urgent = add_send(db, cids[4], priority=10)
    hooks = [add_send(db, c, step="1", channel="webhook") for c in cids[:2]]
    later = add_send(db, cids[5], due_at=NOW + timedelta(seconds=1))
    enqueue = Enqueued()

    stats = dispatch_due(db, Settings(), now=NOW, enqueue=enqueue, batch_size=2)

    assert (stats.queued, stats.batches) == (7, 4)
    assert enqueue.calls == [
        ("email", [urgent, email[3]]),
        ("email", [email[2], email[1]]),
        ("email", [email[0]]),
        ("webhook", hooks),
    ]
    assert status_of(db, urgent)[0] == "queued" and status_of(db, later)[0] == "due"


def test_dispatching_twice_hands_each_send_out_once(db: Engine) -> None:
    ids = [add_send(db, add_customer(db, n)) for n in range(3)]
    enqueue = Enqueued()
    dispatch_due(db, Settings(), now=NOW, enqueue=enqueue)
    again = dispatch_due(db, Settings(), now=NOW + timedelta(minutes=1), enqueue=enqueue)
    assert again.queued == 0
    assert sorted(enqueue.ids()) == ids


def test_a_send_whose_worker_died_is_taken_back_after_its_lease(db: Engine) -> None:
    cid = add_customer(db, 1)
    dead = add_send(db, cid, status="sending", lease_until=NOW - timedelta(seconds=1))
    alive = add_send(db, cid, step="2", status="sending", lease_until=NOW + timedelta(minutes=4))
    enqueue = Enqueued()
    stats = dispatch_due(db, Settings(), now=NOW, enqueue=enqueue)
    assert (stats.recovered, enqueue.ids()) == (1, [dead])
    assert status_of(db, alive) == ("sending", None)


def test_a_send_whose_task_was_lost_is_queued_again_after_a_lease(db: Engine) -> None:
    cid = add_customer(db, 1)
    lost = add_send(db, cid, status="queued", queued_at=NOW - LEASE - timedelta(seconds=1))
    waiting = add_send(db, cid, step="2", status="queued", queued_at=NOW - timedelta(minutes=1))
    assert recover(db, now=NOW) == 1
    assert status_of(db, lost) == ("due", "recovered")
    assert status_of(db, waiting) == ("queued", None)


def test_a_queued_send_is_sent_by_one_worker_only_when_its_task_arrives_twice(
    db: Engine, tmp_path: Path
) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE)
    send_id = add_send(db, add_customer(db, 1))
    claim(db, now=NOW, limit=10)
    settings = Settings(database_url=str(db.url), templates_dir=tmp_path / "templates", secret_key="k")
    stub = StubEmailChannel()
    first = deliver_batch(db, settings, [send_id], now=NOW, ruleset=kit.ruleset, channels={"email": stub})
    second = deliver_batch(db, settings, [send_id], now=NOW, ruleset=kit.ruleset, channels={"email": stub})
    assert (first.sent, second.sent, second.skipped) == (1, 0, 1)
    assert len(stub.messages) == 1 and status_of(db, send_id)[0] == "sent"


def test_two_dispatchers_at_once_never_claim_the_same_send(db: Engine) -> None:
    cid = add_customer(db, 1)
    ids = [add_send(db, cid, step=str(n)) for n in range(120)]
    claimed: list[list[int]] = [[], []]

    def run(slot: int) -> None:
        while rows := claim(db, now=NOW, limit=7):
            claimed[slot].extend(i for i, _ in rows)

    threads = [threading.Thread(target=run, args=(slot,)) for slot in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed[0] + claimed[1]) == ids  # every send once, none twice


def test_postgres_claims_skip_rows_another_dispatcher_holds(db: Engine) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite's write transaction is exclusive")
    cid = add_customer(db, 1)
    ids = [add_send(db, cid, step=str(n)) for n in range(5)]
    with db.connect() as other, other.begin():
        held = other.execute(
            select(sends.c.id).order_by(sends.c.id).limit(2).with_for_update(skip_locked=True)
        ).scalars()
        held_ids = list(held)
        rows = claim(db, now=NOW, limit=10)  # does not wait for the other transaction
    assert held_ids == ids[:2]
    assert [i for i, _ in rows] == ids[2:]


def test_without_a_broker_dispatch_delivers_in_process_to_the_outbox(db: Engine, tmp_path: Path) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE)
    cids = [add_customer(db, n) for n in range(3)]
    ids = [add_send(db, c) for c in cids]
    settings = Settings(
        database_url=str(db.url),
        email_url=f"file://{tmp_path / 'outbox'}",
        rules_dir=tmp_path / "rules",
        templates_dir=tmp_path / "templates",
        secret_key="k",
    )
    stats = dispatch_due(db, settings, now=NOW, enqueue=None)
    assert stats.as_dict() == {"recovered": 0, "queued": 3, "batches": 1, "sent": 3}
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    recipients = sorted(str(message_from_bytes(f.read_bytes())["To"]) for f in files)
    assert recipients == [f"C{n} <c{n}@example.com>" for n in range(3)]
    with db.connect() as conn:
        rows = conn.execute(select(sends).order_by(sends.c.id)).all()
    assert [(r.id, r.customer_id, r.channel, r.status) for r in rows] == [
        (i, c, "email", "sent") for i, c in zip(ids, cids, strict=True)
    ]
    by_id = {str(message_from_bytes(f.read_bytes())["Message-ID"]): f for f in files}
    assert sorted(by_id) == sorted(r.message_id for r in rows)


def test_a_deliverer_made_once_serves_many_batches(db: Engine, tmp_path: Path) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE)
    settings = Settings(database_url=str(db.url), templates_dir=tmp_path / "templates", secret_key="k")
    stub = StubEmailChannel()
    deliverer = Deliverer.create(db, settings, kit.ruleset, channels={"email": stub})
    for n in range(3):
        add_send(db, add_customer(db, n))
        dispatch_due(db, settings, now=NOW + timedelta(minutes=n), deliverer=deliverer)
    assert len(stub.messages) == 3
