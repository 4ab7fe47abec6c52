"""A send as the ledger holds it: its row, its states and the reasons it ends or waits, named
once (DESIGN).

Both are `StrEnum`s: their members are the very strings stored in `sends.status` and
`sends.reason`, so queries and reports compare them with the column as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any


class SendStatus(StrEnum):
    """due → queued → sending → sent | failed | suppressed | cancelled (or back to due)."""

    DUE = "due"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"


class Reason(StrEnum):
    """Why a send ended as it did, or waits again (`sends.reason`)."""

    #: a claim taken back after its lease (a worker died, a task was lost)
    RECOVERED = "recovered"
    #: the customer did an `exit_on` event: the rest of the rule is off
    EXIT_ON = "exit_on"
    RULE_REMOVED = "rule_removed"
    CUSTOMER_DELETED = "customer_deleted"
    NO_EMAIL = "no_email"
    #: the address bounced hard before
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    #: the address is on the suppression list (engine.suppressions), for this reason
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"
    ERASED = "erased"
    FREQUENCY_CAP = "frequency_cap"
    QUIET_HOURS = "quiet_hours"
    #: the rule is paused (`journey rules pause`): due again, and sent after `resume`
    PAUSED = "paused"
    #: another worker holds the send now (a later claim)
    LEASE_LOST = "lease_lost"
    #: a failure of ours, not the channel's
    ERROR = "error"
    #: the template could not be rendered
    TEMPLATE = "template"
    #: the channel refused the message for good
    REFUSED = "refused"
    #: a transient failure, too many times
    GAVE_UP = "gave_up"
    #: a transient failure: due again later
    RETRY = "retry"
    TRANSIENT = "transient"


class Outcome(StrEnum):
    """What one delivery attempt did with a send (the figures of a batch)."""

    SENT = "sent"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"
    #: not now (quiet hours): due again later, and this claim is not counted as an attempt
    DEFERRED = "deferred"
    RETRIED = "retried"
    FAILED = "failed"
    #: not this worker's any more
    SKIPPED = "skipped"


@dataclass
class DeliveryStats:
    """A batch's outcomes, and the reasons behind them."""

    sent: int = 0
    suppressed: int = 0
    cancelled: int = 0
    deferred: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    #: the outcome of the latest send counted, for its log line
    last: tuple[Outcome, Reason | None] = (Outcome.SKIPPED, None)

    def count(self, outcome: Outcome, reason: Reason | None = None) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)
        self.last = (outcome, reason)
        if reason:
            self.by_reason[reason.value] = self.by_reason.get(reason.value, 0) + 1

    def figures(self) -> dict[str, int]:
        """The outcomes that happened, by name."""
        return {o.value: getattr(self, o.value) for o in Outcome if getattr(self, o.value)}


@dataclass(frozen=True, slots=True)
class SendRow:
    """One row of the ledger, as a batch claimed it."""

    id: int
    rule_id: str
    step: str
    customer_id: int
    occurrence: int
    enrollment_id: int | None
    template: str
    channel: str
    transactional: bool
    priority: int
    due_at: datetime
    attempts: int

    @classmethod
    def of(cls, row: Any) -> SendRow:
        """From a row's mapping (`row._mapping`) or any mapping of the ledger's columns."""
        return cls(**{f.name: row[f.name] for f in fields(cls)})
