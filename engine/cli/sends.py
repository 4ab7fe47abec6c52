"""CLI commands: sends list, retry, cancel: the sends in trouble, and what to do about them."""

from __future__ import annotations

from datetime import UTC

import click

from engine.cli.base import NOW_HELP, App, parse_now, pass_app

KINDS = ("failed", "stuck", "failing")


@click.group()
def sends() -> None:
    """Sends in trouble: failed, stuck past their lease, or failing again and again."""


@sends.command("list")
@click.option("--status", "kind", type=click.Choice(KINDS), default="failed", show_default=True)
@click.option("--rule", help="only this rule's sends")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@pass_app
def list_(app: App, kind: str, rule: str | None, limit: int, now_text: str | None) -> None:
    """One line per send, newest first: id, rule, step, customer, status, reason, attempts, when,
    error."""
    from engine.delivery.troubles import listing

    rows = listing(app.engine, kind, parse_now(now_text), rule=rule, limit=limit)
    for r in rows:
        when = r.failed_at or r.due_at
        at = when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if when else "-"
        error = " ".join((r.error or "").split())[:200]
        click.echo(
            f"{r.id}\t{r.rule_id}\t{r.step}\t{r.customer or '-'}\t{r.status}\t{r.reason or '-'}\t"
            f"{r.attempts}\t{at}\t{error}"
        )
    click.echo(f"{len(rows):,} {kind} sends" + (f" of rule {rule}" if rule else ""), err=True)


def _choice(command: click.Command) -> click.Command:
    command = click.argument("ids", nargs=-1, type=click.IntRange(1))(command)
    command = click.option("--rule", help="every send in trouble of this rule")(command)
    command = click.option("--reason", help="every send in trouble with this reason (template, error …)")(
        command
    )
    return click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)(command)


@sends.command()
@pass_app
def retry(app: App, ids: tuple[int, ...], rule: str | None, reason: str | None, now_text: str | None) -> int:
    """Send again now the failed, stuck or failing sends IDS (or of --rule, or with --reason);
    policies are checked again when they go."""
    from engine.delivery.troubles import retry as retry_sends

    if not (ids or rule or reason):
        raise click.UsageError("name the sends: IDS, --rule or --reason")
    n = retry_sends(app.engine, parse_now(now_text), ids, rule=rule, reason=reason)
    click.echo(f"{n:,} sends due again now", err=True)
    return 0 if n else 1


@sends.command()
@pass_app
def cancel(app: App, ids: tuple[int, ...], rule: str | None, reason: str | None, now_text: str | None) -> int:
    """Cancel the failed, stuck, failing or due sends IDS (or of --rule, or with --reason): they
    will not be sent."""
    from engine.delivery.troubles import cancel as cancel_sends

    if not (ids or rule or reason):
        raise click.UsageError("name the sends: IDS, --rule or --reason")
    n = cancel_sends(app.engine, parse_now(now_text), ids, rule=rule, reason=reason)
    click.echo(f"{n:,} sends cancelled", err=True)
    return 0 if n else 1


_choice(retry)
_choice(cancel)
