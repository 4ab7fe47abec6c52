"""Delivery feedback and the suppression list; customers keep the time they were erased; sends are
found by their Message-ID

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.db.schema

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", engine.db.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address_hash", name=op.f("pk_suppressions")),
    )
    op.create_table(
        "feedback",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("bounce_type", sa.String(length=8), nullable=True),
        sa.Column("send_id", sa.BigInteger(), nullable=True),
        sa.Column("rule_id", sa.String(length=128), nullable=True),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("address_hash", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", engine.db.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", engine.db.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("provider", "event_id", name=op.f("uq_feedback_provider_event_id")),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_address_kind", ["address_hash", "kind", "occurred_at"], unique=False)
        batch_op.create_index("ix_feedback_kind_occurred", ["kind", "occurred_at"], unique=False)
        batch_op.create_index("ix_feedback_customer", ["customer_id"], unique=False)
    op.create_table(
        "feedback_tokens",
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("token", sa.String(length=255), nullable=False),
        sa.Column("seen_at", engine.db.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "token", name=op.f("pk_feedback_tokens")),
    )
    with op.batch_alter_table("feedback_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_tokens_seen_at", ["seen_at"], unique=False)
    # a nullable column without a default: no table rewrite on either database
    op.add_column("customers", sa.Column("erased_at", engine.db.schema.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_sends_message_id", "sends", ["message_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sends_message_id", table_name="sends")
    # plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of customers would cascade
    # the deletes of the old table into unsubscribes
    op.drop_column("customers", "erased_at")
    op.drop_table("feedback_tokens")
    op.drop_table("feedback")
    op.drop_table("suppressions")
