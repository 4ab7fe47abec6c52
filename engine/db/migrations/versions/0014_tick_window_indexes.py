"""the opt-outs and suppressions of a tick's window by index: a segment reading `subscribed:`
finds them without reading every customer

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    suppressed = sa.text("email_suppressed_at IS NOT NULL")
    op.create_index(
        "ix_customers_email_suppressed_at",
        "customers",
        ["email_suppressed_at"],
        postgresql_where=suppressed,
        sqlite_where=suppressed,
    )
    op.create_index("ix_unsubscribes_at", "unsubscribes", ["at"])


def downgrade() -> None:
    op.drop_index("ix_unsubscribes_at", table_name="unsubscribes")
    op.drop_index("ix_customers_email_suppressed_at", table_name="customers")
