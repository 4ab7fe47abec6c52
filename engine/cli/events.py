"""CLI commands: events export."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TextIO

import click

from engine.cli.base import App, parse_now, pass_app
from engine.ingest.export import export_events, write_export


@click.group()
def events() -> None:
    """The events the database holds."""


@events.command("export")
@click.option("--since", "since_text", metavar="ISO8601", help="events at or after this time")
@click.option("--until", "until_text", metavar="ISO8601", help="events before this time")
@click.option(
    "--customer", "customer_ids", multiple=True, metavar="ID", help="only this customer (repeatable)"
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write to this file (default: stdout)",
)
@pass_app
def export(
    app: App,
    since_text: str | None,
    until_text: str | None,
    customer_ids: tuple[str, ...],
    output: Path | None,
) -> None:
    """Write customers and their events as JSON lines, in time order: each customer's identify with
    their traits, then their events. `journey ingest` and `journey simulate` read it back."""
    since = parse_now(since_text) if since_text else None
    until = parse_now(until_text) if until_text else None
    if since is not None and until is not None and until <= since:
        raise click.BadParameter("--until must be after --since")
    items = export_events(app.engine, since=since, until=until, customer_ids=customer_ids)
    out: TextIO
    with contextlib.ExitStack() as stack:
        if output is None:
            out = sys.stdout
        else:
            try:
                out = stack.enter_context(output.open("w", encoding="utf-8"))
            except OSError as exc:
                raise click.ClickException(f"{output}: {exc.strerror}") from None
        people, tracked = write_export(items, out)
    where = f" to {output}" if output is not None else ""
    click.echo(f"exported {people:,} customers and {tracked:,} events{where}", err=True)
