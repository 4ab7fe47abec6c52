"""Let a customer's stage change rewrite the row in place (PostgreSQL HOT updates)

A tick that changes stages rewrote each customer row and, because `stage` was indexed, inserted
it again into all four of the table's indexes: 35 s of a 64 s first full tick at 1,000,000
customers, and a third of the stage work in an incremental tick. The index served one query:
"customers without a stage yet". Those are exactly the customers created since the previous
tick, so each tick now records the highest committed customer id (`ticks.customer_seq`), and the
next one takes the ids above it from the primary key. With `stage` unindexed and room left in
each page (fillfactor 50 on PostgreSQL), PostgreSQL updates the row in its page and touches no
index; ingest's identify merges get the same.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ticks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_seq", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_stage")
    if op.get_bind().dialect.name == "postgresql":
        # new pages keep half their room for updated rows; existing pages get it when rewritten
        op.execute("ALTER TABLE customers SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE customers RESET (fillfactor)")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_stage", ["stage"], unique=False)
    with op.batch_alter_table("ticks", schema=None) as batch_op:
        batch_op.drop_column("customer_seq")
