"""A send's failure boundary (DESIGN "Bad input fails alone").

An exception of any type while one send is prepared (policies, context, render, MIME) or handed
over ends that send alone: a template that cannot render fails it at once (it would fail the same
way again); any other failure of ours is retried a few times with backoff, then fails with its
reason. A send claimed again and again without finishing (a worker that died on it each time) is
given up. The batch, the group and the other customers go on.
"""

from __future__ import annotations

import logging
from datetime import datetime

from engine.delivery.ledger import Ledger
from engine.delivery.policies import MAX_ATTEMPTS, backoff
from engine.delivery.status import DeliveryStats, Outcome, Reason, SendRow, SendStatus
from engine.errors import TemplateError

log = logging.getLogger("journey.deliver")

#: attempts for a failure that is ours, not the channel's (a bug, a bad address, bad data)
MAX_ERROR_ATTEMPTS = 3


def reason_of(exc: BaseException) -> str:
    """An exception as the send's stored reason: one line, its type named unless it is ours."""
    text = " ".join(str(exc).split())
    if isinstance(exc, TemplateError):
        return text[:1000]
    return f"{type(exc).__name__}: {text}"[:1000]


def failed_alone(ledger: Ledger, row: SendRow, exc: Exception, now: datetime, stats: DeliveryStats) -> None:
    """`row` failed with `exc` inside the boundary: fail it, or retry it later (a few times)."""
    error = reason_of(exc)
    if isinstance(exc, TemplateError):
        log.warning("send %s failed: %s", row.id, error)
        ledger.finish(row.id, SendStatus.FAILED, error=error, reason=Reason.TEMPLATE, failed_at=now)
        stats.count(Outcome.FAILED, Reason.TEMPLATE)
        return
    log.error("send %s failed: %s", row.id, error, exc_info=exc)
    if row.attempts >= MAX_ERROR_ATTEMPTS:
        ledger.finish(row.id, SendStatus.FAILED, error=error, reason=Reason.ERROR, failed_at=now)
        stats.count(Outcome.FAILED, Reason.ERROR)
        return
    ledger.finish(
        row.id, SendStatus.DUE, due_at=now + backoff(row.attempts), error=error, reason=Reason.RETRY
    )
    stats.count(Outcome.RETRIED, Reason.ERROR)


def worn_out(row: SendRow) -> bool:
    """Whether `row` was claimed more times than any send may be (it never finished)."""
    return row.attempts > MAX_ATTEMPTS


def give_up(ledger: Ledger, row: SendRow, now: datetime, stats: DeliveryStats) -> None:
    error = f"claimed {row.attempts} times without finishing (a worker stopped on it each time)"
    log.error("send %s failed: %s", row.id, error)
    ledger.finish(row.id, SendStatus.FAILED, error=error, reason=Reason.GAVE_UP, failed_at=now)
    stats.count(Outcome.FAILED, Reason.GAVE_UP)
