"""Real Celery workers on the real Redis: due sends arrive once, even when a worker is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from tests.support.kit import H, Kit
from tests.support.services import BROKER_URL, ROOT, utc
from tests.support.smtp import Recorder
from tests.support.waiting import wait_for
from tests.support.workers import T0, Start, carts, count, kill_quietly, pool_children
from workers.enqueue import celery_enqueuer

#: Celery worker subprocesses
pytestmark = pytest.mark.slow


def test_a_real_worker_delivers_due_sends_once(
    shop: tuple[Kit, Settings, Recorder], start_worker: Start
) -> None:
    kit, settings, smtp = shop
    carts(kit, 30)
    kit.tick(T0 + 2 * H)
    start_worker(settings)
    stats = dispatch_due(
        kit.engine, settings, now=T0 + 2 * H, enqueue=celery_enqueuer(settings), batch_size=10
    )
    assert (stats.queued, stats.batches) == (30, 3)
    wait_for(lambda: count(kit.engine, "sent") == 30)
    assert dispatch_due(kit.engine, settings, now=T0 + 2 * H, enqueue=celery_enqueuer(settings)).queued == 0
    assert len(smtp.messages) == 30
    assert max(smtp.by_message_id().values()) == 1


def test_a_worker_killed_mid_batch_loses_nothing(
    shop: tuple[Kit, Settings, Recorder], start_worker: Start
) -> None:
    kit, settings, smtp = shop
    n = 60
    carts(kit, n)
    kit.tick(T0 + 2 * H)
    smtp.delay = 0.05  # 50 ms per message: the kill lands mid-batch
    worker = start_worker(settings)
    dispatch_due(kit.engine, settings, now=T0 + 2 * H, enqueue=celery_enqueuer(settings), batch_size=30)
    wait_for(lambda: len(smtp.messages) >= 10)
    children = pool_children(worker.pid)
    worker.send_signal(signal.SIGKILL)
    worker.wait(30)
    for child in children:  # the pool's processes would otherwise keep consuming
        kill_quietly(child)
    delivered_before = len(smtp.messages)
    assert delivered_before < n
    # a new worker; the dispatcher, after the lease, takes back what the dead one held
    start_worker(settings)
    later = utc("2026-11-01T12:00:00") + timedelta(days=1)  # past any lease taken at wall-clock time
    later = max(later, datetime.now(UTC) + timedelta(minutes=10))
    stats = dispatch_due(kit.engine, settings, now=later, enqueue=celery_enqueuer(settings), batch_size=30)
    assert stats.recovered > 0
    wait_for(lambda: count(kit.engine, "sent") == n)
    per_id = smtp.by_message_id()
    assert len(per_id) == n  # nothing lost
    duplicated = sum(c - 1 for c in per_id.values())
    # each 'sent' mark is committed before the next message leaves: the one message the killed
    # pool process was handing over is all that can arrive twice (same Message-ID)
    assert duplicated <= 1
    assert len(smtp.messages) <= n + 1


def test_the_celery_app_acks_late_and_routes_by_channel() -> None:
    from workers.app import make_app

    app = make_app(Settings(broker_url=BROKER_URL))
    conf = app.conf
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost, conf.worker_prefetch_multiplier) == (
        True,
        True,
        1,
    )
    assert conf.task_ignore_result and conf.worker_send_task_events and conf.task_send_sent_event
    assert sorted(q.name for q in conf.task_queues) == ["email", "webhook"]
    assert "workers.tasks.deliver_sends" in app.tasks
    assert "workers.tasks.noop" not in app.tasks  # the bench registers its own baseline task


def test_workers_without_a_broker_say_how_to_set_one() -> None:
    from engine.errors import ConfigError
    from workers.app import make_app

    with pytest.raises(ConfigError, match="JOURNEY_BROKER_URL is not set.*redis://"):
        make_app(Settings())


def test_importing_the_engine_or_the_workers_package_makes_no_celery_app() -> None:
    code = (
        "import sys, engine.delivery.dispatch, engine.delivery.deliverer\n"
        "assert 'celery' not in sys.modules, 'engine imported celery'\n"
        "import workers\n"
        "assert workers._app is None, 'an app was made on import'\n"
        "from celery.app.utils import find_app\n"
        "found = find_app('workers')  # what `celery -A workers` does\n"
        "print(type(found).__name__, found.main, found is workers.celery, found.conf.broker_url)\n"
    )
    env = {**os.environ, "JOURNEY_BROKER_URL": BROKER_URL}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Celery", "journey", "True", BROKER_URL]


def test_a_worker_logs_each_successful_send_as_one_info_json_line_not_a_warning(
    shop: tuple[Kit, Settings, Recorder], start_worker: Start, tmp_path: Path
) -> None:
    import json

    kit, settings, _ = shop
    carts(kit, 3)
    kit.tick(T0 + 2 * H)
    worker = start_worker(settings)
    dispatch_due(kit.engine, settings, now=T0 + 2 * H, enqueue=celery_enqueuer(settings))
    wait_for(lambda: count(kit.engine, "sent") == 3)
    worker.terminate()
    worker.wait(30)
    lines = (tmp_path / "worker0.log").read_text().splitlines()
    sent = [line for line in lines if '"status": "sent"' in line]
    assert len(sent) == 3, lines
    for line in sent:
        assert json.loads(line)["level"] == "info"  # the whole line is the JSON record
    assert not [line for line in lines if "WARNING/" in line], lines  # nothing re-logged by Celery
