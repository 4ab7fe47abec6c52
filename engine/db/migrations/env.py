"""Alembic environment: the connection is handed in by `engine.db.upgrade`."""

from __future__ import annotations

from alembic import context

from engine.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through `journey db upgrade`
    raise SystemExit("run migrations with `journey db upgrade`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
