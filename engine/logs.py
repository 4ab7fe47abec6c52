"""Structured logs: JSON lines by default (for machines), `console` for people."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog


def configure(fmt: str = "json", level: int = logging.INFO) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *(
                [structlog.processors.format_exc_info] if fmt == "json" else []
            ),  # the traceback as "exception"
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


#: the lines held by `held()` in this context, None when lines go out one by one
_held: ContextVar[list[str] | None] = ContextVar("journey_held_log_lines", default=None)


@contextmanager
def held() -> Iterator[None]:
    """Lines logged inside go out together, in one write, when the block ends (however it ends):
    a worker logs a group of sends at once instead of making a system call per send."""
    lines: list[str] = []
    token = _held.set(lines)
    try:
        yield
    finally:
        _held.reset(token)
        if lines:
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()


class _StderrLogger:
    """Writes to whatever sys.stderr is when a line is logged (not when logging was set up)."""

    def msg(self, message: str) -> None:
        lines = _held.get()
        if lines is None:
            print(message, file=sys.stderr, flush=True)
        else:
            lines.append(message)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _StderrLoggerFactory:
    def __call__(self, *args: Any) -> _StderrLogger:
        return _StderrLogger()


def get(name: str) -> Any:
    return structlog.get_logger(name)
