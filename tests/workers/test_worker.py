"""Real Celery workers on the real Redis: due sends arrive once, even when a worker is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from engine.deliver import GROUP
from engine.dispatch import celery_enqueuer, dispatch_due
from engine.schema import sends
from engine.settings import Settings
from tests.conftest import REDIS_URL, ROOT, need_service, utc
from tests.engine.evalkit import CART_RULE, H, Kit
from tests.smtp import Recorder, smtp_server

T0 = utc("2026-11-01T10:00:00")
BROKER = REDIS_URL.rsplit("/", 1)[0] + "/13"


@pytest.fixture
def broker() -> str:
    need_service("Redis", "127.0.0.1", 6379)
    import redis

    redis.Redis.from_url(BROKER).flushdb()
    return BROKER


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    with smtp_server() as server:
        yield server


Start = Callable[[Settings], subprocess.Popen[bytes]]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Start]:
    """Starts `celery -A workers worker` processes; stops them (and their pool) after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(settings: Settings) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "JOURNEY_DATABASE_URL": settings.database_url,
            "JOURNEY_BROKER_URL": settings.broker_url or "",
            "JOURNEY_EMAIL_URL": settings.email_url,
            "JOURNEY_RULES_DIR": str(settings.rules_dir),
            "JOURNEY_TEMPLATES_DIR": str(settings.templates_dir),
            "JOURNEY_SECRET_KEY": settings.secret_key or "",
        }
        log = (tmp_path / f"worker{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers",
                "worker",
                "-Q",
                "email,webhook",
                "--concurrency",
                "1",
                "--loglevel",
                "WARNING",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        children = _children(proc.pid)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        for child in children:
            _kill(child)


def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def count(engine: Engine, status: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(sends).where(sends.c.status == status)).scalar_one()
        )


@pytest.fixture
def shop(
    db: Engine, tmp_path: Path, broker: str, smtp: tuple[Recorder, int]
) -> tuple[Kit, Settings, Recorder]:
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE, settings="quiet_hours: '23:59-00:00'\n")
    recorder, port = smtp
    settings = Settings(
        database_url=db.url.render_as_string(hide_password=False),
        broker_url=broker,
        email_url=f"smtp://127.0.0.1:{port}",
        rules_dir=tmp_path / "rules",
        templates_dir=ROOT / "message_templates",
        secret_key="test-secret",
    )
    kit.tick(T0 - H)
    return kit, settings, recorder


def carts(kit: Kit, n: int) -> None:
    kit.ingest(
        *[
            {
                "type": "identify",
                "customer_id": f"c{i}",
                "timestamp": "2026-11-01T09:00:00Z",
                "traits": {"email": f"c{i}@example.com", "first_name": f"C{i}"},
            }
            for i in range(n)
        ]
    )
    kit.ingest(
        *[
            {
                "type": "track",
                "customer_id": f"c{i}",
                "event": "cart_updated",
                "timestamp": "2026-11-01T10:00:00Z",
            }
            for i in range(n)
        ]
    )


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
    children = _children(worker.pid)
    worker.send_signal(signal.SIGKILL)
    worker.wait(30)
    for child in children:  # the pool's processes would otherwise keep consuming
        _kill(child)
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
    # the window: messages the SMTP server accepted but whose 'sent' marks died with the worker, at
    # most one group (they are written with the next group's check)
    assert duplicated <= GROUP


def _children(pid: int) -> list[int]:
    """The pool processes of this worker (by parent pid, not by name: other workers may be running)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_the_celery_app_acks_late_and_routes_by_channel() -> None:
    from workers.app import make_app

    app = make_app(Settings(broker_url=BROKER))
    conf = app.conf
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost, conf.worker_prefetch_multiplier) == (
        True,
        True,
        1,
    )
    assert conf.task_ignore_result and conf.worker_send_task_events and conf.task_send_sent_event
    assert sorted(q.name for q in conf.task_queues) == ["email", "webhook"]
    assert {"workers.tasks.deliver_sends", "workers.tasks.noop"} <= set(app.tasks)


def test_workers_without_a_broker_say_how_to_set_one() -> None:
    from engine.errors import ConfigError
    from workers.app import make_app

    with pytest.raises(ConfigError, match="JOURNEY_BROKER_URL is not set.*redis://"):
        make_app(Settings())


def test_importing_the_engine_or_the_workers_package_makes_no_celery_app() -> None:
    code = (
        "import sys, engine.dispatch, engine.deliver\n"
        "assert 'celery' not in sys.modules, 'engine imported celery'\n"
        "import workers\n"
        "assert workers._app is None, 'an app was made on import'\n"
        "from celery.app.utils import find_app\n"
        "found = find_app('workers')  # what `celery -A workers` does\n"
        "print(type(found).__name__, found.main, found is workers.celery, found.conf.broker_url)\n"
    )
    env = {**os.environ, "JOURNEY_BROKER_URL": BROKER}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Celery", "journey", "True", BROKER]
