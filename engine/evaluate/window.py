"""The tick window: which events a tick sees for the first time.

An event is *seen* by a tick when it was committed before the tick began (`id <= event_seq`) and is
stamped no later than the tick's `now`. It is *new* to a tick when this tick sees it and the
previous tick did not: so a late event (stamped before the previous tick, ingested after it) is new
to the next tick, and an event stamped in the future becomes new when `now` reaches it.
The new events are copied once per tick into a temporary table that every rule reads.

A full tick (the first one, a backfill, `full=True`) re-evaluates stages and exits for everyone,
so of its new events it only needs those an `event` trigger can still fire on: stamped after
`oldest` (the window's start, or 24 hours back when that is earlier). The first tick on a database
holding a year of history copies a day of it, not all of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, MetaData, String, Table, and_, or_, select, text

from engine.db import is_postgres
from engine.db.schema import events
from engine.db.types import UTCDateTime
from engine.events import MERGED

_temp = MetaData()
new_events = Table(
    "tick_new_events",
    _temp,
    Column("id", BigInteger),
    Column("customer_id", BigInteger),
    Column("name", String(128)),
    Column("ts", UTCDateTime()),
)


@dataclass(frozen=True)
class Window:
    """What one tick covers: (start, now], and the events committed up to `event_seq`."""

    start: datetime
    now: datetime
    prev_seq: int
    event_seq: int
    tick_id: int
    #: stages and exits are re-evaluated for every customer, not only for those with new events
    full: bool = False
    #: in a full tick: the oldest time an event trigger looks at (older new events are not listed)
    oldest: datetime | None = None
    #: customers with an id in (prev_customer_seq, customer_seq] are new since the previous tick;
    #: prev_customer_seq is None when the previous tick did not record it (before migration 0004)
    prev_customer_seq: int | None = None
    customer_seq: int = 0


def fill_new_events(conn: Connection, w: Window) -> int:
    """Create and fill the per-tick table of new events; returns how many there are."""
    if is_postgres(conn):
        conn.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS tick_new_events "
                "(id bigint, customer_id bigint, name varchar(128), ts timestamptz) ON COMMIT DROP"
            )
        )
    else:
        conn.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS tick_new_events "
                "(id INTEGER, customer_id INTEGER, name VARCHAR(128), ts DATETIME)"
            )
        )
        conn.execute(text("DELETE FROM tick_new_events"))
    seen_now = and_(events.c.id <= w.event_seq, events.c.ts <= w.now)
    unseen_before = or_(events.c.id > w.prev_seq, events.c.ts > w.start)
    if w.full and w.oldest is not None:
        seen_now = and_(seen_now, events.c.ts > w.oldest)
    conn.execute(
        new_events.insert().from_select(
            ["id", "customer_id", "name", "ts"],
            select(events.c.id, events.c.customer_id, events.c.name, events.c.ts).where(
                seen_now, unseen_before
            ),
        )
    )
    conn.execute(
        text("CREATE INDEX IF NOT EXISTS ix_tick_new_events_customer ON tick_new_events (customer_id)")
    )
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_tick_new_events_name ON tick_new_events (name, ts)"))
    if is_postgres(conn):
        conn.execute(text("ANALYZE tick_new_events (customer_id, name, ts)"))  # what plans read
    count = conn.execute(select(text("count(*)")).select_from(new_events)).scalar()
    return int(count or 0)


def customers_with_new(names: Iterable[str]) -> Any:
    """The customers with a new event of one of `names` (those a condition reads), or merged into
    (their summary now holds the merged profile's events): the candidates a recomputation needs
    for new events, as SELECT id."""
    wanted = sorted({*names, MERGED})
    return select(new_events.c.customer_id.label("id")).where(new_events.c.name.in_(wanted))


def drop_new_events(conn: Connection) -> None:
    if not is_postgres(conn):
        conn.execute(text("DROP TABLE IF EXISTS temp.tick_new_events"))
