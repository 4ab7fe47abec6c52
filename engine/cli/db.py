"""CLI commands: db upgrade."""

from __future__ import annotations

import click

from engine.cli.base import App, pass_app
from engine.db import current_revision, make_owner_only, upgrade


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Create or migrate the schema (Alembic)."""
    app.create_database = True
    upgrade(app.engine)
    for name in make_owner_only(app.engine):
        click.echo(f"{name}: now readable by its owner alone (it holds customers and keys)", err=True)
    click.echo(f"database at revision {current_revision(app.engine)}")
