"""Commands of the engine core: tick and explain."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from engine.cli import NOW_HELP, App, cli, parse_now, pass_app
from engine.durations import parse_duration


def load_rules(app: App) -> Any:
    from engine.rules.loader import load_ruleset

    return load_ruleset(app.settings.rules_dir, app.settings.templates_dir)


def dispatch_after_tick(app: App, ruleset: Any, now: datetime) -> dict[str, Any]:
    """Hand due sends to the workers (broker) or deliver them here, in-process."""
    from engine.dispatch import celery_enqueuer, dispatch_due

    enqueue = celery_enqueuer(app.settings) if app.settings.broker_url else None
    return dispatch_due(app.engine, app.settings, now=now, enqueue=enqueue, ruleset=ruleset).as_dict()


@cli.command()
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@click.option(
    "--backfill", metavar="DURATION", help="widen the window on purpose, e.g. 30d (re-evaluates everyone)"
)
@click.option(
    "--no-dispatch", is_flag=True, help="evaluate only; leave due sends for a later tick or `journey run`"
)
@click.option("--json", "as_json", is_flag=True, help="print the tick's figures as JSON")
@pass_app
def tick(app: App, now_text: str | None, backfill: str | None, no_dispatch: bool, as_json: bool) -> None:
    """One cycle: recompute stages, evaluate every rule, schedule and dispatch what is due."""
    from engine.tick import run_tick

    now = parse_now(now_text)
    window = None
    if backfill:
        try:
            window = parse_duration(backfill)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--backfill") from None
    ruleset = load_rules(app)
    result = run_tick(app.engine, ruleset, now=now, backfill=window)
    out: dict[str, Any] = result.as_dict()
    if not no_dispatch:
        out["dispatch"] = dispatch_after_tick(app, ruleset, now)
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    click.echo(result.summary())
    if "dispatch" in out:
        figures = ", ".join(f"{k} {v}" for k, v in out["dispatch"].items() if isinstance(v, int))
        click.echo(f"dispatch: {figures}")


@cli.command()
@click.argument("customer")
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@pass_app
def explain(app: App, customer: str, now_text: str | None) -> None:
    """Why CUSTOMER is in their stage, and for each rule whether it fires, waits or not, and why."""
    from engine.explain import explain as run_explain

    ex = run_explain(app.engine, load_rules(app), customer, now=parse_now(now_text))
    click.echo(ex.render())
