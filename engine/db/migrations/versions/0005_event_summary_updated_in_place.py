"""Let a new event rewrite its summary row in place (PostgreSQL HOT updates)

Every event that ingest folds into an existing summary row moves its `last_at`. Because
`last_at` was indexed (ix_event_summary_name_last_at, for "whose latest cart update lies in this
range"), every such update wrote a new copy of the row and a new entry in both of the table's
indexes. The range is now found through the events that set it (ix_events_name_ts) and each
summary row is read by its key, so the index goes; with room left in each page (fillfactor 70 on
PostgreSQL), PostgreSQL updates the row within its page and touches no index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event_summary", schema=None) as batch_op:
        batch_op.drop_index("ix_event_summary_name_last_at")
    if op.get_bind().dialect.name == "postgresql":
        # new pages keep room for updated rows; existing pages get it when rewritten
        op.execute("ALTER TABLE event_summary SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE event_summary RESET (fillfactor)")
    with op.batch_alter_table("event_summary", schema=None) as batch_op:
        batch_op.create_index("ix_event_summary_name_last_at", ["name", "last_at"], unique=False)
