"""Times as marketers write them: durations (`30s 15m 2h 7d 4w`, combinations like `1h30m` too)
and daily windows (quiet hours `21:00-08:00`), each parsed once, when the rules are loaded."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


_BARE_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def _no_unit(number: object) -> ValueError:
    """`wait: 10` is ten what? Seconds, minutes and days are all likely: ask for the unit."""
    text = f"{number:g}" if isinstance(number, float) else str(number)
    return ValueError(
        f"a duration needs a unit: '{text}' alone could be seconds, minutes or days "
        f"(did you mean '{text}m' or '{text}s'?)"
    )


def parse_duration(value: object) -> timedelta:
    """Parse `7d` or `1h30m`; raise ValueError with a fix hint otherwise. A bare number (`10`) is
    refused: it reads as minutes to one marketer and as seconds to the next."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a number with a unit, like 30m, 2h or 7d")
    if isinstance(value, int | float):
        raise _no_unit(value)
    if not isinstance(value, str):
        raise ValueError("a duration is a number with a unit, like 30m, 2h or 7d")
    text = value.strip().lower().replace(" ", "")
    if _BARE_NUMBER.match(text):
        raise _no_unit(text)
    pos = 0
    total = 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"'{value}' is not a duration: use a number and a unit s, m, h, d or w, like 30m, 2h or 7d"
        )
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """The shortest readable form of a duration: `1h30m`, `7d`."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + "".join(out)


#: a duration field of a rule file: parsed when the file is loaded, written back as `1h30m`
Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class QuietHours:
    """A daily window in the customer's local time (`21:00-08:00` spans midnight)."""

    start: time
    end: time

    @classmethod
    def parse(cls, value: object) -> QuietHours:
        if isinstance(value, QuietHours):
            return value
        m = _WINDOW.match(value) if isinstance(value, str) else None
        if m is None:
            raise ValueError(f"quiet_hours '{value}' must look like \"21:00-08:00\" (24-hour HH:MM-HH:MM)")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        return cls(time(h1, m1), time(h2, m2))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def until(self, tz: ZoneInfo, now: datetime) -> datetime | None:
        """The end of the window when `now` falls inside it (in zone `tz`), else None."""
        start, end = self.start, self.end
        local = now.astimezone(tz)
        t = local.time()
        inside = (start <= t or t < end) if start > end else (start <= t < end)
        if not inside:
            return None
        day = local.date()
        if start > end and t >= start:
            day = day + timedelta(days=1)
        return datetime.combine(day, end, tzinfo=tz).astimezone(UTC)


#: a quiet-hours field of a rule or settings file
QuietWindow = Annotated[QuietHours, BeforeValidator(QuietHours.parse), PlainSerializer(str, return_type=str)]
