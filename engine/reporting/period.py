"""The period a report or a graph covers (`--from`/`--to`), and when it was made."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from engine.db.schema import events


@dataclass(frozen=True)
class Period:
    #: None: from the first event on
    start: datetime | None
    end: datetime
    #: when the figures were made (the clock, or `--now`)
    generated_at: datetime
    #: the first event's time, shown when the period starts with the data
    first_data: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": _iso(self.start),
            "to": _iso(self.end),
            "generated_at": _iso(self.generated_at),
            "first_data": _iso(self.first_data),
        }

    def text(self) -> str:
        """`Period: 2026-09-02 00:00 → 2026-11-01 00:00 UTC (all data) · generated …`."""
        if self.start is not None:
            begin = _when(self.start)
        elif self.first_data is not None:
            begin = f"{_when(self.first_data)} (first event)"
        else:
            begin = "the start (no events yet)"
        return f"Period: {begin} → {_when(self.end)} UTC · generated {_when(self.generated_at)} UTC"


def period(conn: Connection, start: datetime | None, end: datetime, generated_at: datetime) -> Period:
    """The period, with the first event's time when it starts with the data."""
    first = None
    if start is None:
        first = conn.execute(select(func.min(events.c.ts)).where(events.c.ts <= end)).scalar()
    return Period(start, end, generated_at, first)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")
