"""Stopping a worker the way an orchestrator does: SIGTERM mid-batch lets the batch finish."""

from __future__ import annotations

import signal

import pytest

from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from tests.support.kit import H, Kit
from tests.support.smtp import Recorder
from tests.support.waiting import wait_for
from tests.support.workers import T0, Start, carts, count
from workers.enqueue import celery_enqueuer

#: Celery worker subprocesses
pytestmark = pytest.mark.slow


def test_sigterm_mid_batch_lets_the_batch_finish_and_exits_cleanly(
    shop: tuple[Kit, Settings, Recorder],
    start_worker: Start,
) -> None:
    kit, settings, smtp = shop
    n = 40
    carts(kit, n)
    kit.tick(T0 + 2 * H)
    smtp.delay = 0.05  # 50 ms per message: the signal lands while the batch is being sent
    worker = start_worker(settings)
    dispatch_due(kit.engine, settings, now=T0 + 2 * H, enqueue=celery_enqueuer(settings), batch_size=n)
    wait_for(lambda: len(smtp.messages) >= 5)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    assert len(smtp.messages) == n  # the batch in flight finished before the worker left
    assert max(smtp.by_message_id().values()) == 1
    assert count(kit.engine, "sent") == n and count(kit.engine, "sending") == 0
