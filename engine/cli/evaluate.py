"""CLI commands: tick and explain."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import click

from engine.cli.base import NOW_HELP, App, duration_option, parse_now, pass_app
from engine.evaluate.dryrun import dry_run
from engine.evaluate.explain import explain as run_explain
from engine.scheduler import cycle


@click.command()
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@click.option(
    "--backfill", metavar="DURATION", help="widen the window on purpose, e.g. 30d (re-evaluates everyone)"
)
@click.option(
    "--no-dispatch", is_flag=True, help="evaluate only; leave due sends for a later tick or `journey run`"
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="print what the tick would schedule and a dispatch would send, per rule; write nothing",
)
@click.option("--json", "as_json", is_flag=True, help="print the tick's figures as JSON")
@pass_app
def tick(
    app: App, now_text: str | None, backfill: str | None, no_dispatch: bool, dry_run: bool, as_json: bool
) -> None:
    """One cycle: recompute stages, evaluate every rule, schedule and dispatch what is due."""
    now = parse_now(now_text)
    window = duration_option(backfill, "--backfill") if backfill else None
    if dry_run:
        _dry_run(app, now, window, as_json)
        return
    result, dispatched = cycle(
        app.engine,
        app.settings,
        app.rules(),
        now=now,
        backfill=window,
        dispatch=not no_dispatch,
        enqueue=None if no_dispatch else app.enqueuer(),
        realtime=now_text is None,
    )
    out: dict[str, Any] = result.as_dict()
    if dispatched is not None:
        out["dispatch"] = dispatched.as_dict()
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    click.echo(result.summary())
    if "dispatch" in out:
        figures = ", ".join(f"{k} {v}" for k, v in out["dispatch"].items() if isinstance(v, int))
        click.echo(f"dispatch: {figures}")


def _dry_run(app: App, now: datetime, window: timedelta | None, as_json: bool) -> None:
    run = dry_run(app.engine, app.rules(), now=now, backfill=window)
    if as_json:
        click.echo(json.dumps(run.as_dict(), indent=2, default=str))
        return
    t = run.tick
    click.echo(
        f"dry run of the tick at {now.isoformat()}: nothing was written. It would see {t.new_events} new "
        f"events and {t.stage_changes} stage changes, and enter {sum(t.entered.values())} customers."
    )
    width = max([len(x.rule_id) for x in run.lines] + [4]) + 2
    twidth = max([len(x.template or "-") for x in run.lines] + [8]) + 2
    click.echo(f"{'rule':<{width}}{'template':<{twidth}}{'schedule':>9}{'send':>7}  held")
    for x in run.lines:
        held = ", ".join(f"{n} {why}" for why, n in sorted(x.held.items()))
        paused = "  (paused: its sends wait)" if x.rule_id in t.paused else ""
        click.echo(
            f"{x.rule_id:<{width}}{x.template or '-':<{twidth}}{x.scheduled:>9}{x.would_send:>7}  {held}{paused}"
        )
    click.echo(
        f"{'total':<{width + twidth}}{sum(x.scheduled for x in run.lines):>9}"
        f"{sum(x.would_send for x in run.lines):>7}  {sum(sum(x.held.values()) for x in run.lines)} held"
    )
    if t.first:
        click.echo(t.summary().split("\n", 1)[1])


@click.command()
@click.argument("customer")
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@pass_app
def explain(app: App, customer: str, now_text: str | None) -> None:
    """Why CUSTOMER is in their stage, and for each rule whether it fires, waits or not, and why."""
    ex = run_explain(app.engine, app.rules(), customer, now=parse_now(now_text))
    click.echo(ex.render())
