"""Dispatch: claim due ledger rows, mark them queued, hand them to workers in batches.

PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so several schedulers can dispatch at once without
taking the same row; SQLite's write transaction is exclusive already. Tasks carry only send ids.
Without a broker, the same batches are delivered here, in-process, before returning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, or_, select

from engine.db import is_postgres, write_tx
from engine.deliver import LEASE, Deliverer, DeliveryStats
from engine.schema import sends
from engine.settings import Settings

Enqueue = Callable[[str, list[int]], None]

#: rows claimed per round of a dispatch
CLAIM_CHUNK = 1000


@dataclass
class DispatchStats:
    recovered: int = 0
    queued: int = 0
    batches: int = 0
    delivered: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recovered": self.recovered, "queued": self.queued, "batches": self.batches}
        out.update(self.delivered)
        return out


def recover(engine: Engine, *, now: datetime, lease: timedelta = LEASE) -> int:
    """Take back sends whose worker died (`sending` past its lease) or whose task was lost."""
    with write_tx(engine) as conn:
        n = conn.execute(
            sends.update()
            .where(
                or_(
                    and_(sends.c.status == "sending", sends.c.lease_until < now),
                    and_(sends.c.status == "queued", sends.c.queued_at < now - lease),
                )
            )
            .values(status="due", lease_until=None, reason="recovered")
        ).rowcount
    return int(n or 0)


def claim(engine: Engine, *, now: datetime, limit: int) -> list[tuple[int, str]]:
    """Due rows, marked queued in one short transaction: (id, channel), highest priority first."""
    with write_tx(engine) as conn:
        query = (
            select(sends.c.id, sends.c.channel)
            .where(sends.c.status == "due", sends.c.due_at <= now)
            .order_by(sends.c.priority.desc(), sends.c.due_at, sends.c.id)
            .limit(limit)
        )
        if is_postgres(conn):
            query = query.with_for_update(skip_locked=True)
        rows = [(int(r.id), str(r.channel)) for r in conn.execute(query)]
        for i in range(0, len(rows), 1000):
            chunk = [r[0] for r in rows[i : i + 1000]]
            conn.execute(
                sends.update()
                .where(sends.c.id.in_(chunk), sends.c.status == "due")
                .values(status="queued", queued_at=now)
            )
    return rows


def dispatch_due(
    engine: Engine,
    settings: Settings,
    *,
    now: datetime,
    enqueue: Enqueue | None = None,
    batch_size: int = 100,
    limit: int = 10_000,
    lease: timedelta = LEASE,
    ruleset: Any = None,
    deliverer: Deliverer | None = None,
) -> DispatchStats:
    stats = DispatchStats(recovered=recover(engine, now=now, lease=lease))
    if enqueue is None and deliverer is None:
        deliverer = Deliverer.create(engine, settings, ruleset)
    remaining = limit  # with a broker: at most `limit` rows this call; in-process: until none is due
    while remaining > 0:
        # claimed a chunk at a time, so the first batches reach the workers while the rest waits
        want = min(remaining, CLAIM_CHUNK)
        rows = claim(engine, now=now, limit=want)
        if not rows:
            break
        if enqueue is not None:
            remaining -= len(rows)
        stats.queued += len(rows)
        by_channel: dict[str, list[int]] = {}
        for send_id, channel in rows:
            by_channel.setdefault(channel, []).append(send_id)
        for channel, ids in by_channel.items():
            for i in range(0, len(ids), batch_size):
                batch = ids[i : i + batch_size]
                stats.batches += 1
                if enqueue is not None:
                    enqueue(channel, batch)
                else:
                    assert deliverer is not None
                    _add(stats, deliverer.deliver(batch, now=now))
        if len(rows) < want:
            break
    return stats


def _add(stats: DispatchStats, result: DeliveryStats) -> None:
    for name in ("sent", "suppressed", "cancelled", "deferred", "retried", "failed", "skipped"):
        value = getattr(result, name)
        if value:
            stats.delivered[name] = stats.delivered.get(name, 0) + value


def celery_enqueuer(settings: Settings) -> Enqueue:
    """Send one Celery task per batch, on the queue named after the channel."""
    from workers.app import make_app

    app = make_app(settings)

    def enqueue(channel: str, ids: list[int]) -> None:
        app.send_task("workers.tasks.deliver_sends", args=[ids], queue=channel)

    return enqueue
