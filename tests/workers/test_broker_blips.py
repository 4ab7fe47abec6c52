"""A broker that goes away and comes back: nothing waits for a lease.

A dispatch that meets a dead broker puts its claim back to due at once (and says why in its
structured log); tasks a restarted Redis lost are published again once their queue is empty,
and a normal backlog (tasks waiting their turn) is never multiplied."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, func, select

from engine.db.schema import sends
from engine.delivery.dispatch import REPUBLISH_AFTER, dispatch_due
from engine.logs import configure
from engine.scheduler import Scheduler
from engine.settings import Settings
from tests.delivery.test_dispatch import NOW, add_customer, add_send
from tests.support.services import free_port
from workers.enqueue import celery_enqueuer


def statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(sends.c.status, func.count()).group_by(sends.c.status)).all()
    return {str(s): int(n) for s, n in rows}


def due_sends(engine: Engine, n: int) -> list[int]:
    return [add_send(engine, add_customer(engine, i)) for i in range(n)]


def dead_broker() -> Settings:
    """A broker URL where nothing answers (a free port: connections are refused at once)."""
    return Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0")


def test_a_dispatch_that_meets_a_dead_broker_leaves_its_claim_due_again(db: Engine) -> None:
    due_sends(db, 5)
    settings = dead_broker()
    with pytest.raises(Exception):  # noqa: B017 - whatever kombu raises for a refused connection
        dispatch_due(db, settings, now=NOW, enqueue=celery_enqueuer(settings), batch_size=2)
    assert statuses(db) == {"due": 5}  # not 'queued' for a lease: the next dispatch takes them


def test_dispatch_failed_is_logged_with_the_exception(
    db: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    due_sends(db, 2)
    settings = dead_broker().with_(
        database_url=db.url.render_as_string(hide_password=False), rules_dir=tmp_path
    )
    configure("json")
    scheduler = Scheduler(
        settings,
        db,
        every=timedelta(seconds=30),
        dispatch_every=timedelta(seconds=5),
        clock=lambda: NOW,
        enqueue=celery_enqueuer(settings),
    )
    capsys.readouterr()
    scheduler.dispatch_once()  # does not raise: the next interval tries again
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line.get("event") == "dispatch failed"]
    assert len(failed) == 1, lines
    assert failed[0]["level"] == "error"
    assert "Connection refused" in failed[0]["error"] or "Error" in failed[0]["error"]
    assert "Traceback" in failed[0]["exception"]
    assert statuses(db) == {"due": 2}


@pytest.mark.redis
def test_tasks_a_restarted_broker_lost_are_published_again_once_their_queue_is_empty(
    db: Engine, broker: str
) -> None:
    due_sends(db, 6)
    settings = Settings(broker_url=broker)
    enqueue = celery_enqueuer(settings)
    stats = dispatch_due(db, settings, now=NOW, enqueue=enqueue, batch_size=3)
    assert (stats.queued, stats.batches) == (6, 2)
    assert enqueue.waiting("email") == 2
    later = NOW + REPUBLISH_AFTER + timedelta(seconds=1)
    # no worker took them yet: they are waiting their turn, nothing is published twice
    assert dispatch_due(db, settings, now=later, enqueue=enqueue, batch_size=3).republished == 0
    assert enqueue.waiting("email") == 2
    redis.Redis.from_url(broker).flushdb()  # Redis restarted without its data: the tasks are gone
    assert enqueue.waiting("email") == 0
    # too soon after the claim to tell a lost task from one on its way
    assert dispatch_due(db, settings, now=NOW + timedelta(seconds=5), enqueue=enqueue).republished == 0
    stats = dispatch_due(db, settings, now=later, enqueue=enqueue, batch_size=3)
    assert stats.republished == 6 and enqueue.waiting("email") == 2
    assert statuses(db) == {"queued": 6}
    # published once: the next dispatch finds them waiting again
    again = later + REPUBLISH_AFTER + timedelta(seconds=1)
    assert dispatch_due(db, settings, now=again, enqueue=enqueue).republished == 0


def test_without_a_broker_that_can_count_its_queue_nothing_is_published_again(db: Engine) -> None:
    due_sends(db, 2)

    calls: list[list[int]] = []
    dispatch_due(db, Settings(), now=NOW, enqueue=lambda _c, ids: calls.append(ids))
    later = NOW + timedelta(minutes=2)
    assert dispatch_due(db, Settings(), now=later, enqueue=lambda _c, ids: calls.append(ids)).republished == 0
    assert len(calls) == 1


def test_the_send_lease_is_a_setting(db: Engine) -> None:
    cid = add_customer(db, 1)
    add_send(db, cid, status="queued", queued_at=NOW - timedelta(seconds=61))
    assert Settings.from_env({"JOURNEY_SEND_LEASE": "1m"}).send_lease == timedelta(minutes=1)
    assert Settings.from_env({}).send_lease == timedelta(minutes=5)
    assert dispatch_due(db, Settings(), now=NOW, enqueue=lambda _c, _i: None).recovered == 0
    short = Settings.from_env({"JOURNEY_SEND_LEASE": "60s"})
    assert dispatch_due(db, short, now=NOW, enqueue=lambda _c, _i: None).recovered == 1


@pytest.mark.parametrize("bad", ["5", "five minutes", "0s", "-1m"])
def test_a_bad_send_lease_is_a_located_error(bad: str) -> None:
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="JOURNEY_SEND_LEASE"):
        Settings.from_env({"JOURNEY_SEND_LEASE": bad})
