"""The data model, as SQLAlchemy Core tables (one code path for PostgreSQL and SQLite).

Times are stored in UTC: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite; Python always
sees aware UTC datetimes (engine.db.types).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from engine.db.types import BigID, JSONType, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

customers = Table(
    "customers",
    metadata,
    Column("id", BigID, primary_key=True, autoincrement=True),
    Column("external_id", String(255), nullable=False, unique=True),
    Column("email", String(320)),
    Column("phone", String(64)),
    Column("timezone", String(64)),
    Column("locale", String(32)),
    Column("first_name", String(255)),
    Column("attributes", JSONType, nullable=False, default=dict),
    #: random per customer: makes split assignment stable and independent of ids
    Column("salt", Integer, nullable=False),
    Column("referral_code", String(32), unique=True),
    Column("referred_by", BigID, ForeignKey("customers.id", ondelete="SET NULL")),
    Column("stage", String(64)),
    Column("stage_entered_at", UTCDateTime()),
    #: time of the newest identify applied; an older identify only fills missing traits
    Column("identified_at", UTCDateTime()),
    #: time of the customer's earliest known activity
    Column("first_seen_at", UTCDateTime()),
    Column("email_suppressed_at", UTCDateTime()),
    Column("email_suppressed_reason", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    #: set when the customer's personal data was erased (`journey customers erase`): the row stays,
    #: empty, so that what the ledger and the reports count about it keeps its id
    Column("erased_at", UTCDateTime()),
    #: no index on stage: a stage change then rewrites the row in place (migration 0004)
    #: suppressions of a tick's window, for segments reading `subscribed:` (only suppressed rows)
    Index(
        "ix_customers_email_suppressed_at",
        "email_suppressed_at",
        postgresql_where=text("email_suppressed_at IS NOT NULL"),
        sqlite_where=text("email_suppressed_at IS NOT NULL"),
    ),
    postgresql_with={"fillfactor": 50},
)

events = Table(
    "events",
    metadata,
    Column("id", BigID, primary_key=True, autoincrement=True),
    #: no foreign key: ingest takes the id from customers in the statement that inserts the event,
    #: and a per-row check cost a third of ingest's database time (migration 0003)
    Column("customer_id", BigID, nullable=False),
    Column("name", String(128), nullable=False),
    Column("ts", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("message_id", String(255), unique=True),
    Column("properties", JSONType, nullable=False, default=dict),
    Index("ix_events_customer_name_ts", "customer_id", "name", "ts"),
    Index("ix_events_ts", "ts"),
    #: conditions with `where:` over all customers, and reports, read one event name at a time
    Index("ix_events_name_ts", "name", "ts"),
)

#: one row per (customer, event name), kept current on ingest: what conditions read
event_summary = Table(
    "event_summary",
    metadata,
    #: no foreign key, like events.customer_id
    Column("customer_id", BigID, primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("first_at", UTCDateTime(), nullable=False),
    Column("last_at", UTCDateTime(), nullable=False),
    Column("count", Integer, nullable=False),
    Column("last_event_id", BigID, nullable=False),
    Column("last_properties", JSONType, nullable=False, default=dict),
    #: no index on last_at: a new event then rewrites the row in place (migration 0005); the rows
    #: whose last_at lies in a range are found through events (conditions.last_between)
    postgresql_with={"fillfactor": 70},
)

#: ids merged into a customer (CONTRACT 9): an anonymous id or a known customer's id that now
#: resolves to `customer_id`, and the time of the call that merged it
customer_aliases = Table(
    "customer_aliases",
    metadata,
    Column("alias", String(255), primary_key=True),
    Column("customer_id", BigID, nullable=False),
    Column("merged_at", UTCDateTime(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Index("ix_customer_aliases_customer", "customer_id"),
)

stage_history = Table(
    "stage_history",
    metadata,
    Column("id", BigID, primary_key=True, autoincrement=True),
    #: no foreign key, like events.customer_id: written from a SELECT over customers
    Column("customer_id", BigID, nullable=False),
    Column("from_stage", String(64)),
    Column("to_stage", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    #: False for a customer's first stage when their activity predates the tick window
    Column("fires", Boolean, nullable=False, default=True),
    #: the tick that computed the change
    Column("tick_id", BigInteger),
    Index("ix_stage_history_tick", "tick_id", "customer_id"),
    Index("ix_stage_history_customer", "customer_id", "at"),
)

#: opt-outs per channel ('email', 'webhook', or '*') and topic ('*' for everything)
unsubscribes = Table(
    "unsubscribes",
    metadata,
    Column("customer_id", BigID, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("topic", String(64), primary_key=True, default="*"),
    Column("at", UTCDateTime(), nullable=False),
    Column("source", String(64)),
    #: opt-outs of a tick's window, for segments reading `subscribed:`
    Index("ix_unsubscribes_at", "at"),
)

#: a customer's passage through a rule, once per trigger occurrence
enrollments = Table(
    "enrollments",
    metadata,
    Column("id", BigID, primary_key=True, autoincrement=True),
    Column("rule_id", String(128), nullable=False),
    #: no foreign key: a tick takes it from customers in the statement that inserts the row, and
    #: PostgreSQL checked it again on every step the tick moved the new row through (migration 0006)
    Column("customer_id", BigID, nullable=False),
    #: the trigger occurrence: an event id, a stage-history id, a cron time (epoch s) or a year
    Column("occurrence", BigInteger, nullable=False),
    Column("trigger_event_id", BigID),
    Column("entered_at", UTCDateTime(), nullable=False),
    Column("tick_at", UTCDateTime(), nullable=False),
    #: the next step's path ('0', '2.then.1', '3.B.0'); NULL once finished
    Column("position", String(255)),
    Column("due_at", UTCDateTime()),
    Column("status", String(16), nullable=False, default="active"),
    Column("variant", String(64)),
    Column("bucket", Integer, nullable=False, default=0),
    Column("ended_at", UTCDateTime()),
    #: at a `wait_for` step: when it was reached (due_at is the timeout); the event that released it
    Column("waiting_since", UTCDateTime()),
    Column("released_by", BigID),
    UniqueConstraint("rule_id", "customer_id", "occurrence"),
    Index("ix_enrollments_rule_status_due", "rule_id", "status", "due_at"),
    Index("ix_enrollments_customer", "customer_id", "rule_id"),
)

#: (name, column, WHERE) of the sends' partial indexes
SENDS_PARTIAL_INDEXES = (
    ("ix_sends_message_id", "message_id", "message_id IS NOT NULL"),
    ("ix_sends_failed_at", "failed_at", "failed_at IS NOT NULL"),
    ("ix_sends_retrying", "attempts", "status = 'due' AND reason = 'retry'"),
)

#: the send ledger: one row per (rule, step, customer, occurrence), sent at most once
sends = Table(
    "sends",
    metadata,
    Column("id", BigID, primary_key=True, autoincrement=True),
    Column("rule_id", String(128), nullable=False),
    Column("step", String(255), nullable=False),
    #: no foreign keys: a tick takes both from the enrollment it advances (migration 0006)
    Column("customer_id", BigID, nullable=False),
    Column("occurrence", BigInteger, nullable=False),
    Column("enrollment_id", BigID),
    Column("template", String(255), nullable=False),
    Column("channel", String(32), nullable=False, default="email"),
    Column("transactional", Boolean, nullable=False, default=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    #: due → queued → sending → sent | failed | suppressed | cancelled
    Column("status", String(16), nullable=False, default="due"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_until", UTCDateTime()),
    Column("queued_at", UTCDateTime()),
    Column("sent_at", UTCDateTime()),
    Column("subject", Text),
    Column("response", Text),
    Column("error", Text),
    Column("reason", String(64)),
    Column("message_id", String(255)),
    #: when it ended `failed` (`journey health`: the last hour's failures by reason)
    Column("failed_at", UTCDateTime()),
    UniqueConstraint("rule_id", "step", "customer_id", "occurrence"),
    Index("ix_sends_status_due", "status", "due_at"),
    Index("ix_sends_customer_sent", "customer_id", "sent_at"),
    #: delivery feedback finds a send by the Message-ID it went out with; `journey health` the
    #: last hour's failures. Only rows where they are set (migration 0016): a send is written three
    #: times before it has either. And the sends retried for a transient failure, which
    #: `journey health` and /metrics count (migration 0017)
    *(
        Index(name, column, postgresql_where=text(where), sqlite_where=text(where))
        for name, column, where in SENDS_PARTIAL_INDEXES
    ),
)

#: addresses that get no email (CONTRACT 10), one row per address with its strongest reason:
#: `hard_bounce` and `erased` block every message, `complaint` and `manual` every marketing one
suppressions = Table(
    "suppressions",
    metadata,
    #: SHA-256 of the normalised address (engine.addresses): the key, even once the address is erased
    Column("address_hash", String(64), primary_key=True),
    #: the normalised address; NULL once erased
    Column("address", String(320)),
    Column("reason", String(32), nullable=False),
    #: who said so: a provider (ses, sendgrid, postmark, mailgun), smtp, cli, import, erasure
    Column("source", String(64), nullable=False),
    #: the provider's words (a bounce's diagnostic, a complaint's type)
    Column("detail", Text),
    Column("created_at", UTCDateTime(), nullable=False),
)

#: delivery reports from email providers, once each: what reports and the soft-bounce count read
feedback = Table(
    "feedback",
    metadata,
    Column("id", BigID, primary_key=True, autoincrement=True),
    Column("provider", String(16), nullable=False),
    #: the provider's id of the report (hashed when longer than fits): the same report twice is one
    Column("event_id", String(255), nullable=False),
    #: delivered, bounced, complained, opened, clicked
    Column("kind", String(16), nullable=False),
    #: hard or soft, for a bounce
    Column("bounce_type", String(8)),
    #: no foreign keys: the send and its customer as matched when the report came
    Column("send_id", BigInteger),
    Column("rule_id", String(128)),
    Column("customer_id", BigInteger),
    #: the reported recipient, hashed like suppressions.address_hash (NULL once erased)
    Column("address_hash", String(64)),
    #: when the provider says it happened
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("provider", "event_id"),
    Index("ix_feedback_address_kind", "address_hash", "kind", "occurred_at"),
    Index("ix_feedback_kind_occurred", "kind", "occurred_at"),
    Index("ix_feedback_customer", "customer_id"),
)

#: signature tokens a provider may use once (Mailgun signs only a timestamp and a token)
feedback_tokens = Table(
    "feedback_tokens",
    metadata,
    Column("provider", String(16), primary_key=True),
    Column("token", String(255), primary_key=True),
    Column("seen_at", UTCDateTime(), nullable=False),
    Index("ix_feedback_tokens_seen_at", "seen_at"),
)

#: one row per tick: the window (prev_now, now] it covered
ticks = Table(
    "ticks",
    metadata,
    Column("id", BigID, primary_key=True, autoincrement=True),
    Column("now", UTCDateTime(), nullable=False),
    Column("prev_now", UTCDateTime(), nullable=False),
    #: every event with id <= event_seq was committed when this tick started
    Column("event_seq", BigInteger, nullable=False),
    Column("prev_event_seq", BigInteger, nullable=False),
    #: every customer with id <= customer_seq was committed when this tick started, and has a stage
    #: when it ends (NULL: a tick from before migration 0004)
    Column("customer_seq", BigInteger),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("stats", JSONType),
    Index("ix_ticks_now", "now"),
)

#: a rule is evaluated from the first tick that saw it (CONTRACT section 7)
segment_members = Table(  # as of the last tick
    "segment_members",
    metadata,
    Column("segment", String(64), primary_key=True),
    Column("customer_id", BigID, primary_key=True),
    Column("since", UTCDateTime(), nullable=False),
    Index("ix_segment_members_customer", "customer_id"),
)


#: every entry into and exit from a segment (fires: False for a new segment's first members)
segment_history = Table(
    "segment_history",
    metadata,
    Column("id", BigID, primary_key=True, autoincrement=True),
    Column("segment", String(64), nullable=False),
    Column("customer_id", BigID, nullable=False),
    Column("entered", Boolean, nullable=False),  # False: exited
    Column("at", UTCDateTime(), nullable=False),
    Column("fires", Boolean, nullable=False, default=True),
    Column("tick_id", BigInteger),
    Index("ix_segment_history_tick", "tick_id", "segment"),
    Index("ix_segment_history_customer", "customer_id", "at"),
)

#: the segments computed so far (one first seen records its members silently)
segment_state = Table(
    "segment_state",
    metadata,
    Column("segment", String(64), primary_key=True),
    Column("first_tick_at", UTCDateTime(), nullable=False),
    Column("digest", String(64), nullable=False),
)

#: sends claimed per channel and rate-limit window, shared by every dispatcher
rate_budget = Table(
    "rate_budget",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("window_start", UTCDateTime(), primary_key=True),
    Column("used", Integer, nullable=False, default=0),
)


rule_state = Table(
    "rule_state",
    metadata,
    Column("rule_id", String(128), primary_key=True),
    Column("first_tick_at", UTCDateTime(), nullable=False),
    Column("digest", String(64), nullable=False),
)

#: paused rules (`journey rules pause`): no one enters them and their sends wait; a row with
#: `resumed_at` set is a resume the next tick still has to apply (engine.pauses)
rule_pauses = Table(
    "rule_pauses",
    metadata,
    Column("rule_id", String(128), primary_key=True),
    Column("paused_at", UTCDateTime(), nullable=False),
    #: who paused it (user@host), for `journey rules list`
    Column("paused_by", String(255)),
    Column("resumed_at", UTCDateTime()),
)

#: small key/value store: generated secrets, scheduler heartbeats
meta = Table(
    "meta",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

__all__ = [
    "BigID",
    "Float",
    "JSONType",
    "UTCDateTime",
    "customers",
    "enrollments",
    "event_summary",
    "events",
    "feedback",
    "feedback_tokens",
    "meta",
    "metadata",
    "rule_pauses",
    "rule_state",
    "sends",
    "stage_history",
    "suppressions",
    "ticks",
    "unsubscribes",
]
