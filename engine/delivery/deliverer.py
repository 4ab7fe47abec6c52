"""The send path a worker runs for a batch of send ids (DESIGN "Pending work lives in the database").

Each send moves `queued → sending → sent | failed | suppressed | cancelled` by compare-and-set
updates (the ledger), so two workers holding the same id never both send it. Policies are checked
here, at send time. Retries are rows with a later `due_at`, never timers in a worker's memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from engine import logs
from engine.db import get_or_create_secret
from engine.db.schema import customers, sends
from engine.delivery.boundary import failed_alone, give_up, worn_out
from engine.delivery.channels import Channels
from engine.delivery.channels.email import email_channel
from engine.delivery.channels.webhook import WebhookChannel
from engine.delivery.compose import Ready, compose
from engine.delivery.context import context_for, signer_for
from engine.delivery.ledger import Ledger, claim_batch
from engine.delivery.live import LiveRules, rules_and_templates
from engine.delivery.mime import send_key
from engine.delivery.policies import (
    MAX_ATTEMPTS,
    BatchFacts,
    backoff,
    capped,
    counts_for_cap,
    load_facts,
    send_verdict,
)
from engine.delivery.render import Templates
from engine.delivery.status import DeliveryStats, Outcome, Reason, SendRow, SendStatus
from engine.delivery.tokens import Signer
from engine.errors import DeliveryError
from engine.events import InternalEvent, record_events
from engine.metrics import observe_send
from engine.rules.loader import RuleSet
from engine.settings import Settings
from engine.suppressions import hard_bounce, suppress_statement

log = logging.getLogger("journey.deliver")
send_log = logs.get("journey.deliver")

#: A batch leaves in groups of this many messages: one statement, right before a group is handed
#: to the channel, checks that each of its sends is still this worker's and that no unsubscribe
#: or bounce was recorded since the batch was loaded. An unsubscribe recorded while a group is on
#: its way stops the next group, not the rest of this one. Each message's 'sent' mark is written
#: as soon as the channel took it (Ledger.sent): a worker that dies leaves at most the one message
#: it was handing over unmarked, which goes again (same Message-ID) after the lease.
GROUP = 20
#: ... and a group's check is made again for the rest of the group once it is older than this
LOOK_MAX_AGE = 0.5  # seconds


@dataclass
class Deliverer:
    """What a batch needs, made once per process: channels, templates, rules, the signer."""

    engine: Engine
    settings: Settings
    ruleset: RuleSet
    templates: Templates
    channels: Channels
    #: the link signer, made on the first batch (from the settings, or the key stored on first run)
    signer: Signer | None = None
    #: messages per check (see GROUP); 1 checks right before every message
    group: int = GROUP
    #: seconds, for LOOK_MAX_AGE (a parameter so that tests can move time without sleeping)
    clock: Callable[[], float] = time.monotonic
    #: the rule and template files, taken again when they change and check clean (a worker)
    live: LiveRules | None = None

    @classmethod
    def create(
        cls,
        engine: Engine,
        settings: Settings,
        ruleset: RuleSet | None = None,
        channels: Mapping[str, Any] | None = None,
    ) -> Deliverer:
        """A deliverer for `settings`; `channels` replaces the configured ones by name (tests, the
        demo's outbox, simulation's stubs). Without `ruleset` (a worker), the files', watched."""
        ruleset, templates, live = rules_and_templates(settings, ruleset)
        given = dict(channels or {})
        if "email" not in given:
            given["email"] = email_channel(settings.email_url)
        if "webhook" not in given:
            secret = settings.secret_key or get_or_create_secret(engine, "secret_key")
            given["webhook"] = WebhookChannel(secret.split(",")[0], settings.webhook_timeout)
        return cls(
            engine,
            settings,
            ruleset,
            templates,
            Channels(email=given["email"], webhook=given["webhook"]),
            live=live,
        )

    def deliver(self, ids: Sequence[int], *, now: datetime) -> DeliveryStats:
        """Deliver a batch: claim it in one statement, load what the policies need in a few
        queries, then send message by message, marking each one sent as soon as the channel took it."""
        stats = DeliveryStats()
        if not ids:
            return stats
        if self.live is not None and self.live.refresh():
            self.ruleset, self.templates = self.live.ruleset, self.live.templates
        if self.signer is None:
            self.signer = signer_for(self.settings, self.engine)
        rows = claim_batch(self.engine, ids, now, self.settings.send_lease)
        stats.skipped = len(set(ids)) - len(rows)
        if not rows:
            return stats
        exit_names = {name for r in self.ruleset.rules for name in r.exit_on}
        cap = self.ruleset.settings.frequency_cap
        sent_events: list[InternalEvent] = []
        try:
            with Ledger.open(self.engine) as ledger:
                facts = load_facts(
                    ledger.conn, rows, exit_names=exit_names, cap_per=cap.per if cap else None, now=now
                )
                ledger.end_read()
                size = max(1, self.group)
                for start in range(0, len(rows), size):
                    with logs.held():  # the group's log lines in one write, when it is done
                        ready: list[Ready] = []
                        for row in rows[start : start + size]:
                            try:
                                item = self._prepare(ledger, row, facts, now, self.signer, stats)
                            except Exception as exc:  # one bad send must not stop the batch
                                failed_alone(ledger, row, exc, now, stats)
                                item = None
                            if item is None:
                                _record_outcome(row, stats.last, now)
                            else:
                                ready.append(item)
                        self._send_group(ledger, ready, facts, now, stats, sent_events)
        finally:
            for channel in self.channels.all():
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
        verdicts = ledger.look([item.looked() for item in ready])
        looked = self.clock()
        announce = getattr(self.channels.email, "announce", None)
        for n, item in enumerate(ready):
            if n and self.clock() - looked > LOOK_MAX_AGE:
                verdicts = ledger.look([later.looked() for later in ready[n:]])
                looked = self.clock()
            if announce is not None and item.msg is not None:
                announce(_following(ready, n, verdicts, facts, self.ruleset.settings.frequency_cap))
            row = item.row
            try:
                event = self._send(ledger, item, verdicts.get(row.id), facts, now, stats)
            except Exception as exc:
                failed_alone(ledger, row, exc, now, stats)
                event = None
            _record_outcome(row, stats.last, now)
            if event is not None:
                sent_events.append(event)
                if counts_for_cap(row):
                    facts.count_sent(row.customer_id, row.priority)

    # ------------------------------------------------------------------------------ one send

    def _prepare(
        self,
        ledger: Ledger,
        row: SendRow,
        facts: BatchFacts,
        now: datetime,
        signer: Signer,
        stats: DeliveryStats,
    ) -> Ready | None:
        """The policies, then the message rendered and built; None when the send is finished here."""
        try:
            rule = self.ruleset.rule(row.rule_id)
        except KeyError:
            ledger.finish(row.id, SendStatus.CANCELLED, reason=Reason.RULE_REMOVED)
            stats.count(Outcome.CANCELLED, Reason.RULE_REMOVED)
            return None
        if worn_out(row):
            give_up(ledger, row, now, stats)
            return None
        customer: Any = facts.customers.get(row.customer_id)
        verdict = send_verdict(row, rule, customer, facts, self.ruleset.settings, now)
        if verdict is not None:
            status, reason, due = verdict
            if status is SendStatus.DUE:  # not now, and this claim does not count as an attempt
                ledger.finish(row.id, status, due_at=due, reason=reason, attempts=sends.c.attempts - 1)
                stats.count(Outcome.DEFERRED, reason)
            else:
                ledger.finish(row.id, status, reason=reason)
                stats.count(Outcome(status.value), reason)
            return None
        enrollment = facts.enrollments.get(row.enrollment_id) if row.enrollment_id is not None else None
        event = facts.trigger_events.get(enrollment.trigger_event_id) if enrollment is not None else None
        ctx = context_for(
            ledger.conn,
            self.settings,
            signer,
            send_id=row.id,
            rule_id=row.rule_id,
            customer=customer,
            event=event,
            description=rule.description,
            now=now,
        )
        key = send_key(row.rule_id, row.step, row.customer_id, row.occurrence)
        item = Ready(row, rule, key, rule.opt_out_topics(), address=facts.address_hash.get(row.customer_id))
        try:
            compose(
                item, self.templates, self.settings, self.ruleset.settings.webhook_url, customer, ctx, now
            )
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
        if verdict == Reason.LEASE_LOST:
            stats.count(Outcome.SKIPPED, Reason.LEASE_LOST)  # another worker has it now: leave it alone
            return None
        if verdict is not None:
            reason = Reason(verdict)
            ledger.finish(row.id, SendStatus.SUPPRESSED, reason=reason)
            stats.count(Outcome.SUPPRESSED, reason)
            return None
        if capped(row, facts, self.ruleset.settings.frequency_cap):
            # an earlier message of this batch, to the same customer, reached the cap
            ledger.finish(row.id, SendStatus.SUPPRESSED, reason=Reason.FREQUENCY_CAP)
            stats.count(Outcome.SUPPRESSED, Reason.FREQUENCY_CAP)
            return None
        try:
            if item.msg is None:
                assert item.url is not None
                response = self.channels.webhook.post(item.url, item.payload, key=item.key, now=now)
            else:
                response = self.channels.email.send(item.msg)
        except DeliveryError as exc:
            self._failed_delivery(ledger, row, exc, now, stats)
            if exc.hard_bounce and (entry := hard_bounce(item.msg, str(exc), now)) is not None:
                ledger.write(suppress_statement(self.engine, entry))  # the address, whoever has it
            return None
        ledger.sent(
            row.id, sent_at=now, subject=item.subject, response=response[:1000], message_id=item.message_id
        )
        stats.count(Outcome.SENT)
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

    def _failed_delivery(
        self, ledger: Ledger, row: SendRow, exc: DeliveryError, now: datetime, stats: DeliveryStats
    ) -> None:
        error = str(exc)[:1000]
        if exc.permanent:
            ledger.finish(row.id, SendStatus.FAILED, error=error, reason=Reason.REFUSED, failed_at=now)
            if row.channel == "email" and exc.hard_bounce:  # no more email to this address
                ledger.write(
                    customers.update()
                    .where(customers.c.id == row.customer_id, customers.c.email_suppressed_at.is_(None))
                    .values(email_suppressed_at=now, email_suppressed_reason=str(exc)[:500])
                )
            stats.count(Outcome.FAILED, Reason.REFUSED)
            return
        if row.attempts >= MAX_ATTEMPTS:
            ledger.finish(row.id, SendStatus.FAILED, error=error, reason=Reason.GAVE_UP, failed_at=now)
            stats.count(Outcome.FAILED, Reason.GAVE_UP)
            return
        ledger.finish(
            row.id, SendStatus.DUE, due_at=now + backoff(row.attempts), error=error, reason=Reason.RETRY
        )
        stats.count(Outcome.RETRIED, Reason.TRANSIENT)


def _following(
    ready: list[Ready], n: int, verdicts: dict[int, str | None], facts: BatchFacts, cap: Any
) -> Any:
    """The email to announce while `ready[n]` goes: the next one, when as things stand it will
    go right after (its look found nothing, and `ready[n]`, another customer's, cannot bring it
    to the cap). An announced email that does not go after all is withdrawn by the channel."""
    if n + 1 >= len(ready):
        return None
    item, after = ready[n], ready[n + 1]
    if after.msg is None or verdicts.get(after.row.id) is not None:
        return None
    if after.row.customer_id == item.row.customer_id or capped(after.row, facts, cap):
        return None
    return after.msg


def _record_outcome(row: SendRow, outcome: tuple[Outcome, Reason | None], now: datetime) -> None:
    """One structured line and the metrics for every send: rule, send key, customer, outcome."""
    status, reason = outcome
    latency = (now - row.due_at).total_seconds() if status is Outcome.SENT else None
    observe_send(row.rule_id, row.channel, status.value, latency)
    send_log.info(
        "send",
        rule=row.rule_id,
        send_key=send_key(row.rule_id, row.step, row.customer_id, row.occurrence),
        send_id=row.id,
        customer=row.customer_id,
        channel=row.channel,
        template=row.template,
        status=status.value,
        reason=reason.value if reason else None,
        attempt=row.attempts,
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
