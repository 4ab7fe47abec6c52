"""`journey health`: is the database, the broker and the scheduler well? For people and probes.

Deliverability is a warning, not a failure: a complaint rate over the mailbox providers' limit in
the last day is printed, and the exit status stays what the other checks make it (a probe must not
restart a service for it).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, text

from engine.db import NO_SCHEMA, is_missing_schema
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
        reason = NO_SCHEMA if is_missing_schema(exc) else str(exc).splitlines()[0][:200]
        out.append(("database", False, f"FAILED: {reason}"))
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
        out.append(sends_line(engine, now))
    return out


def sends_line(engine: Engine, now: datetime) -> tuple[str, bool, str]:
    """Sends past their lease (unwell: a worker dies on them, or none runs), sends failing again
    and again, and the last hour's failures by reason (`journey sends list` shows them)."""
    from engine.delivery.troubles import troubles

    t = troubles(engine, now)
    parts = []
    if t.stuck:
        parts.append(f"{t.stuck:,} past their lease (stuck)")
    if t.failing:
        parts.append(f"{t.failing:,} failing repeatedly")
    if t.failed_last_hour:
        by = ", ".join(f"{n:,} {reason}" for reason, n in sorted(t.failed_last_hour.items()))
        parts.append(f"failed in the last hour: {by}")
    if not parts:
        return ("sends", True, "ok: none stuck, failing or failed in the last hour")
    hint = " (journey sends list --status failed|stuck|failing)"
    return ("sends", t.stuck == 0, ("ok: " if t.stuck == 0 else "FAILED: ") + "; ".join(parts) + hint)


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
