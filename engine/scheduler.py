"""`journey run`: the long-running scheduler (APScheduler 3, in-memory job store only).

Any number may run against one database: a leader election lets exactly one evaluate at a time.
PostgreSQL: a session advisory lock held on a dedicated connection (a dead leader's connection
drops and frees it; a follower retries every interval). SQLite: a lease row in `meta`. Everyone
may dispatch: claims are safe to run concurrently.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from engine import logs
from engine.db import is_postgres, upsert
from engine.schema import meta
from engine.settings import Settings

log = logs.get("journey.scheduler")
LEADER_LOCK = 0x4A6F757200  # "Jour"
HEARTBEAT = "scheduler.last_tick"
LEADER = "scheduler.leader"


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def put_meta(conn: Connection, key: str, value: str, now: datetime) -> None:
    stmt = upsert(conn, meta).values(key=key, value=value, updated_at=now)
    conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value, "updated_at": now}))


class Leadership:
    """Who evaluates. `acquire()` is cheap to call every interval."""

    def __init__(self, engine: Engine, owner: str, lease: timedelta) -> None:
        self.engine = engine
        self.owner = owner
        self.lease = lease
        self._conn: Connection | None = None

    def acquire(self, now: datetime) -> bool:
        if is_postgres(self.engine):
            if self._conn is not None:
                try:
                    self._conn.execute(select(1))
                    return True
                except Exception:  # noqa: BLE001 - a dropped connection lost the lock
                    self._conn = None
            # autocommit: the lock's connection never sits "idle in transaction", where a server's
            # idle_in_transaction_session_timeout would end it and hand the lead over needlessly
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = bool(conn.execute(select(func.pg_try_advisory_lock(LEADER_LOCK))).scalar())
            if got:
                self._conn = conn
            else:
                conn.close()
            return got
        with self.engine.begin() as conn:
            row = conn.execute(select(meta.c.value).where(meta.c.key == LEADER)).scalar()
            if row:
                holder, _, until = str(row).partition("|")
                if holder != self.owner and datetime.fromisoformat(until) > now:
                    return False
            put_meta(conn, LEADER, f"{self.owner}|{(now + self.lease).isoformat()}", now)
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(select(func.pg_advisory_unlock(LEADER_LOCK)))
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing anyway frees the lock
                pass
            self._conn = None


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        every: timedelta,
        dispatch_every: timedelta,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.every = every
        self.dispatch_every = dispatch_every
        self.clock = clock or (lambda: datetime.now(UTC))
        self.owner = owner_id()
        self.leadership = Leadership(engine, self.owner, lease=every * 3)
        self.stopping = threading.Event()
        self._ruleset: Any = None
        self.is_leader = False

    def ruleset(self) -> Any:
        if self._ruleset is None:
            from engine.rules.loader import load_ruleset

            self._ruleset = load_ruleset(self.settings.rules_dir, self.settings.templates_dir)
        return self._ruleset

    def tick_once(self) -> dict[str, Any] | None:
        """One interval: evaluate if leader, then dispatch. Returns the tick's figures, or None."""
        from engine.metrics import observe_tick
        from engine.tick import run_tick

        now = self.clock()
        self.is_leader = self.leadership.acquire(now)
        figures = None
        if self.is_leader:
            result = run_tick(self.engine, self.ruleset(), now=now)
            figures = result.as_dict()
            with self.engine.begin() as conn:
                put_meta(
                    conn,
                    HEARTBEAT,
                    json.dumps({"now": now.isoformat(), "owner": self.owner, **figures}, default=str),
                    now,
                )
                put_meta(conn, LEADER + ".owner", self.owner, now)
            observe_tick(result)
            log.info("tick", owner=self.owner, **figures)
        self.dispatch_once()
        from engine.metrics import LEADER as LEADER_GAUGE
        from engine.metrics import observe_queue_lag

        LEADER_GAUGE.set(1 if self.is_leader else 0)
        observe_queue_lag(self.engine, self.clock())
        return figures

    def dispatch_once(self) -> None:
        from engine.commands.core import dispatch_after_tick

        class _App:
            settings = self.settings
            engine = self.engine

        try:
            dispatch_after_tick(_App(), self.ruleset(), self.clock())  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a failed dispatch is retried next interval
            log.exception("dispatch failed")

    def run(self, *, once: bool = False) -> None:
        if once:
            try:
                self.tick_once()
            finally:
                self.leadership.release()
            return
        from apscheduler.schedulers.blocking import BlockingScheduler

        sched = BlockingScheduler(
            timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        sched.add_job(
            self.tick_once,
            "interval",
            seconds=self.every.total_seconds(),
            id="tick",
            next_run_time=datetime.now(UTC),
        )
        if self.dispatch_every < self.every:
            sched.add_job(
                self.dispatch_once, "interval", seconds=self.dispatch_every.total_seconds(), id="dispatch"
            )

        def stop(signum: int, _frame: Any) -> None:
            log.info("stopping", signal=signum, owner=self.owner)
            self.stopping.set()
            # finish the running tick (one transaction: nothing half-written), then return
            threading.Thread(target=sched.shutdown, kwargs={"wait": True}, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            sched.start()
        finally:
            self.leadership.release()
