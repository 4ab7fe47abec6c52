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

from sqlalchemy import Connection, Engine, select

from engine import logs
from engine.db import is_postgres, put_meta, try_advisory_lock
from engine.db.schema import meta
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import DispatchStats, Enqueue, dispatch_due, queue_lag
from engine.delivery.live import LiveRules
from engine.evaluate.tick import TickResult, run_tick
from engine.metrics import observe_scheduler, observe_tick
from engine.rules.loader import RuleSet
from engine.settings import Settings

log = logs.get("journey.scheduler")
LEADER_LOCK = 0x4A6F757200  # "Jour"
HEARTBEAT = "scheduler.last_tick"
LEADER = "scheduler.leader"


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def cycle(
    engine: Engine,
    settings: Settings,
    ruleset: RuleSet,
    *,
    now: datetime,
    backfill: timedelta | None = None,
    dispatch: bool = True,
    enqueue: Enqueue | None = None,
    realtime: bool = False,
) -> tuple[TickResult, DispatchStats | None]:
    """One cycle (`journey tick`): evaluate, then hand due sends to the workers through `enqueue`,
    or deliver them here, in-process, when there is no broker. `realtime`: `now` is the clock's
    (no --now), so a previous tick given a later --now makes this one wait, not fail."""
    result = run_tick(engine, ruleset, now=now, backfill=backfill, realtime=realtime)
    dispatched = None
    if dispatch:
        dispatched = dispatch_due(engine, settings, now=now, enqueue=enqueue, ruleset=ruleset)
    return result, dispatched


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
            got = try_advisory_lock(conn, LEADER_LOCK)
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
                self._conn.exec_driver_sql(f"SELECT pg_advisory_unlock({LEADER_LOCK})")
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
        enqueue: Enqueue | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.every = every
        self.dispatch_every = dispatch_every
        self.clock = clock or (lambda: datetime.now(UTC))
        #: hands batches to the workers; None delivers in-process (no broker)
        self.enqueue = enqueue
        self.owner = owner_id()
        self.leadership = Leadership(engine, self.owner, lease=every * 3)
        self.stopping = threading.Event()
        self._live: LiveRules | None = None
        self.is_leader = False

    def live(self) -> LiveRules:
        """The rule and template files as last checked clean (the first load fails loudly)."""
        if self._live is None:
            self._live = LiveRules(self.settings.rules_dir, self.settings.templates_dir)
        return self._live

    def ruleset(self) -> RuleSet:
        return self.live().ruleset

    def tick_once(self) -> dict[str, Any] | None:
        """One interval: evaluate if leader, then dispatch. Returns the tick's figures, or None.
        Changed rule and template files are taken first, when they check clean."""
        self.live().refresh()
        now = self.clock()
        self.is_leader = self.leadership.acquire(now)
        figures = None
        if self.is_leader:
            result = run_tick(self.engine, self.ruleset(), now=now, realtime=True)
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
        observe_scheduler(leader=self.is_leader, queue_lag_seconds=queue_lag(self.engine, self.clock()))
        return figures

    def _deliverer(self) -> Deliverer | None:
        """Without a broker, a deliverer for this dispatch, on the checked rules and templates
        (one per dispatch: the tick's and the dispatch job's may run at once)."""
        if self.enqueue is not None:
            return None
        live = self.live()
        deliverer = Deliverer.create(self.engine, self.settings, live.ruleset)
        deliverer.templates = live.templates
        return deliverer

    def dispatch_once(self) -> None:
        try:
            dispatch_due(
                self.engine,
                self.settings,
                now=self.clock(),
                enqueue=self.enqueue,
                ruleset=self.ruleset(),
                deliverer=self._deliverer(),
            )
        except Exception as exc:  # noqa: BLE001 - a failed dispatch is retried next interval
            log.error(
                "dispatch failed", owner=self.owner, error=f"{type(exc).__name__}: {exc}", exc_info=True
            )

    def run(self, *, once: bool = False) -> None:
        self.live()  # a rule set with problems stops start-up, located (RuleError)
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
