"""`journey health`: is the database, the broker and the scheduler well? For people and probes.

Deliverability is a warning, not a failure: a complaint rate over the mailbox providers' limit in
the last day is printed, and the exit status stays what the other checks make it (a probe must not
restart a service for it).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, text

from engine.db.schema import meta
from engine.reporting.deliverability import COMPLAINT_ALERT, last_day
from engine.rules.durations import format_duration
from engine.settings import Settings


def check(
    settings: Settings, engine: Engine, *, now: datetime, max_tick_age: timedelta, allow_no_tick: bool = False
) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    heartbeat = None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            heartbeat = conn.execute(select(meta.c.value).where(meta.c.key == "scheduler.last_tick")).scalar()
        out.append(("database", True, "ok"))
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        out.append(("database", False, f"FAILED: {str(exc).splitlines()[0][:200]}"))
    if settings.broker_url:
        try:
            from kombu.connection import Connection

            with Connection(settings.broker_url, connect_timeout=3) as broker:  # type: ignore[no-untyped-call]
                broker.ensure_connection(max_retries=1, timeout=3)
            out.append(("broker", True, "ok"))
        except Exception as exc:  # noqa: BLE001
            out.append(("broker", False, f"FAILED: {str(exc)[:200]}"))
    if out[0][1]:
        if heartbeat is None:
            out.append(
                (
                    "scheduler",
                    allow_no_tick,
                    "no tick yet" + ("" if allow_no_tick else ": is `journey run` up?"),
                )
            )
        else:
            last = datetime.fromisoformat(json.loads(heartbeat)["now"])
            age = now - last
            ok = age <= max_tick_age
            text_ = f"last tick {format_duration(age)} ago" + (
                "" if ok else f" (limit {format_duration(max_tick_age)})"
            )
            out.append(("scheduler", ok, ("ok: " if ok else "stale: ") + text_))
        out.append(("deliverability", True, deliverability(engine, now)))
    return out


def deliverability(engine: Engine, now: datetime) -> str:
    """The last day's complaint rate, with a warning when it is over the limit."""
    d = last_day(engine, now)
    if d.complaint_rate is None:
        return "ok: no email sent in the last day"
    figures = (
        f"complaint rate {100 * d.complaint_rate:.2f}% over the last day "
        f"({d.complained:,} complaints, {d.emails:,} emails)"
    )
    if d.complaint_alert:
        return f"WARNING: {figures}, over the {100 * COMPLAINT_ALERT:.1f}% mailbox providers tolerate"
    return f"ok: {figures}"
