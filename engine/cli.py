"""The `journey` command: a thin adapter over the engine (`main(argv)` is testable)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import Engine

from engine.errors import JourneyError
from engine.settings import Settings


@dataclass
class App:
    """What every command gets: the settings, and a database engine made on first use."""

    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from engine.db import make_engine

            self._engine = make_engine(self.settings.database_url)
        return self._engine


def parse_now(value: str | None) -> datetime:
    """`--now` as an aware UTC datetime (a time without a zone is taken as UTC); default: the clock."""
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not an ISO 8601 time like 2026-11-01T10:00:00Z") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


NOW_HELP = "evaluate as if it were this time (ISO 8601); default: now"
pass_app = click.make_pass_decorator(App)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="journey")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Journey: marketing automation driven by the customer's journey stage."""
    ctx.obj = App(Settings.from_env())


@cli.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Create or migrate the schema (Alembic)."""
    from engine.db import current_revision, upgrade

    upgrade(app.engine)
    click.echo(f"database at revision {current_revision(app.engine)}")


def _register() -> None:
    """Commands live beside the code they drive; each module adds its own to the group."""
    from engine import commands  # noqa: F401


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of exiting (for tests)."""
    import logging

    from engine.logs import configure

    # quiet by default; `journey run` and the workers log every tick and send (JSON)
    configure("console", level=logging.WARNING)
    _register()
    try:
        result: Any = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except JourneyError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
