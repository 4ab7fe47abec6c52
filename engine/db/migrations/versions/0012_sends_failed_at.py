"""When a send failed: `journey health` and /metrics count the last hour's failures by reason

Revision ID: 0012
Revises: 0010
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.db.types import UTCDateTime

revision = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.add_column(sa.Column("failed_at", UTCDateTime(), nullable=True))
    op.create_index("ix_sends_failed_at", "sends", ["failed_at"])


def downgrade() -> None:
    op.drop_index("ix_sends_failed_at", table_name="sends")
    with op.batch_alter_table("sends") as batch:
        batch.drop_column("failed_at")
