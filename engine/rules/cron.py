"""Standard five-field cron expressions on top of APScheduler's CronTrigger.

APScheduler numbers weekdays from Monday = 0, while crontab numbers them from Sunday = 0 (and 7).
Marketers write crontab, so weekday numbers are translated to names before APScheduler sees them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _weekday(token: str) -> str:
    return _DAYS[int(token)] if token.isdigit() and int(token) <= 7 else token


def _translate_dow(field: str) -> str:
    parts = []
    for part in field.split(","):
        step = ""
        if "/" in part:
            part, step = part.split("/", 1)
            step = "/" + step
        if "-" in part:
            lo, hi = part.split("-", 1)
            if (
                lo.isdigit()
                and hi.isdigit()
                and int(lo) > int(hi)
                or (hi == "7" and lo.isdigit() and int(lo) > 0)
            ):
                # 5-7 means fri,sat,sun: split at the end of the week
                parts.append(f"{_weekday(lo)}-sat{step}")
                parts.append("sun")
                continue
            parts.append(f"{_weekday(lo)}-{_weekday(hi)}{step}")
        else:
            parts.append(_weekday(part) + step)
    return ",".join(parts)


def cron_trigger(expr: str, timezone: str = "UTC") -> Any:
    """An APScheduler CronTrigger for a crontab expression (minute hour day month weekday)."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"'{expr}' needs 5 fields: minute hour day month weekday, like '0 9 * * 1'")
    minute, hour, day, month, dow = fields
    if not re.fullmatch(r"[\w*,/-]+", dow):
        raise ValueError(f"weekday field '{dow}' is not valid")
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_translate_dow(dow),
        timezone=ZoneInfo(timezone),
    )


def cron_times(expr: str, tz: str, start: datetime, end: datetime, *, limit: int = 10_000) -> list[datetime]:
    """Fire times of a crontab expression in (start, end], as UTC datetimes."""
    trigger = cron_trigger(expr, tz)
    out: list[datetime] = []
    previous: datetime | None = None
    current = start + timedelta(microseconds=1)
    while len(out) < limit:
        fire = trigger.get_next_fire_time(previous, current)
        if fire is None or fire.astimezone(UTC) > end:
            break
        out.append(fire.astimezone(UTC))
        previous = fire
        current = fire + timedelta(seconds=1)
    return out
