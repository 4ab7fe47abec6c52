"""sends.message_id and sends.failed_at indexed only where set: a send is written three times
(scheduled, claimed, sent) while both are empty, and none of those writes adds an index entry
for them any more

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision: str | None = "0015"
branch_labels = None
depends_on = None

_INDEXES = (("ix_sends_message_id", "message_id"), ("ix_sends_failed_at", "failed_at"))


def upgrade() -> None:
    for name, column in _INDEXES:
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, table_name="sends")
        op.create_index(name, "sends", [column], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name, column in _INDEXES:
        op.drop_index(name, table_name="sends")
        op.create_index(name, "sends", [column])
