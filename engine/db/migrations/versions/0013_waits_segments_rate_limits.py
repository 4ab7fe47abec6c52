"""wait_for steps (when an enrollment reached the step, the event that released it), segments
(members, history of entries and exits, the segments computed so far) and send-rate budgets

Revision ID: 0013
Revises: 0010
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.db.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("enrollments", sa.Column("waiting_since", UTCDateTime(), nullable=True))
    op.add_column("enrollments", sa.Column("released_by", BigID, nullable=True))
    op.create_table(
        "segment_members",
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("customer_id", BigID, nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("segment", "customer_id", name=op.f("pk_segment_members")),
    )
    op.create_index("ix_segment_members_customer", "segment_members", ["customer_id"])
    op.create_table(
        "segment_history",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("customer_id", BigID, nullable=False),
        sa.Column("entered", sa.Boolean(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("fires", sa.Boolean(), nullable=False),
        sa.Column("tick_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_history")),
    )
    op.create_index("ix_segment_history_tick", "segment_history", ["tick_id", "segment"])
    op.create_index("ix_segment_history_customer", "segment_history", ["customer_id", "at"])
    op.create_table(
        "segment_state",
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("first_tick_at", UTCDateTime(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("segment", name=op.f("pk_segment_state")),
    )
    op.create_table(
        "rate_budget",
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "window_start", name=op.f("pk_rate_budget")),
    )


def downgrade() -> None:
    op.drop_table("rate_budget")
    op.drop_table("segment_state")
    op.drop_index("ix_segment_history_customer", table_name="segment_history")
    op.drop_index("ix_segment_history_tick", table_name="segment_history")
    op.drop_table("segment_history")
    op.drop_index("ix_segment_members_customer", table_name="segment_members")
    op.drop_table("segment_members")
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("released_by")
        batch.drop_column("waiting_since")
