"""Dispatch: claim due ledger rows, mark them queued, hand them to workers in batches.

PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so several schedulers can dispatch at once without
taking the same row; SQLite's write transaction is exclusive already. Tasks carry only send ids.
Without a broker, the same batches are delivered here, in-process, before returning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select

from engine.db import is_postgres, write_tx
from engine.db.schema import sends
from engine.delivery.deliverer import Deliverer
from engine.delivery.ledger import LEASE
from engine.delivery.ratelimit import reserve, spend
from engine.delivery.status import DeliveryStats, Reason, SendStatus
from engine.errors import ConfigError
from engine.pauses import paused_ids
from engine.settings import Settings

Enqueue = Callable[[str, list[int]], None]

#: rows claimed per round of a dispatch
CLAIM_CHUNK = 1000
#: sends queued longer than this, on a channel whose broker queue is empty, are published again
REPUBLISH_AFTER = timedelta(seconds=30)


@dataclass
class DispatchStats:
    recovered: int = 0
    #: sends whose task the broker lost, published again
    republished: int = 0
    queued: int = 0
    batches: int = 0
    delivered: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recovered": self.recovered, "queued": self.queued, "batches": self.batches}
        if self.republished:
            out["republished"] = self.republished
        out.update(self.delivered)
        return out


def recover(engine: Engine, *, now: datetime, lease: timedelta = LEASE, queued: bool = True) -> int:
    """Take back sends whose worker died (`sending` past its lease) or, with `queued`, whose task
    was lost (`queued` for longer than the lease: for enqueuers that cannot count their queue,
    see `republish`, which does it sooner and never takes back a task still waiting its turn)."""
    lost = and_(sends.c.status == SendStatus.SENDING, sends.c.lease_until < now)
    if queued:
        lost = or_(lost, and_(sends.c.status == SendStatus.QUEUED, sends.c.queued_at < now - lease))
    with write_tx(engine) as conn:
        n = conn.execute(
            sends.update()
            .where(lost)
            .values(status=SendStatus.DUE, lease_until=None, reason=Reason.RECOVERED)
        ).rowcount
    return int(n or 0)


def claim(
    engine: Engine, *, now: datetime, limit: int, rates: dict[str, tuple[int, int]] | None = None
) -> list[tuple[int, str]]:
    """Due rows, marked queued in one short transaction: (id, channel), highest priority first.
    A channel with a rate limit gives no more than what is left of its window's budget."""
    rates = rates or {}
    with write_tx(engine) as conn:

        def due(*where: Any, n: int) -> list[tuple[int, str]]:
            query = (
                select(sends.c.id, sends.c.channel)
                .where(
                    sends.c.status == SendStatus.DUE,
                    sends.c.due_at <= now,
                    sends.c.rule_id.not_in(paused_ids()),  # a paused rule's sends wait for its resume
                    *where,
                )
                .order_by(sends.c.priority.desc(), sends.c.due_at, sends.c.id)
                .limit(n)
            )
            if is_postgres(conn):
                query = query.with_for_update(skip_locked=True)
            return [(int(r.id), str(r.channel)) for r in conn.execute(query)]

        if not rates:
            rows = due(n=limit)
        else:
            rows = due(sends.c.channel.not_in(list(rates)), n=limit)
            for channel, (budget, seconds) in sorted(rates.items()):
                left = reserve(conn, channel, budget, seconds, now, limit - len(rows))
                taken = due(sends.c.channel == channel, n=left) if left else []
                spend(conn, channel, budget, seconds, now, len(taken))
                rows += taken
        for i in range(0, len(rows), 1000):
            chunk = [r[0] for r in rows[i : i + 1000]]
            conn.execute(
                sends.update()
                .where(sends.c.id.in_(chunk), sends.c.status == SendStatus.DUE)
                .values(status=SendStatus.QUEUED, queued_at=now)
            )
    return rows


def unclaim(engine: Engine, ids: Sequence[int]) -> int:
    """queued → due for claims whose task never reached the broker: the next dispatch takes them."""
    n = 0
    with write_tx(engine) as conn:
        for i in range(0, len(ids), 1000):
            n += int(
                conn.execute(
                    sends.update()
                    .where(sends.c.id.in_(list(ids[i : i + 1000])), sends.c.status == SendStatus.QUEUED)
                    .values(status=SendStatus.DUE, queued_at=None)
                ).rowcount
                or 0
            )
    return n


def republish(engine: Engine, enqueue: Enqueue, *, now: datetime, batch_size: int) -> int:
    """Tasks a broker lost (a Redis restarted without its data, a queue purged): sends queued for
    longer than REPUBLISH_AFTER on a channel whose broker queue is empty are published again.

    Only when the queue is empty, so a normal backlog (tasks waiting their turn) is never
    multiplied; a task a worker holds already is harmless to send twice (its claim is a
    compare-and-set). Needs an enqueuer that can count a queue's messages (`waiting`)."""
    waiting: Callable[[str], int | None] | None = getattr(enqueue, "waiting", None)
    if waiting is None:
        return 0
    with engine.connect() as conn:
        stale = conn.execute(
            select(sends.c.id, sends.c.channel)
            .where(sends.c.status == SendStatus.QUEUED, sends.c.queued_at < now - REPUBLISH_AFTER)
            .order_by(sends.c.priority.desc(), sends.c.due_at, sends.c.id)
            .limit(CLAIM_CHUNK)
        ).all()
    by_channel: dict[str, list[int]] = {}
    for r in stale:
        by_channel.setdefault(str(r.channel), []).append(int(r.id))
    published = 0
    for channel, ids in by_channel.items():
        if waiting(channel) != 0:
            continue  # tasks are waiting (or the broker cannot say): they will come
        with write_tx(engine) as conn:  # a fresh queued_at, compare-and-set: one scheduler takes them
            ids = [
                int(r.id)
                for r in conn.execute(
                    sends.update()
                    .where(
                        sends.c.id.in_(ids),
                        sends.c.status == SendStatus.QUEUED,
                        sends.c.queued_at < now - REPUBLISH_AFTER,
                    )
                    .values(queued_at=now)
                    .returning(sends.c.id)
                )
            ]
        for i in range(0, len(ids), batch_size):
            enqueue(channel, ids[i : i + batch_size])
        published += len(ids)
    return published


def dispatch_due(
    engine: Engine,
    settings: Settings,
    *,
    now: datetime,
    enqueue: Enqueue | None = None,
    batch_size: int = 100,
    limit: int = 10_000,
    lease: timedelta | None = None,
    ruleset: Any = None,
    deliverer: Deliverer | None = None,
) -> DispatchStats:
    """Take back what a dead worker held, publish again what a broker lost, then claim due sends
    and hand them over in batches. A batch that cannot be published goes back to due at once,
    with the rest of its claim, and the error is raised (the next dispatch tries again)."""
    counts = enqueue is not None and hasattr(enqueue, "waiting")  # then `republish` finds lost tasks
    stats = DispatchStats(
        recovered=recover(engine, now=now, lease=lease or settings.send_lease, queued=not counts)
    )
    if enqueue is None and deliverer is None:
        deliverer = Deliverer.create(engine, settings, ruleset)
    if enqueue is not None:
        stats.republished = republish(engine, enqueue, now=now, batch_size=batch_size)
    rules = ruleset if ruleset is not None else (deliverer.ruleset if deliverer is not None else None)
    rates = rules.settings.rate_limits() if rules is not None else {}
    remaining = limit  # with a broker: at most `limit` rows this call; in-process: until none is due
    while remaining > 0:
        # claimed a chunk at a time, so the first batches reach the workers while the rest waits
        want = min(remaining, CLAIM_CHUNK)
        rows = claim(engine, now=now, limit=want, rates=rates)
        if not rows:
            break
        if enqueue is not None:
            remaining -= len(rows)
        stats.queued += len(rows)
        by_channel: dict[str, list[int]] = {}
        for send_id, channel in rows:
            by_channel.setdefault(channel, []).append(send_id)
        batches = [
            (channel, ids[i : i + batch_size])
            for channel, ids in by_channel.items()
            for i in range(0, len(ids), batch_size)
        ]
        for n, (channel, batch) in enumerate(batches):
            stats.batches += 1
            if enqueue is None:
                assert deliverer is not None
                _add(stats, deliverer.deliver(batch, now=now))
                continue
            try:
                enqueue(channel, batch)
            except BaseException:
                # the broker is away: this claim's unpublished batches are due again right now
                unclaim(engine, [i for _, ids in batches[n:] for i in ids])
                raise
        if len(rows) < want:
            break
    return stats


def _add(stats: DispatchStats, result: DeliveryStats) -> None:
    for name, value in result.figures().items():
        stats.delivered[name] = stats.delivered.get(name, 0) + value


#: the entry point group where a broker's enqueuer is registered (pyproject: workers.enqueue)
ENQUEUERS = "journey.enqueuers"


def broker_enqueuer(settings: Settings) -> Enqueue | None:
    """The enqueuer for the configured broker, or None without one (deliveries run in-process).

    The Celery side lives in `workers/`, which the engine never imports: `workers` registers its
    enqueuer under the `journey.enqueuers` entry point and it is looked up here by name."""
    if not settings.broker_url:
        return None
    found = entry_points(group=ENQUEUERS, name="celery")
    if not found:
        raise ConfigError(
            "JOURNEY_BROKER_URL is set but no Celery enqueuer is installed: install the project "
            "(pip install .) so that its `workers` package registers one"
        )
    factory: Callable[[Settings], Enqueue] = next(iter(found)).load()
    return factory(settings)


def queue_lag(engine: Engine, now: datetime) -> float:
    """Now minus the oldest send still waiting to go, in seconds (0 when none is late)."""
    with engine.connect() as conn:
        oldest = conn.execute(
            select(func.min(sends.c.due_at)).where(
                sends.c.status.in_([SendStatus.DUE, SendStatus.QUEUED]),
                sends.c.due_at <= now,
                sends.c.rule_id.not_in(paused_ids()),  # waiting on purpose, not late
            )
        ).scalar()
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
