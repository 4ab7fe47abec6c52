"""One tick: stages, then every rule, over the window since the previous tick (CONTRACT section 7).

The evaluation is one transaction: a tick happened completely or not at all. Ticks are serialised
by a PostgreSQL advisory lock (SQLite: the write lock), and every insert is keyed, so a tick run
twice, or two at once, schedules nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text

from engine.db import advisory_lock, insert_ignore, is_postgres, write_tx
from engine.db.schema import customers, events, rule_state, ticks
from engine.errors import JourneyError
from engine.evaluate import segments as segment_mod
from engine.evaluate import stages as stage_mod
from engine.evaluate.advance import advance
from engine.evaluate.triggers import LATE_LIMIT, enroll, exits
from engine.evaluate.window import Window, drop_new_events, fill_new_events
from engine.pauses import apply_resumes, paused
from engine.rules.loader import RuleSet

#: the first tick on a new database looks back this far, so old history mails nobody
FIRST_LOOKBACK = timedelta(hours=24)
TICK_LOCK = 0x4A6F75726E6579  # "Journey"
#: PostgreSQL's memory for one tick's hashes and sorts (the server default is 4MB)
TICK_WORK_MEM = "64MB"


@dataclass
class TickResult:
    tick_id: int
    start: datetime
    now: datetime
    new_events: int = 0
    stage_changes: int = 0
    #: entries and exits per segment (a new segment's first members included)
    segment_changes: dict[str, int] = field(default_factory=dict)
    entered: dict[str, int] = field(default_factory=dict)
    exited: dict[str, int] = field(default_factory=dict)
    scheduled: dict[str, int] = field(default_factory=dict)
    #: rules paused now: no one entered them and none of their customers moved on
    paused: list[str] = field(default_factory=list)
    #: rules resumed since the previous tick: their customers due during the pause are due now
    resumed: list[str] = field(default_factory=list)
    #: the first tick on this database: it looked back FIRST_LOOKBACK only
    first: bool = False
    seconds: float = 0.0
    #: seconds spent per part of the tick: new events, stages, segments, then each rule
    timings: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None

    def summary(self) -> str:
        if self.skipped:
            return self.skipped
        text = (
            f"tick {self.now.isoformat()}: {self.new_events} new events, {self.stage_changes} stage changes, "
            f"{sum(self.entered.values())} entered, {sum(self.scheduled.values())} sends scheduled "
            f"in {self.seconds:.2f} s"
        )
        if self.paused:
            text += f"; paused: {', '.join(self.paused)}"
        if self.resumed:
            text += f"; resumed: {', '.join(self.resumed)}"
        if self.first:
            hours = int(FIRST_LOOKBACK.total_seconds() // 3600)
            text += (
                f"\nThe first tick on a database acts only on the last {hours} hours, so imported "
                "history mails no one; `journey tick --backfill 30d` widens the window on purpose."
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "tick_id": self.tick_id,
            "start": self.start.isoformat(),
            "now": self.now.isoformat(),
            "new_events": self.new_events,
            "stage_changes": self.stage_changes,
            "segment_changes": self.segment_changes,
            "entered": self.entered,
            "exited": self.exited,
            "scheduled": self.scheduled,
            "paused": self.paused,
            "resumed": self.resumed,
            "seconds": round(self.seconds, 4),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        } | ({"skipped": self.skipped} if self.skipped else {})


class _Clock:
    """Seconds since the previous lap, into a tick's timings."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.at = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self.at
        self.at = now


def _committed_seq(engine: Engine, table: Any = events) -> int:
    """The highest id of `table` (events, customers) below which every row is committed.

    PostgreSQL hands out ids before commit; taking a SHARE lock for an instant waits for the
    inserts in flight, so no smaller id can still appear afterwards. One table per transaction:
    holding one lock while waiting for the other could deadlock with a writer of both.
    """
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.execute(text(f"LOCK TABLE {table.name} IN SHARE MODE"))
        return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())


def last_tick(conn: Connection) -> Any:
    return conn.execute(select(ticks).order_by(ticks.c.id.desc()).limit(1)).first()


def run_tick(
    engine: Engine,
    ruleset: RuleSet,
    *,
    now: datetime,
    backfill: timedelta | None = None,
    full: bool = False,
    realtime: bool = False,
) -> TickResult:
    """Evaluate stages and rules for the window (previous tick's now, now]. A `realtime` tick (its
    now read from the clock, not given) that finds a previous tick later than its now, one given
    `--now` in the future, evaluates nothing and says so: the clock catches up; a given now
    before the previous tick is an error (time only moves forward)."""
    started = time.perf_counter()
    with tick_transaction(engine) as (conn, seq, customer_seq):
        prev = last_tick(conn) if realtime else None
        if prev is not None and now < prev.now:
            return TickResult(
                tick_id=int(prev.id),
                start=prev.now,
                now=now,
                skipped=(
                    f"the previous tick ran at {prev.now.isoformat()}, later than the clock "
                    f"({now.isoformat()}): nothing to evaluate until the clock passes it"
                ),
            )
        result = evaluate(
            conn, ruleset, now=now, seq=seq, customer_seq=customer_seq, backfill=backfill, full=full
        )
    result.seconds = time.perf_counter() - started
    return result


@contextmanager
def tick_transaction(engine: Engine) -> Iterator[tuple[Connection, int, int]]:
    """The one transaction of a tick, serialised with other ticks: (connection, the committed
    event sequence, the committed customer sequence). An exception rolls it all back."""
    with advisory_lock(engine, TICK_LOCK):
        customer_seq = _committed_seq(engine, customers)
        seq = _committed_seq(engine)
        with write_tx(engine) as conn:
            yield conn, seq, customer_seq


def evaluate(
    conn: Connection,
    ruleset: RuleSet,
    *,
    now: datetime,
    seq: int,
    customer_seq: int,
    backfill: timedelta | None,
    full: bool,
) -> TickResult:
    prev = last_tick(conn)
    if prev is not None and now < prev.now:
        raise JourneyError(
            f"tick at {now.isoformat()} is before the previous tick at {prev.now.isoformat()}: "
            "time only moves forward (use a fresh database, or `journey simulate`, to replay the past)"
        )
    if backfill is not None:
        start = now - backfill
    elif prev is not None:
        start = prev.now
    else:
        start = now - FIRST_LOOKBACK
    prev_seq = 0 if prev is None else int(prev.event_seq)
    if backfill is not None:
        full = True
    tick_id = int(
        conn.execute(
            ticks.insert()
            .values(
                now=now,
                prev_now=start,
                event_seq=seq,
                prev_event_seq=prev_seq,
                customer_seq=customer_seq,
                started_at=now,
            )
            .returning(ticks.c.id)
        ).scalar_one()
    )
    full = full or prev is None
    if full and is_postgres(conn):
        # A full tick hashes a summary's rows once for every customer (stage conditions as
        # hashed EXISTS); PostgreSQL only hashes what fits in work_mem, else it probes per
        # customer. For this transaction only; an incremental tick probes its few candidates.
        conn.execute(text(f"SET LOCAL work_mem = '{TICK_WORK_MEM}'"))
    elif is_postgres(conn):
        # An incremental tick's statements touch few rows, but their estimates over big tables
        # pass the JIT threshold: compiling cost 60 ms per statement at 1,000,000 customers.
        conn.execute(text("SET LOCAL jit = off"))
    w = Window(
        start=start,
        now=now,
        prev_seq=prev_seq,
        event_seq=seq,
        tick_id=tick_id,
        full=full,
        oldest=min(start, now - LATE_LIMIT),
        prev_customer_seq=None if prev is None or prev.customer_seq is None else int(prev.customer_seq),
        customer_seq=customer_seq,
    )
    result = TickResult(tick_id=tick_id, start=start, now=now, first=prev is None and backfill is None)
    clock = _Clock(result.timings)
    result.new_events = fill_new_events(conn, w)
    clock.lap("new events")
    result.stage_changes = stage_mod.recompute(conn, ruleset.stages, w, full=full)
    clock.lap("stages")
    result.segment_changes = segment_mod.recompute(conn, ruleset.segments, w, full=full)
    clock.lap("segments")
    default_tz = ruleset.settings.default_timezone
    result.resumed = apply_resumes(conn, now)
    pauses = paused(conn)
    for rule in ruleset.rules:
        if not rule.enabled:
            continue
        conn.execute(
            insert_ignore(conn, rule_state, ["rule_id"]).values(
                rule_id=rule.id, first_tick_at=now, digest=ruleset.digest(rule.id)
            )
        )
        result.exited[rule.id] = exits(conn, rule, w)
        if rule.id in pauses:  # enters no one, and its customers stay where they are
            result.paused.append(rule.id)
        else:
            result.entered[rule.id] = enroll(conn, rule, w, default_tz=default_tz)
            result.scheduled[rule.id] = advance(conn, rule, w)["sends"]
        clock.lap(f"rule {rule.id}")
    drop_new_events(conn)
    conn.execute(ticks.update().where(ticks.c.id == tick_id).values(finished_at=now, stats=result.as_dict()))
    return result
