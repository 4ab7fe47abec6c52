"""The `journey` command: one group, every command added here, in one place.

Each command module holds the commands of one area and imports only `engine.cli.base` and the
engine; a command parses its options, calls one engine function and prints. `main(argv)` returns
the exit status instead of exiting, for tests.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from engine.cli import (
    broadcast,
    customers,
    db,
    delivery,
    evaluate,
    events,
    http,
    ingest,
    ops,
    reporting,
    rules,
    sends,
    sim,
    suppressions,
)
from engine.cli.base import App
from engine.db import NO_SCHEMA, is_missing_schema
from engine.errors import JourneyError
from engine.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="journey")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Journey: marketing automation driven by the customer's journey stage."""
    ctx.obj = App(Settings.from_env())


for command in (
    db.db,
    rules.rules,
    ingest.ingest,
    events.events,
    evaluate.tick,
    evaluate.explain,
    delivery.preview,
    delivery.send_test,
    broadcast.broadcast,
    reporting.report,
    reporting.graph,
    sim.generate,
    sim.simulate,
    sim.demo,
    http.serve,
    ops.run,
    ops.health,
    suppressions.suppressions,
    sends.sends,
    customers.customers,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of exiting (for tests)."""
    import logging

    from engine.logs import configure

    # quiet by default; `journey run` and the workers log every tick and send (JSON)
    configure("console", level=logging.WARNING)
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
    except (
        OperationalError,
        ProgrammingError,
    ) as exc:  # the database, not the input: say which and what to do
        first = str(exc.orig or exc).splitlines()[0][:300]
        if is_missing_schema(exc):
            click.echo(f"error: {NO_SCHEMA}", err=True)
        else:
            click.echo(f"error: the database did not answer: {first}", err=True)
        return 1
    except DBAPIError as exc:  # a value the database refused: its reason, never the row's values
        first = str(exc.orig or exc).splitlines()[0][:300]
        click.echo(f"error: the database refused a statement: {first}", err=True)
        return 1
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
