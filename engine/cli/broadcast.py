"""CLI command: broadcast a template to a segment, once per member."""

from __future__ import annotations

import click

from engine.cli.base import NOW_HELP, App, parse_now, pass_app
from engine.evaluate.broadcast import broadcast as run_broadcast


@click.command()
@click.argument("template")
@click.option("--segment", required=True, help="the segment (rules/segments.yaml) to send to")
@click.option("--at", "at_text", metavar="ISO8601", help="when the sends are due (default: now)")
@click.option(
    "--id",
    "broadcast_id",
    help="the broadcast id; the same id again sends nothing (default: TEMPLATE.SEGMENT)",
)
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@pass_app
def broadcast(
    app: App, template: str, segment: str, at_text: str | None, broadcast_id: str | None, now_text: str | None
) -> None:
    """Schedule TEMPLATE once for every member of a segment; the next tick sends them."""
    now = parse_now(now_text)
    at = parse_now(at_text) if at_text is not None else now

    def progress(done: int, total: int) -> None:
        click.echo(f"  {done:,} of {total:,} members", err=True)

    result = run_broadcast(
        app.engine,
        app.rules(),
        template,
        segment,
        at=at,
        now=now,
        broadcast_id=broadcast_id,
        templates_dir=app.settings.templates_dir,
        progress=progress,
    )
    click.echo(result.summary())
    if not result.repeated:
        click.echo(f"due at {at.isoformat()}: `journey tick` (or `journey run`) sends them")
