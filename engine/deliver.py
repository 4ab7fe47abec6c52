"""The send path a worker runs for a batch of send ids (DESIGN "Pending work lives in the database").

Each send moves `queued → sending → sent | failed | suppressed | cancelled` by compare-and-set
updates, so two workers holding the same id never both send it. Policies are checked here, at send
time. Retries are rows with a later `due_at`, never timers in a worker's memory.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select

from engine import logs
from engine.channels.email import email_channel
from engine.channels.webhook import WebhookChannel
from engine.context import context_for, signer_for
from engine.db import get_or_create_secret
from engine.errors import DeliveryError, JourneyError, TemplateError
from engine.flow import send_step_at
from engine.ingest import InternalEvent, record_events
from engine.mime import Email, build_email, message_id, send_key, sender_domain
from engine.policies import BatchFacts, Looked, load_facts, look_verdicts, quiet_until, zone
from engine.render import Templates
from engine.rules.loader import RuleSet
from engine.schema import customers, sends, unsubscribes
from engine.settings import Settings
from engine.tokens import Signer

log = logging.getLogger("journey.deliver")
send_log = logs.get("journey.deliver")

#: a send claimed by a worker that died is taken back after this long
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8
#: first retry after this long, doubling each attempt (with jitter), at most a day
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=24)
#: A batch leaves in groups of this many messages: one statement, right before a group is handed
#: to the channel, checks that each of its sends is still this worker's and that no unsubscribe
#: or bounce was recorded since the batch was loaded, and carries the previous group's 'sent'
#: marks. An unsubscribe recorded while a group is on its way stops the next group, not the rest
#: of this one; a worker that dies may leave up to this many accepted messages unmarked, which go
#: again (same Message-ID) after the lease.
GROUP = 20
#: ... and a group's check is made again for the rest of the group once it is older than this
LOOK_MAX_AGE = 0.5  # seconds


@dataclass
class DeliveryStats:
    sent: int = 0
    suppressed: int = 0
    cancelled: int = 0
    deferred: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    #: the outcome of the latest send counted, for its log line
    last: tuple[str, str | None] = ("skipped", None)

    def count(self, status: str, reason: str | None = None) -> None:
        setattr(self, status, getattr(self, status) + 1)
        self.last = (status, reason)
        if reason:
            self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


def counts_for_cap(row: Any) -> bool:
    """What the frequency cap is about: marketing email (not transactional sends, not webhooks)."""
    return not row.transactional and row.channel == "email"


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter: 1, 2, 4 … minutes, at most a day."""
    base: timedelta = min(BACKOFF_BASE * (2 ** max(0, attempts - 1)), BACKOFF_MAX)
    jitter: float = 0.5 + (rng or random.Random()).random() / 2
    return base * jitter


@dataclass
class Deliverer:
    """What a batch needs, made once per process: channels, templates, rules, the signer."""

    engine: Engine
    settings: Settings
    ruleset: RuleSet
    templates: Templates
    channels: Mapping[str, Any] = field(default_factory=dict)
    #: the link signer, made on the first batch (from the settings, or the key stored on first run)
    signer: Signer | None = None
    #: messages per check (see GROUP); 1 checks right before every message
    group: int = GROUP
    #: seconds, for LOOK_MAX_AGE (a parameter so that tests can move time without sleeping)
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def create(
        cls,
        engine: Engine,
        settings: Settings,
        ruleset: RuleSet | None = None,
        channels: Mapping[str, Any] | None = None,
    ) -> Deliverer:
        from engine.rules.loader import load_ruleset

        if ruleset is None:
            ruleset = load_ruleset(settings.rules_dir, settings.templates_dir)
        if channels is None:
            secret = settings.secret_key or get_or_create_secret(engine, "secret_key")
            channels = {
                "email": email_channel(settings.email_url),
                "webhook": WebhookChannel(secret.split(",")[0], settings.webhook_timeout),
            }
        return cls(engine, settings, ruleset, Templates(settings.templates_dir), dict(channels))

    def deliver(self, ids: Sequence[int], *, now: datetime) -> DeliveryStats:
        """Deliver a batch: claim it in one statement, load what the policies need in a few
        queries, then send message by message, marking each one sent as soon as the channel took it."""
        stats = DeliveryStats()
        if not ids:
            return stats
        if self.signer is None:
            self.signer = signer_for(self.settings, self.engine)
        signer = self.signer
        rows = self._claim(ids, now)
        stats.skipped = len(set(ids)) - len(rows)
        if not rows:
            return stats
        settings_file = self.ruleset.settings
        exit_names = {name for r in self.ruleset.rules for name in r.exit_on}
        cap = settings_file.frequency_cap
        sent_events: list[InternalEvent] = []
        try:
            with Ledger(self.engine) as ledger:
                facts = load_facts(
                    ledger.conn, rows, exit_names=exit_names, cap_per=cap.per if cap else None, now=now
                )
                ledger.end_read()
                size = max(1, self.group)
                for start in range(0, len(rows), size):
                    ready: list[Ready] = []
                    for row in rows[start : start + size]:
                        try:
                            item = self._prepare(ledger, row, facts, now, signer, stats)
                        except JourneyError as exc:  # one bad send must not stop the batch
                            self._broken(ledger, row, exc, stats)
                            item = None
                        if item is None:
                            _record_outcome(row, stats.last, now)
                        else:
                            ready.append(item)
                    self._send_group(ledger, ready, facts, now, stats, sent_events)
        finally:
            for channel in self.channels.values():
                channel.close()
            if sent_events:
                with self.engine.begin() as wconn:
                    record_events(wconn, sent_events)
        return stats

    def _send_group(
        self,
        ledger: Ledger,
        ready: list[Ready],
        facts: BatchFacts,
        now: datetime,
        stats: DeliveryStats,
        sent_events: list[InternalEvent],
    ) -> None:
        """Look once for the group (again for the rest of it if that look grew old), then send."""
        if not ready:
            return
        verdicts = ledger.look(ready)
        looked = self.clock()
        for n, item in enumerate(ready):
            if n and self.clock() - looked > LOOK_MAX_AGE:
                verdicts = ledger.look(ready[n:])
                looked = self.clock()
            row = item.row
            try:
                event = self._send(ledger, item, verdicts.get(row.id), facts, now, stats)
            except JourneyError as exc:
                self._broken(ledger, row, exc, stats)
                event = None
            _record_outcome(row, stats.last, now)
            if event is not None:
                sent_events.append(event)
                if counts_for_cap(row):
                    facts.count_sent(row.customer_id, row.priority)

    def _capped(self, row: Any, facts: BatchFacts) -> bool:
        """The frequency cap holds this send back: the customer already had `max` marketing emails
        of its priority or higher within the cap's window."""
        cap = self.ruleset.settings.frequency_cap
        return (
            cap is not None
            and counts_for_cap(row)
            and facts.sent_recently(row.customer_id, row.priority) >= cap.max
        )

    def _broken(self, ledger: Ledger, row: Any, exc: JourneyError, stats: DeliveryStats) -> None:
        log.exception("send %s failed: %s", row.id, exc)
        ledger.finish(row.id, "failed", error=str(exc)[:1000], reason="error")
        stats.count("failed", "error")

    # ------------------------------------------------------------------------------ one send

    def _claim(self, ids: Sequence[int], now: datetime) -> list[Any]:
        """queued → sending for the whole batch (compare-and-set: rows another worker has are left)."""
        with self.engine.begin() as conn:
            claimed = conn.execute(
                sends.update()
                .where(sends.c.id.in_(list(ids)), sends.c.status == "queued")
                .values(status="sending", lease_until=now + LEASE, attempts=sends.c.attempts + 1)
                .returning(*sends.c)
            ).all()
        order = {int(i): n for n, i in enumerate(ids)}
        return sorted(claimed, key=lambda r: order.get(r.id, 0))

    def _prepare(
        self, ledger: Ledger, row: Any, facts: BatchFacts, now: datetime, signer: Any, stats: DeliveryStats
    ) -> Ready | None:
        """The policies, then the message rendered and built; None when the send is finished here."""
        try:
            rule = self.ruleset.rule(row.rule_id)
        except KeyError:
            ledger.finish(row.id, "cancelled", reason="rule_removed")
            stats.count("cancelled", "rule_removed")
            return None
        customer: Any = facts.customers.get(row.customer_id)
        verdict = self._policy(ledger, row, rule, customer, facts, now)
        if verdict is not None:
            status, reason, due = verdict
            if status == "due":  # not now, and this claim does not count as an attempt
                ledger.finish(row.id, "due", due_at=due, reason=reason, attempts=sends.c.attempts - 1)
                stats.count("deferred", reason)
            else:
                ledger.finish(row.id, status, reason=reason)
                stats.count(status, reason)
            return None
        enrollment = facts.enrollments.get(row.enrollment_id) if row.enrollment_id is not None else None
        event = facts.trigger_events.get(enrollment.trigger_event_id) if enrollment is not None else None
        ctx = context_for(
            ledger.conn,
            self.settings,
            signer,
            send=row._mapping,
            customer=customer,
            event=event,
            description=rule.description,
            now=now,
        )
        key = send_key(row.rule_id, row.step, row.customer_id, row.occurrence)
        item = Ready(row=row, rule=rule, key=key, topic=rule.topic or rule.id)
        try:
            if row.channel == "webhook":
                step = send_step_at(rule, row.step)
                item.url = step.url or self.ruleset.settings.webhook_url
                if not item.url:
                    raise DeliveryError(
                        "no webhook url: set url: on the step or webhook_url in settings.yaml", permanent=True
                    )
                item.payload = self.templates.render_json(row.template, ctx)
                item.subject = f"webhook {row.template}"
                item.message_id = key
            else:
                rendered = self.templates.render(row.template, ctx)
                item.subject = rendered.subject
                item.msg = build_email(
                    rendered=rendered,
                    mail_from=self.settings.mail_from,
                    to_email=customer.email,
                    to_name=customer.first_name,
                    key=key,
                    rule_id=row.rule_id,
                    unsubscribe_url=None if rule.transactional else ctx["links"].unsubscribe,
                    unsubscribe_mailto=self.settings.extra.get("JOURNEY_UNSUBSCRIBE_MAILTO"),
                    date=now,
                )
                item.message_id = str(item.msg["Message-ID"])
        except TemplateError as exc:
            ledger.finish(row.id, "failed", error=str(exc)[:1000], reason="template")
            stats.count("failed", "template")
            return None
        except DeliveryError as exc:
            self._failed_delivery(ledger, row, exc, now, stats)
            return None
        return item

    def _send(
        self,
        ledger: Ledger,
        item: Ready,
        verdict: str | None,
        facts: BatchFacts,
        now: datetime,
        stats: DeliveryStats,
    ) -> InternalEvent | None:
        """Hand one message to its channel, unless its group's look (or the cap) says otherwise."""
        row = item.row
        if verdict == "lease_lost":
            stats.count("skipped", "lease_lost")  # another worker has it now: leave it alone
            return None
        if verdict is not None:
            ledger.finish(row.id, "suppressed", reason=verdict)
            stats.count("suppressed", verdict)
            return None
        if self._capped(row, facts):
            # an earlier message of this batch, to the same customer, reached the cap
            ledger.finish(row.id, "suppressed", reason="frequency_cap")
            stats.count("suppressed", "frequency_cap")
            return None
        try:
            if item.msg is None:
                response = self.channels["webhook"].post(item.url, item.payload, key=item.key, now=now)
            else:
                response = self.channels["email"].send(item.msg)
        except DeliveryError as exc:
            self._failed_delivery(ledger, row, exc, now, stats)
            return None
        ledger.sent(
            row.id, sent_at=now, subject=item.subject, response=response[:1000], message_id=item.message_id
        )
        stats.count("sent")
        return InternalEvent(
            customer_id=row.customer_id,
            name="email_sent" if row.channel == "email" else "webhook_sent",
            ts=now,
            properties={
                "rule": row.rule_id,
                "send_id": row.id,
                "template": row.template,
                "subject": item.subject,
            },
            message_id=f"{row.channel}_sent:{row.id}",
        )

    def _policy(
        self, ledger: Ledger, row: Any, rule: Any, customer: Any, facts: BatchFacts, now: datetime
    ) -> tuple[str, str, Any] | None:
        """None to send now; else (status, reason, new due_at)."""
        if customer is None:
            return ("cancelled", "customer_deleted", None)
        if facts.exited(row.enrollment_id, list(rule.exit_on), now):
            return ("cancelled", "exit_on", None)
        if row.channel == "email":
            if not customer.email:
                return ("suppressed", "no_email", None)
            if customer.email_suppressed_at is not None:
                return ("suppressed", "bounced", None)
        if not rule.transactional:  # unsubscribes: checked right before its group leaves
            email = row.channel == "email"
            if self._capped(row, facts):
                return ("suppressed", "frequency_cap", None)
            # the settings' quiet hours are the customer's nights, for email; a webhook (a note to
            # the team) waits only when its rule sets quiet_hours itself
            window = rule.quiet_hours or (self.ruleset.settings.quiet_hours if email else None)
            tz = zone(customer.timezone, self.ruleset.settings.default_timezone)
            until = quiet_until(window, tz, now)
            if until is not None:
                return ("due", "quiet_hours", until)
        return None

    def _failed_delivery(
        self, ledger: Ledger, row: Any, exc: DeliveryError, now: datetime, stats: DeliveryStats
    ) -> None:
        if exc.permanent:
            ledger.finish(row.id, "failed", error=str(exc)[:1000], reason="refused")
            if row.channel == "email" and str(exc)[:1] == "5":  # a hard bounce: no more email to it
                ledger.write(
                    customers.update()
                    .where(customers.c.id == row.customer_id, customers.c.email_suppressed_at.is_(None))
                    .values(email_suppressed_at=now, email_suppressed_reason=str(exc)[:500])
                )
            stats.count("failed", "refused")
            return
        if row.attempts >= MAX_ATTEMPTS:
            ledger.finish(row.id, "failed", error=str(exc)[:1000], reason="gave_up")
            stats.count("failed", "gave_up")
            return
        ledger.finish(
            row.id, "due", due_at=now + backoff(row.attempts), error=str(exc)[:1000], reason="retry"
        )
        stats.count("retried", "transient")


def _record_outcome(row: Any, outcome: tuple[str, str | None], now: datetime) -> None:
    """One structured line and the metrics for every send: rule, send key, customer, outcome."""
    from engine.metrics import observe_send

    status, reason = outcome
    latency = (now - row.due_at).total_seconds() if status == "sent" else None
    observe_send(row.rule_id, row.channel, status, latency)
    send_log.info(
        "send",
        rule=row.rule_id,
        send_key=send_key(row.rule_id, row.step, row.customer_id, row.occurrence),
        send_id=row.id,
        customer=row.customer_id,
        channel=row.channel,
        template=row.template,
        status=status,
        reason=reason,
        attempt=row.attempts,
    )


@dataclass
class Ready:
    """A message rendered and built, waiting for its group's look."""

    row: Any
    rule: Any
    key: str
    topic: str
    subject: str = ""
    message_id: str = ""
    msg: Email | None = None
    url: str | None = None
    payload: Any = None


class Ledger:
    """A batch's reads and writes of the sends ledger, each change a compare-and-set from 'sending'.

    'sent' marks wait and travel together with the next group's look (one statement on PostgreSQL,
    one short transaction then the look on SQLite), or with the next other change, or the end of
    the batch: one round trip per group of messages besides the channel's. Until then, and if the
    worker dies, those sends are 'sending' and go again after their lease: at most one group
    (GROUP messages) per worker in that window. PostgreSQL: one autocommit connection for the batch
    whose commits do not wait for the disk flush (synchronous_commit off for this session, reset at
    the end: a database crash may forget the last few hundred milliseconds of marks, whose sends
    then go again with the same Message-ID). SQLite: short write transactions, and reads that never
    keep an old snapshot.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"
        self._marks: list[dict[str, Any]] = []
        self._conn: Connection | None = None

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "use the ledger in a with block"
        return self._conn

    def __enter__(self) -> Ledger:
        conn = self.engine.connect()
        if self.pg:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("SET synchronous_commit TO OFF")
        self._conn = conn
        return self

    def __exit__(self, *exc: object) -> None:
        conn = self.conn
        try:
            self.flush()
            if self.pg:
                conn.exec_driver_sql("RESET synchronous_commit")
        finally:
            self._conn = None
            conn.close()

    def end_read(self) -> None:
        """SQLite: end the read transaction, so the next read sees what others wrote since."""
        if not self.pg:
            self.conn.rollback()

    def write(self, statement: Any) -> int:
        self.flush()
        return self._execute(statement)

    def _execute(self, statement: Any, params: Any = None) -> int:
        if self.pg:
            return int(self.conn.execute(statement, params).rowcount or 0)
        self.end_read()
        with self.engine.begin() as conn:
            return int(conn.execute(statement, params).rowcount or 0)

    def finish(self, send_id: int, status: str, **values: Any) -> bool:
        """sending → status, only if still ours."""
        return bool(self.write(_cas(send_id, status, values)))

    def sent(self, send_id: int, *, sent_at: datetime, subject: str, response: str, message_id: str) -> None:
        """sending → sent, written with the next statement."""
        self._marks.append(
            {
                "mark_id": send_id,
                "mark_sent_at": sent_at,
                "mark_subject": subject,
                "mark_response": response,
                "mark_message_id": message_id,
            }
        )

    def flush(self) -> None:
        if not self._marks:
            return
        marks, self._marks = self._marks, []
        if self.pg:
            self.conn.exec_driver_sql(PG_MARK_SENT, _columns(marks))
        else:
            self._execute(MARK_SENT, marks)

    def look(self, items: Sequence[Ready]) -> dict[int, str | None]:
        """Right before a group leaves: per send, 'lease_lost' when it is no longer this claim's (not
        'sending', or claimed again: each claim counts an attempt), else the customer's opt-out
        reason ('customer_deleted', 'unsubscribed', 'bounced') or None. On PostgreSQL the waiting
        'sent' marks ride along as a data-modifying CTE."""
        send_ids = [item.row.id for item in items]
        customer_ids = sorted({item.row.customer_id for item in items})
        if self.pg:
            params: dict[str, Any] = {"look_send": send_ids, "look_customer": customer_ids}
            query = PG_LOOK
            if self._marks:
                params.update(_columns(self._marks))
                self._marks = []
                query = PG_MARK_SENT_AND_LOOK
            rows: list[Any] = list(self.conn.exec_driver_sql(query, params))
        else:
            self.flush()
            rows = _look_sqlite(self.conn, send_ids, customer_ids)
            self.end_read()
        return look_verdicts(
            [
                Looked(
                    i.row.id, i.row.attempts, i.row.customer_id, i.row.channel, i.topic, i.row.transactional
                )
                for i in items
            ],
            rows,
        )


def _columns(marks: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Marks as one array per column, for unnest()."""
    return {name: [m[name] for m in marks] for name in marks[0]}


def _look_sqlite(conn: Connection, send_ids: list[int], customer_ids: list[int]) -> list[Any]:
    """The rows of PG_LOOK, from three small queries (SQLite runs in-process: no round trips)."""
    rows: list[Any] = [
        (1, r.id, r.attempts, None, None)
        for r in conn.execute(
            select(sends.c.id, sends.c.attempts).where(sends.c.id.in_(send_ids), sends.c.status == "sending")
        )
    ]
    rows += [
        (2, r.id, 0 if r.email_suppressed_at is None else 1, None, None)
        for r in conn.execute(
            select(customers.c.id, customers.c.email_suppressed_at).where(customers.c.id.in_(customer_ids))
        )
    ]
    rows += [
        (3, r.customer_id, None, r.channel, r.topic)
        for r in conn.execute(
            select(unsubscribes.c.customer_id, unsubscribes.c.channel, unsubscribes.c.topic).where(
                unsubscribes.c.customer_id.in_(customer_ids)
            )
        )
    ]
    return rows


# The statements run for every group are written once. PostgreSQL: plain SQL with arrays (no
# statement to build, compile or cache-key per group); SQLite: Core, in `_look_sqlite` and below.
# Core parameter names must not be column names of `sends`: an UPDATE would take those as more
# columns to set.
MARK_SENT = (
    sends.update()
    .where(sends.c.id == bindparam("mark_id"), sends.c.status == "sending")
    .values(
        status="sent",
        lease_until=None,
        error=None,
        sent_at=bindparam("mark_sent_at"),
        subject=bindparam("mark_subject"),
        response=bindparam("mark_response"),
        message_id=bindparam("mark_message_id"),
    )
)
PG_MARK_SENT = """UPDATE sends SET status = 'sent', lease_until = NULL, error = NULL, sent_at = m.sent_at,
    subject = m.subject, response = m.response, message_id = m.message_id
FROM unnest(%(mark_id)s::bigint[], %(mark_sent_at)s::timestamptz[], %(mark_subject)s::text[],
            %(mark_response)s::text[], %(mark_message_id)s::text[])
     AS m (id, sent_at, subject, response, message_id)
WHERE sends.id = m.id AND sends.status = 'sending'"""
#: (1, send id, attempts) for each send still 'sending'; (2, customer id, 1 when bounced) for each
#: customer that exists; (3, customer id, -, channel, topic) for each of their unsubscribes
PG_LOOK = """SELECT 1, id, attempts, NULL, NULL FROM sends
WHERE id = ANY(%(look_send)s::bigint[]) AND status = 'sending'
UNION ALL
SELECT 2, id, CASE WHEN email_suppressed_at IS NULL THEN 0 ELSE 1 END, NULL, NULL FROM customers
WHERE id = ANY(%(look_customer)s::bigint[])
UNION ALL
SELECT 3, customer_id, NULL, channel, topic FROM unsubscribes
WHERE customer_id = ANY(%(look_customer)s::bigint[])"""
PG_MARK_SENT_AND_LOOK = f"WITH mark_sent AS ({PG_MARK_SENT}\nRETURNING sends.id)\n{PG_LOOK}"


def _cas(send_id: int, status: str, values: dict[str, Any]) -> Any:
    return (
        sends.update()
        .where(sends.c.id == send_id, sends.c.status == "sending")
        .values(status=status, lease_until=None, **values)
    )


def deliver_batch(
    engine: Engine,
    settings: Settings,
    ids: Sequence[int],
    *,
    now: datetime,
    channels: Mapping[str, Any] | None = None,
    ruleset: RuleSet | None = None,
    templates: Templates | None = None,
    deliverer: Deliverer | None = None,
) -> DeliveryStats:
    """Deliver a batch of queued sends (what a Celery task runs). A long-lived caller passes its
    `deliverer` (made once per process); otherwise one is made from settings, with the given
    channels, rules and templates where provided."""
    if deliverer is None:
        deliverer = Deliverer.create(engine, settings, ruleset, channels)
        if templates is not None:
            deliverer.templates = templates
    return deliverer.deliver(ids, now=now)


__all__ = ["LEASE", "DeliveryStats", "Deliverer", "backoff", "deliver_batch", "message_id", "sender_domain"]
