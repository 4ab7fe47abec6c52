"""The sends retried after a transient failure, indexed on their own: `journey health` and every
/metrics scrape count the ones retried again and again, and read every due send to find them
(61-68 ms a call with a million sends due, a big broadcast, on PostgreSQL)

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision: str | None = "0016"
branch_labels = None
depends_on = None

WHERE = "status = 'due' AND reason = 'retry'"


def upgrade() -> None:
    where = sa.text(WHERE)
    op.create_index("ix_sends_retrying", "sends", ["attempts"], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    op.drop_index("ix_sends_retrying", table_name="sends")
