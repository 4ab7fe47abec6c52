"""Send-rate limits (settings.yaml `rate_limit`, CONTRACT sections 11 and 14): a budget per channel
and fixed window, shared by every dispatcher through one database row.

A claim reserves what is left of the window's budget under the row's lock (PostgreSQL: the row
lock of `SELECT … FOR UPDATE`; SQLite: the write transaction), claims at most that many due sends
of the channel, and records how many it took, in the claim's own transaction. What is over the
budget stays due and is claimed in a later window: nothing is dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select

from engine.db import insert_ignore, is_postgres
from engine.db.schema import rate_budget
from engine.metrics import observe_rate


def window_start(now: datetime, seconds: int) -> datetime:
    """The start of the fixed window of `seconds` that holds `now` (windows start at the epoch)."""
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def reserve(conn: Connection, channel: str, limit: int, seconds: int, now: datetime, want: int) -> int:
    """Lock the channel's budget row of this window and return how many sends may be claimed
    (at most `want`). Call `spend` with what was claimed, in the same transaction."""
    start = window_start(now, seconds)
    conn.execute(
        insert_ignore(conn, rate_budget, ["channel", "window_start"]).values(
            channel=channel, window_start=start, used=0
        )
    )
    query = select(rate_budget.c.used).where(
        rate_budget.c.channel == channel, rate_budget.c.window_start == start
    )
    if is_postgres(conn):
        query = query.with_for_update()
    used = int(conn.execute(query).scalar_one())
    return max(0, min(want, limit - used))


def spend(conn: Connection, channel: str, limit: int, seconds: int, now: datetime, claimed: int) -> None:
    start = window_start(now, seconds)
    row = rate_budget.c
    if claimed:
        conn.execute(
            rate_budget.update()
            .where(row.channel == channel, row.window_start == start)
            .values(used=row.used + claimed)
        )
    used = conn.execute(
        select(row.used).where(row.channel == channel, row.window_start == start)
    ).scalar_one()
    observe_rate(channel, used=int(used), budget=limit)
    # windows long past are of no use: keep the table to the current ones
    conn.execute(rate_budget.delete().where(row.channel == channel, row.window_start < start))
