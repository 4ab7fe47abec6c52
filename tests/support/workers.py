"""Fixtures for the worker tests: a real Redis broker, a real SMTP server, `celery -A workers
worker` subprocesses, and a shop whose due sends they deliver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from engine.db.schema import sends
from engine.settings import Settings
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import BROKER_URL, ROOT, need_service, utc
from tests.support.smtp import Recorder, smtp_server

T0 = utc("2026-11-01T10:00:00")


@pytest.fixture
def broker() -> str:
    need_service("Redis", "127.0.0.1", 6379)
    import redis

    redis.Redis.from_url(BROKER_URL).flushdb()
    return BROKER_URL


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
        children = pool_children(proc.pid)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        for child in children:
            kill_quietly(child)


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


def pool_children(pid: int) -> list[int]:
    """The pool processes of this worker (by parent pid, not by name: other workers may be running)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
