"""Opt-outs that arrive as events: a shop's own `unsubscribed` track event (from its checkout, its
own preference centre, a support tool) stops marketing at once, as a click on our link does.

Properties: `channel` (`email` by default; `*` for every channel) and `topic` (`*`, everything, by
default; or a rule's topic). The opt-out holds from the moment it is stored, whatever the event's
timestamp; a later re-subscription goes through the preferences page. Only a newly stored event
acts: the same event again (its message_id known), from a retry or a re-import, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from engine.db import insert_ignore
from engine.schema import customers, unsubscribes

EVENT = "unsubscribed"


def _text(value: Any, default: str, limit: int) -> str:
    return str(value)[:limit] if isinstance(value, str) and value.strip() else default


def record_opt_outs(conn: Connection, items: Iterable[tuple[str, datetime, dict[str, Any]]]) -> int:
    """Store the opt-out of each (external customer id, timestamp, properties) of an `unsubscribed`
    event, in the caller's transaction; an existing opt-out is kept as it is. Returns how many are new."""
    wanted: dict[tuple[str, str, str], datetime] = {}
    for external_id, ts, props in items:
        key = (external_id, _text(props.get("channel"), "email", 32), _text(props.get("topic"), "*", 64))
        wanted[key] = min(ts, wanted.get(key, ts))
    if not wanted:
        return 0
    externals = sorted({k[0] for k in wanted})
    ids: dict[str, int] = {}
    for i in range(0, len(externals), 1000):
        chunk = externals[i : i + 1000]
        ids.update(
            (str(r[0]), int(r[1]))
            for r in conn.execute(
                select(customers.c.external_id, customers.c.id).where(customers.c.external_id.in_(chunk))
            )
        )
    rows = [
        {"customer_id": ids[ext], "channel": channel, "topic": topic, "at": at, "source": "event"}
        for (ext, channel, topic), at in wanted.items()
        if ext in ids
    ]
    if not rows:
        return 0
    result = conn.execute(insert_ignore(conn, unsubscribes, ["customer_id", "channel", "topic"]), rows)
    return max(0, int(result.rowcount or 0))
