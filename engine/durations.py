"""Durations as marketers write them: `30s 15m 2h 7d 4w` (combinations like `1h30m` too)."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(value: object) -> timedelta:
    """Parse `7d`, `1h30m` or a number of seconds; raise ValueError with a fix hint otherwise."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a number with a unit, like 30m, 2h or 7d")
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if not isinstance(value, str):
        raise ValueError("a duration is a number with a unit, like 30m, 2h or 7d")
    text = value.strip().lower().replace(" ", "")
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
