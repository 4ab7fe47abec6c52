"""The generated API key is stored as its hash: a plain key already stored is replaced by it

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision: str | None = "0014"
branch_labels = None
depends_on = None

_meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.Text))


def upgrade() -> None:
    conn = op.get_bind()
    value = conn.execute(sa.select(_meta.c.value).where(_meta.c.key == "api_key")).scalar()
    if value is not None and not str(value).startswith("sha256:"):
        hashed = "sha256:" + hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()
        conn.execute(sa.update(_meta).where(_meta.c.key == "api_key").values(value=hashed))


def downgrade() -> None:
    pass  # a hash cannot be turned back into its key; the hashed row keeps working
