"""The send path a worker runs for a batch of send ids (DESIGN "Pending work lives in the database").

Each send moves `queued → sending → sent | failed | suppressed | cancelled` by compare-and-set
updates, so two workers holding the same id never both send it. Policies are checked here, at send
time. Retries are rows with a later `due_at`, never timers in a worker's memory.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
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
from engine.mime import build_email, message_id, send_key, sender_domain
from engine.policies import BatchFacts, load_facts, opt_out_reason, opted_out_query, quiet_until, zone
from engine.render import Templates
from engine.rules.loader import RuleSet
from engine.schema import customers, sends
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
                for row in rows:
                    try:
                        event = self._one(ledger, row, facts, now, signer, stats)
                    except JourneyError as exc:  # one bad send must not stop the batch
                        log.exception("send %s failed: %s", row.id, exc)
                        ledger.finish(row.id, "failed", error=str(exc)[:1000], reason="error")
                        stats.count("failed", "error")
                        event = None
                    _record_outcome(row, stats.last, now)
                    if event is None:
                        continue
                    if event is not None:
                        sent_events.append(event)
                        facts.recent_sends[row.customer_id] = facts.recent_sends.get(row.customer_id, 0) + (
                            0 if row.transactional else 1
                        )
        finally:
            for channel in self.channels.values():
                channel.close()
            if sent_events:
                with self.engine.begin() as wconn:
                    record_events(wconn, sent_events)
        return stats

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

    def _one(
        self, ledger: Ledger, row: Any, facts: BatchFacts, now: datetime, signer: Any, stats: DeliveryStats
    ) -> InternalEvent | None:
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
        try:
            if row.channel == "webhook":
                step = send_step_at(rule, row.step)
                url = step.url or self.ruleset.settings.webhook_url
                if not url:
                    raise DeliveryError(
                        "no webhook url: set url: on the step or webhook_url in settings.yaml", permanent=True
                    )
                payload = self.templates.render_json(row.template, ctx)
                subject = f"webhook {row.template}"
                if not self._last_look(ledger, row, rule, stats):
                    return None
                response = self.channels["webhook"].post(url, payload, key=key, now=now)
                mid = key
            else:
                rendered = self.templates.render(row.template, ctx)
                subject = rendered.subject
                msg = build_email(
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
                mid = str(msg["Message-ID"])
                if not self._last_look(ledger, row, rule, stats):
                    return None
                response = self.channels["email"].send(msg)
        except TemplateError as exc:
            ledger.finish(row.id, "failed", error=str(exc)[:1000], reason="template")
            stats.count("failed", "template")
            return None
        except DeliveryError as exc:
            self._failed_delivery(ledger, row, exc, now, stats)
            return None
        ledger.sent(row.id, sent_at=now, subject=subject, response=response[:1000], message_id=mid)
        stats.count("sent")
        return InternalEvent(
            customer_id=row.customer_id,
            name="email_sent" if row.channel == "email" else "webhook_sent",
            ts=now,
            properties={"rule": row.rule_id, "send_id": row.id, "template": row.template, "subject": subject},
            message_id=f"{row.channel}_sent:{row.id}",
        )

    def _last_look(self, ledger: Ledger, row: Any, rule: Any, stats: DeliveryStats) -> bool:
        """Right before a message leaves, in one round trip: the send is still this worker's (its
        lease was not taken back and handed to another worker), and an unsubscribe or a bounce
        recorded a moment ago still counts."""
        verdict = ledger.last_look(row.id, row.attempts, row.customer_id, row.channel, rule.topic or rule.id)
        if verdict == "lease_lost":
            stats.count("skipped", "lease_lost")  # another worker has it now: leave it alone
            return False
        if verdict is not None and not (rule.transactional and verdict == "unsubscribed"):
            ledger.finish(row.id, "suppressed", reason=verdict)
            stats.count("suppressed", verdict)
            return False
        return True

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
        if not rule.transactional:  # unsubscribes are checked right before the message leaves
            cap = self.ruleset.settings.frequency_cap
            if cap is not None and facts.recent_sends.get(customer.id, 0) >= cap.max:
                return ("suppressed", "frequency_cap", None)
            window = rule.quiet_hours or self.ruleset.settings.quiet_hours
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


class Ledger:
    """A batch's reads and writes of the sends ledger, each change a compare-and-set from 'sending'.

    PostgreSQL: one autocommit connection for the batch whose commits do not wait for the disk flush
    (synchronous_commit off for this session, reset at the end: a database crash may forget the last
    few hundred milliseconds of marks, whose sends then go again with the same Message-ID), and a
    'sent' mark travels with the next message's opt-out check, in the same statement: one round trip
    per message besides the channel's. Until then, and if the worker dies, that send is 'sending'
    and is sent again after its lease: at most one message per worker in that window.
    SQLite: a short write transaction per change, and reads that never keep an old snapshot.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"
        self._pending: Any = None
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

    def _execute(self, statement: Any, params: dict[str, Any] | None = None) -> int:
        if self.pg:
            return int(self.conn.execute(statement, params).rowcount or 0)
        self.end_read()
        with self.engine.begin() as conn:
            return int(conn.execute(statement, params).rowcount or 0)

    def finish(self, send_id: int, status: str, **values: Any) -> bool:
        """sending → status, only if still ours."""
        return bool(self.write(_cas(send_id, status, values)))

    def sent(self, send_id: int, *, sent_at: datetime, subject: str, response: str, message_id: str) -> None:
        """sending → sent: on PostgreSQL written with the next statement, else now."""
        self.flush()
        params = {
            "mark_id": send_id,
            "mark_sent_at": sent_at,
            "mark_subject": subject,
            "mark_response": response,
            "mark_message_id": message_id,
        }
        if self.pg:
            self._pending = params
        else:
            self._execute(MARK_SENT, params)

    def flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._execute(MARK_SENT, pending)

    def last_look(
        self, send_id: int, attempts: int, customer_id: int, channel: str, topic: str
    ) -> str | None:
        """'lease_lost' when the send is no longer this claim's (not 'sending', or claimed again:
        each claim counts an attempt), else the customer's opt-out reason or None. Carries the
        previous message's 'sent' mark on PostgreSQL."""
        params: dict[str, Any] = {
            "check_send": send_id,
            "check_customer": customer_id,
            "check_channel": channel,
            "check_topic": topic,
        }
        query = LAST_LOOK
        if self._pending is not None:  # PostgreSQL: the mark rides along as a data-modifying CTE
            params.update(self._pending)
            self._pending = None
            query = LAST_LOOK_AND_MARK_SENT
        row = self.conn.execute(query, params).first()
        self.end_read()
        if row is not None and row[2] != attempts:
            return "lease_lost"
        return opt_out_reason(row, channel)


# The statements run for every message are built once, with bound parameters: building and
# compiling a Core statement costs more than the round trip it makes. Parameter names must not be
# column names of `sends`: an UPDATE would take those as more columns to set.
LAST_LOOK = opted_out_query(
    bindparam("check_customer"), bindparam("check_channel"), bindparam("check_topic")
).add_columns(
    select(sends.c.attempts)
    .where(sends.c.id == bindparam("check_send"), sends.c.status == "sending")
    .scalar_subquery()
)
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
LAST_LOOK_AND_MARK_SENT = LAST_LOOK.add_cte(MARK_SENT.returning(sends.c.id).cte("mark_sent"))


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
