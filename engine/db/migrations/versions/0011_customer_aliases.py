"""Identity merge: the ids merged into a customer, and when

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.db.schema import BigID, UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_aliases",
        sa.Column("alias", sa.String(length=255), nullable=False),
        sa.Column("customer_id", BigID, nullable=False),
        sa.Column("merged_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("alias", name=op.f("pk_customer_aliases")),
    )
    op.create_index("ix_customer_aliases_customer", "customer_aliases", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_customer_aliases_customer", table_name="customer_aliases")
    op.drop_table("customer_aliases")
