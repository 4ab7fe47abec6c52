"""CLI commands: rules check, list, pause, resume."""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path

import click

from engine.cli.base import NOW_HELP, App, parse_now, pass_app
from engine.delivery.checks import check_all
from engine.errors import RuleError
from engine.pauses import pause, resume, waiting
from engine.reporting.rules import rule_lines
from engine.rules.yaml import suggest


@click.group()
def rules() -> None:
    """Rules, stages and templates."""


@rules.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="templates directory (default: JOURNEY_TEMPLATES_DIR)",
)
@pass_app
def rules_check(app: App, directory: Path | None, templates_dir: Path | None) -> int:
    """Validate every stage, rule and template: FILE:LINE:COL: message on error, exit 1."""
    problems, summary = check_all(
        directory or app.settings.rules_dir, templates_dir or app.settings.templates_dir
    )
    if problems:
        for p in problems:
            click.echo(str(p), err=False)
        click.echo(
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found; nothing was loaded", err=True
        )
        return 1
    click.echo(summary)
    return 0


@rules.command("list")
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@click.option("--days", default=7, show_default=True, help="count entries and sends over this many days")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
@pass_app
def rules_list(app: App, now_text: str | None, days: int, as_json: bool) -> None:
    """Every rule: its trigger, topic, whether it is paused, who entered it and what it sent lately."""
    lines = rule_lines(app.engine, app.rules(), now=parse_now(now_text), days=days)
    if as_json:
        click.echo(json.dumps([line.as_dict() for line in lines], indent=2))
        return
    width = max([len(line.id) for line in lines] + [4]) + 2
    twidth = max([len(line.trigger) for line in lines] + [7]) + 2
    click.echo(
        f"{'rule':<{width}}{'trigger':<{twidth}}{'topic':<12}{'state':<24}"
        f"{f'entered {days}d':>12}{f'sent {days}d':>10}"
    )
    for line in lines:
        if line.pause is not None:
            state = f"paused {line.pause.paused_at:%Y-%m-%d %H:%M}"
        else:
            state = "running" if line.enabled else "disabled"
        click.echo(
            f"{line.id:<{width}}{line.trigger:<{twidth}}{line.topic or '-':<12}{state:<24}"
            f"{line.entered:>12,}{line.sent:>10,}"
        )


def _known_rule(app: App, rule_id: str) -> None:
    """A usage error for a rule id the rule files do not have, with the nearest one."""
    try:
        ids = [r.id for r in app.rules().rules]
    except RuleError:
        click.echo(
            "warning: the rule files have problems (see `journey rules check`): "
            f"'{rule_id}' could not be checked",
            err=True,
        )
        return
    if rule_id not in ids:
        hint = suggest(rule_id, ids)
        raise click.BadParameter(
            f"no rule '{rule_id}'"
            + (f" (did you mean '{hint}'?)" if hint else f" (rules: {', '.join(ids)})"),
            param_hint="RULE",
        )


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@rules.command("pause")
@click.argument("rule_id", metavar="RULE")
@click.option("--now", "now_text", metavar="ISO8601", help="record the pause at this time; default: now")
@pass_app
def rules_pause(app: App, rule_id: str, now_text: str | None) -> None:
    """Pause RULE: no one enters it and its due sends wait (neither sent nor dropped) until resume."""
    _known_rule(app, rule_id)
    done = pause(app.engine, rule_id, now=parse_now(now_text), by=_who())
    due, active = waiting(app.engine, rule_id)
    if done is None:
        click.echo(f"{rule_id} was paused already; {due:,} sends and {active:,} customers wait")
        return
    click.echo(
        f"paused {rule_id}: no one enters it, and {due:,} due sends and {active:,} customers at a step "
        f"wait until `journey rules resume {rule_id}`"
    )


@rules.command("resume")
@click.argument("rule_id", metavar="RULE")
@click.option("--now", "now_text", metavar="ISO8601", help="record the resume at this time; default: now")
@pass_app
def rules_resume(app: App, rule_id: str, now_text: str | None) -> None:
    """Resume RULE: its waiting sends go out, and its customers go on from the next tick."""
    _known_rule(app, rule_id)
    ended = resume(app.engine, rule_id, now=parse_now(now_text))
    if ended is None:
        click.echo(f"{rule_id} is not paused")
        return
    due, active = waiting(app.engine, rule_id)
    click.echo(
        f"resumed {rule_id} (paused since {ended.paused_at.isoformat()}): {due:,} waiting sends go at "
        f"the next dispatch; {active:,} customers go on from the next tick"
    )
