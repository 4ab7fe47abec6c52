"""wait_for steps: when an enrollment reached the step, and the event that released it

Revision ID: 0013
Revises: 0010
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.db.schema import UTCDateTime

revision = "0013"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("waiting_since", UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("released_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("released_by")
        batch.drop_column("waiting_since")
