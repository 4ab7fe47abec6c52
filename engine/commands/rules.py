"""CLI commands: rules check."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli import App, cli, pass_app
from engine.errors import Problem, RuleError


@cli.group()
def rules() -> None:
    """Rules, stages and templates."""


def check_all(rules_dir: Path, templates_dir: Path) -> tuple[list[Problem], str]:
    """Every problem of the rule set and its templates, and a summary when there are none."""
    from engine.rules.loader import load_ruleset

    try:
        ruleset = load_ruleset(rules_dir, templates_dir)
    except RuleError as exc:
        return exc.problems, ""
    problems: list[Problem] = []
    from engine.render import check_templates

    problems += check_templates(templates_dir, ruleset)
    templates = len({p.name.split(".")[0] for p in templates_dir.glob("*.j2") if not p.name.startswith("_")})
    enabled = len(ruleset.enabled)
    summary = f"ok: {len(ruleset.stages)} stages, {len(ruleset.rules)} rules ({enabled} enabled), {templates} templates"
    return problems, summary


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
