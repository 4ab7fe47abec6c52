"""Replaying events against the rules with a virtual clock: the engine of `demo` and `simulate`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.evaluate.tick import TickResult, run_tick
from engine.ingest.parse import ParsedEvent
from engine.ingest.times import parse_timestamp
from engine.ingest.writer import ingest_events
from engine.rules.loader import RuleSet
from engine.settings import Settings


@dataclass
class ReplayStats:
    ticks: int = 0
    events: int = 0
    identified: int = 0
    rejected: int = 0
    #: events timestamped after `end`: read, but not replayed
    after_end: int = 0
    delivered: dict[str, int] = field(default_factory=dict)


#: an event to replay: parsed already, or a decoded JSON object (parsed when it is ingested)
Item = ParsedEvent | dict[str, Any]


def _peek_sorted(events: Iterable[Item]) -> Iterator[tuple[datetime, Item]]:
    for item in events:
        if isinstance(item, ParsedEvent):
            yield item.timestamp, item
            continue
        try:
            ts = parse_timestamp(item.get("timestamp"))
        except Exception:  # noqa: BLE001 - a bad item is ingested anyway, to be reported there
            ts = datetime.min.replace(tzinfo=None)
        yield ts, item


def replay(
    engine: Engine,
    settings: Settings,
    ruleset: RuleSet,
    events: Iterable[Item],
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
    deliverer: Deliverer | None,
    on_tick: Callable[[TickResult, ReplayStats], None] | None = None,
) -> ReplayStats:
    """Ingest the events as time passes and tick every `step` from `start` to `end`.

    Events must be sorted by timestamp; each is ingested when the virtual clock reaches it, so
    nothing sees the future; those after `end` are read to the last and counted, not ingested.
    With a deliverer, due sends are delivered at each tick.
    """
    stats = ReplayStats()
    pending: list[Item] = []
    source = _peek_sorted(events)
    lookahead: tuple[datetime, Item] | None = next(source, None)
    now = start
    run_tick(engine, ruleset, now=now)
    while now < end:
        now = min(now + step, end)
        while lookahead is not None and (lookahead[0].tzinfo is None or lookahead[0] <= now):
            pending.append(lookahead[1])
            lookahead = next(source, None)
        if pending:
            result = ingest_events(engine, pending, received_at=now)
            stats.events += result.stored
            stats.identified += result.identified
            stats.rejected += len(result.rejected)
            pending = []
        tick = run_tick(engine, ruleset, now=now)
        stats.ticks += 1
        if deliverer is not None:
            out = dispatch_due(engine, settings, now=now, deliverer=deliverer)
            for k, v in out.delivered.items():
                stats.delivered[k] = stats.delivered.get(k, 0) + v
        if on_tick is not None:
            on_tick(tick, stats)
    # read the rest, so that every item is seen (and a bad one reported by whoever reads them)
    if lookahead is not None:
        stats.after_end = 1 + sum(1 for _ in source)
    return stats
