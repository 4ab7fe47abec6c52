"""Fleet operations: several schedulers coordinate, a dead leader is replaced, SIGTERM is clean, and
`journey health` tells what is unwell."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from engine.cli import main
from engine.db import make_engine
from engine.db.schema import meta, sends, ticks
from tests.support.metrics import scrape_until
from tests.support.services import ROOT, free_port, need_service
from tests.support.waiting import wait_for

#: `journey run` fleets in subprocesses
pytestmark = pytest.mark.slow


def start_scheduler(
    url: str, rules: Path, out: Path, *extra: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "JOURNEY_DATABASE_URL": url,
        "JOURNEY_RULES_DIR": str(rules),
        "JOURNEY_TEMPLATES_DIR": str(ROOT / "message_templates"),
        "JOURNEY_EMAIL_URL": f"file://{out}",
        "JOURNEY_SECRET_KEY": "k",
    }
    env.pop("JOURNEY_BROKER_URL", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from engine.cli import main; sys.exit(main())",
            "run",
            "--every",
            "1s",
            "--dispatch-every",
            "1s",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if log is None else log.open("wb"),
    )


@pytest.fixture
def fleet(pg_database: str, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    from tests.support.services import truncate as _truncate

    engine = make_engine(pg_database)
    _truncate(engine)
    engine.dispose()
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "stages.yaml").write_text((ROOT / "rules" / "stages.yaml").read_text())
    (rules / "cart.yaml").write_text((ROOT / "rules" / "cart_abandonment.yaml").read_text())
    yield pg_database, rules, tmp_path / "outbox"


def leader(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            raw = conn.execute(select(meta.c.value).where(meta.c.key == "scheduler.last_tick")).scalar()
            return None if raw is None else str(json.loads(raw)["owner"])
    finally:
        engine.dispose()


def tick_rows(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(ticks).order_by(ticks.c.id)))
    finally:
        engine.dispose()


def tick_lines(log: Path) -> list[datetime]:
    """When each tick this scheduler evaluated was logged (its JSON `tick` lines)."""
    times = []
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by SIGKILL
        if isinstance(entry, dict) and entry.get("event") == "tick":
            times.append(datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")))
    return times


def test_two_schedulers_evaluate_once_per_interval_and_a_killed_leader_is_replaced(
    fleet: tuple[str, Path, Path], tmp_path: Path
) -> None:
    from engine.ingest.writer import ingest_events

    url, rules, out = fleet
    engine = make_engine(url)
    started = datetime.now(UTC)
    carts = [
        {
            "type": "track",
            "customer_id": f"c{i}",
            "event": "cart_updated",
            "timestamp": (started - timedelta(hours=2)).isoformat(),
            "properties": {"cart_value": 10 + i},
        }
        for i in range(5)
    ] + [
        {
            "type": "identify",
            "customer_id": f"c{i}",
            "timestamp": started.isoformat(),
            "traits": {"email": f"c{i}@x.test"},
        }
        for i in range(5)
    ]
    ingest_events(engine, carts, received_at=started)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a = start_scheduler(url, rules, out, log=logs[0])
    b = start_scheduler(url, rules, out, log=logs[1])
    try:
        wait_for(lambda: len(tick_rows(url)) >= 4 and len(list(out.glob("*.eml"))) == 5)
        first = leader(url)
        victim = a if first and first.endswith(f":{a.pid}") else b
        survivor = b if victim is a else a
        killed_at = datetime.now(UTC)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        before = len(tick_rows(url))
        wait_for(
            lambda: (leader(url) or "").endswith(f":{survivor.pid}") and len(tick_rows(url)) > before + 2,
            timeout=30,
        )
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in (a, b):
            p.wait(20)
    stopped = datetime.now(UTC)
    victim_ticks = tick_lines(logs[0] if victim is a else logs[1])
    survivor_ticks = tick_lines(logs[1] if victim is a else logs[0])
    # exactly one scheduler evaluates at a time: the leader until it died, then the other one
    assert victim_ticks and all(t <= killed_at for t in victim_ticks)
    assert survivor_ticks and all(t > killed_at for t in survivor_ticks)
    # ... once per interval (1 s): no more ticks than intervals, the windows following each other
    rows = tick_rows(url)
    assert len(rows) == len(victim_ticks) + len(survivor_ticks)
    assert len(rows) <= (stopped - started).total_seconds() / 1.0 + 2
    for prev, cur in zip(rows, rows[1:], strict=False):
        assert cur.prev_now == prev.now
    # the survivor took over within one interval (plus the tick's own time on a busy machine)
    assert (survivor_ticks[0] - killed_at).total_seconds() < 2.5
    # every cart reminder went out once: one ledger row, one file, one Message-ID each
    with engine.connect() as conn:
        sent = conn.execute(
            select(sends.c.rule_id, sends.c.customer_id, sends.c.status).order_by(sends.c.customer_id)
        ).all()
    engine.dispose()
    assert [(r.rule_id, r.status) for r in sent] == [("cart_abandonment", "sent")] * 5
    ids = [
        line.split(":", 1)[1].strip()
        for f in out.glob("*.eml")
        for line in f.read_text().splitlines()
        if line.lower().startswith("message-id:")
    ]
    assert len(ids) == len(set(ids)) == 5


def test_sigterm_finishes_the_tick_and_exits_cleanly(fleet: tuple[str, Path, Path]) -> None:
    url, rules, out = fleet
    p = start_scheduler(url, rules, out)
    wait_for(lambda: len(tick_rows(url)) >= 1)
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    assert all(row.finished_at is not None for row in tick_rows(url))


def test_health_detects_a_stale_scheduler_and_a_stopped_broker(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.delenv("JOURNEY_BROKER_URL", raising=False)
    assert main(["health"]) == 1
    assert "scheduler: no tick yet" in capsys.readouterr().out
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_EMAIL_URL", "file://" + str(Path(db_url.split("///")[-1]).parent / "out"))
    assert main(["run", "--once"]) == 0
    capsys.readouterr()
    assert main(["health"]) == 0
    later = "2099-01-01T00:00:00Z"
    assert main(["health", "--now", later]) == 1
    assert "scheduler: stale: last tick" in capsys.readouterr().out
    # a broker of the test's own, stopped under it
    if not _has_redis_server():
        pytest.skip("redis-server binary not installed")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    try:
        monkeypatch.setenv("JOURNEY_BROKER_URL", f"redis://127.0.0.1:{port}/0")
        wait_for(lambda: main(["health"]) == 0, timeout=10)
        server.terminate()
        server.wait(10)
        capsys.readouterr()
        assert main(["health"]) == 1
        assert "broker: FAILED" in capsys.readouterr().out
    finally:
        if server.poll() is None:
            server.kill()


def _has_redis_server() -> bool:
    need_service("Redis", "127.0.0.1", 6379)
    from shutil import which

    return which("redis-server") is not None


def test_the_scheduler_serves_metrics_after_a_tick(fleet: tuple[str, Path, Path]) -> None:
    url, rules, out = fleet
    port = free_port()
    p = start_scheduler(url, rules, out, "--metrics-port", str(port))
    try:
        wait_for(lambda: len(tick_rows(url)) >= 1)
        body = scrape_until(
            f"http://127.0.0.1:{port}/metrics",
            lambda page: re.search(r"^journey_ticks_total [1-9]", page, flags=re.M) is not None,
            timeout=45,
        )
        for series in (
            "journey_tick_seconds_bucket",
            "journey_scheduler_leader 1.0",
            "journey_queue_lag_seconds",
            'journey_rule_matches_total{rule="cart_abandonment"}',
        ):
            assert series in body, series
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0


def test_sigterm_in_the_middle_of_a_tick_lets_it_finish(fleet: tuple[str, Path, Path]) -> None:
    """SIGTERM lands while a tick's transaction is running: the tick commits whole, then exit 0."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    from engine.ingest.writer import ingest_events
    from engine.sim.generate import ShopConfig, generate_events

    url, rules, out = fleet
    engine = make_engine(url)
    now = datetime.now(UTC)
    events = list(generate_events(ShopConfig(customers=4000, days=2, start=now - timedelta(days=2), seed=9)))
    ingest_events(engine, events, received_at=now)
    p = start_scheduler(url, rules, out, "--every", "60s")

    def ticking() -> bool:
        """The scheduler is inside its first (full) tick: a write transaction is open. Any moment of
        the tick counts, not only the moments a particular statement runs."""
        with engine.connect() as conn:
            busy = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
                )
            ).scalar_one()
        return bool(busy)

    try:
        wait_for(ticking, timeout=60)
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0
    finally:
        if p.poll() is None:
            p.kill()
    rows = tick_rows(url)
    assert rows and all(row.finished_at is not None for row in rows)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ticks)).scalar_one() == len(rows)
        staged = conn.execute(text("SELECT count(*) FROM customers WHERE stage IS NOT NULL")).scalar_one()
        everyone = conn.execute(text("SELECT count(*) FROM customers")).scalar_one()
    assert staged == everyone > 1000  # the interrupted tick completed whole: every customer has a stage
    engine.dispose()


def test_the_leaders_lock_connection_is_never_left_idle_in_a_transaction(pg_database: str) -> None:
    from engine.scheduler import Leadership

    engine = make_engine(pg_database)
    leadership = Leadership(engine, "test:1", lease=timedelta(seconds=3))
    now = datetime.now(UTC)
    try:
        assert leadership.acquire(now) and leadership.acquire(now)  # holds it, checks it again
        with engine.connect() as conn:
            states = (
                conn.execute(
                    text(
                        "SELECT state FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()"
                    )
                )
                .scalars()
                .all()
            )
        assert "idle in transaction" not in states and "idle" in states
        other = make_engine(pg_database)
        assert not Leadership(other, "test:2", lease=timedelta(seconds=3)).acquire(now)
        other.dispose()
    finally:
        leadership.release()
        engine.dispose()
