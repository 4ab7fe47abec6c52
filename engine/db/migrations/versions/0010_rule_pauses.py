"""Paused rules: `journey rules pause RULE` stores the pause here, for every scheduler and worker

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.db.schema import UTCDateTime

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_pauses",
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("paused_at", UTCDateTime(), nullable=False),
        sa.Column("paused_by", sa.String(length=255), nullable=True),
        sa.Column("resumed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("rule_id", name=op.f("pk_rule_pauses")),
    )


def downgrade() -> None:
    op.drop_table("rule_pauses")
