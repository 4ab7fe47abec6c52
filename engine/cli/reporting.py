"""CLI commands: report, graph."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from engine.cli.base import NOW_HELP, App, parse_now, pass_app
from engine.errors import JourneyError
from engine.reporting.html import render_html
from engine.reporting.report import build
from engine.reporting.text import render_text
from engine.rules.yaml import suggest

FROM_HELP = "count from this time (ISO 8601); default: from the first event"
TO_HELP = "count up to this time (ISO 8601); default: --now"


def _schema(app: App) -> None:
    """A located message, not a traceback, for a database that was never set up."""
    from engine.db import current_revision

    if current_revision(app.engine) is None:
        raise JourneyError("the database has no schema yet: run `journey db upgrade` first")


def _period(
    from_text: str | None, to_text: str | None, now_text: str | None
) -> tuple[datetime | None, datetime, datetime]:
    """(start, end, now) of `--from`, `--to` and `--now`."""
    now = parse_now(now_text)
    start = parse_now(from_text) if from_text is not None else None
    end = parse_now(to_text) if to_text is not None else now
    if start is not None and start >= end:
        raise click.BadParameter("--from must be before --to (or --now)", param_hint="--from")
    return start, end, now


@click.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable figures")
@click.option(
    "--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), help="write a page with charts"
)
@click.option(
    "--csv",
    "csv_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="write each table as a CSV file into this directory",
)
@click.option("--from", "from_text", metavar="ISO8601", help=FROM_HELP)
@click.option("--to", "to_text", metavar="ISO8601", help=TO_HELP)
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@pass_app
def report(
    app: App,
    as_json: bool,
    html_file: Path | None,
    csv_dir: Path | None,
    from_text: str | None,
    to_text: str | None,
    now_text: str | None,
) -> None:
    """Stage funnel, per-rule sends, opens, clicks, conversions and unsubscribes, split (A/B)
    results, NPS, cart recovery, and each rule's flow with its counts."""
    start, end, now = _period(from_text, to_text, now_text)
    _schema(app)
    r = build(app.engine, app.rules(), now=end, start=start, generated_at=now)
    if html_file is not None:
        html_file.write_text(render_html(r), encoding="utf-8")
        click.echo(f"wrote {html_file}", err=True)
    if csv_dir is not None:
        from engine.reporting.tables import write_csv

        written = write_csv(r, csv_dir)
        click.echo(
            f"wrote {len(written)} tables to {csv_dir}/: {', '.join(p.name for p in written)}", err=True
        )
    if as_json:
        click.echo(json.dumps(r.as_dict(), indent=2, default=str))
    elif html_file is None and csv_dir is None:
        click.echo(render_text(r))


@click.command()
@click.argument("rule_id", metavar="RULE")
@click.option("--svg", "svg_file", type=click.Path(dir_okay=False, path_type=Path), help="write the drawing")
@click.option("--json", "as_json", is_flag=True, help="the flow and its counts as JSON")
@click.option("--from", "from_text", metavar="ISO8601", help=FROM_HELP)
@click.option("--to", "to_text", metavar="ISO8601", help=TO_HELP)
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@pass_app
def graph(
    app: App,
    rule_id: str,
    svg_file: Path | None,
    as_json: bool,
    from_text: str | None,
    to_text: str | None,
    now_text: str | None,
) -> None:
    """RULE as a flow (trigger, conditions, steps, branches, split variants, waits, end) with live
    counts per step: entered, waiting now, sent, suppressed, failed, exited, converted, per variant."""
    from engine.reporting.graph import rule_graph

    start, end, now = _period(from_text, to_text, now_text)
    ruleset = app.rules()
    ids = [rule.id for rule in ruleset.rules]
    if rule_id not in ids:
        hint = suggest(rule_id, ids)
        raise click.ClickException(
            f"no rule '{rule_id}'"
            + (f" (did you mean '{hint}'?)" if hint else "")
            + f"; rules: {', '.join(ids)}"
        )
    _schema(app)
    g = rule_graph(app.engine, ruleset, rule_id, start=start, end=end, now=now)
    if svg_file is not None:
        svg_file.write_text(g.svg() + "\n", encoding="utf-8")
        click.echo(f"wrote {svg_file}", err=True)
    if as_json:
        click.echo(json.dumps(g.as_dict(), indent=2))
    elif svg_file is None:
        click.echo(g.text())
