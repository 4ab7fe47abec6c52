"""CLI commands: customers export, customers erase (CONTRACT 13, 14)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from engine.cli.base import App, pass_app


@click.group()
def customers() -> None:
    """What Journey holds about a customer: export it, or erase it."""


@customers.command("export")
@click.argument("customer_id")
@pass_app
def export_(app: App, customer_id: str) -> None:
    """Write everything held about CUSTOMER_ID as JSON to stdout: the customer's traits and
    attributes, every event, stage change, opt-out, enrollment and send, their address's
    suppression and the delivery reports about them."""
    from engine.privacy import export

    click.echo(json.dumps(export(app.engine, customer_id), indent=2, ensure_ascii=False, default=str))


@customers.command()
@click.argument("customer_id")
@click.option("--yes", is_flag=True, help="erase without asking")
@pass_app
def erase(app: App, customer_id: str, yes: bool) -> int:
    """Erase CUSTOMER_ID's personal data: traits, attributes, events, summaries, enrollments, the
    content of their emails. Their address stays suppressed as `erased` (a hash only), so a
    re-import under any id is not mailed; reports keep their counts, anonymised."""
    from engine.privacy import erase as erase_customer

    if not yes:
        if not sys.stdin.isatty():
            click.echo("not erasing: add --yes (no terminal to ask on)", err=True)
            return 1
        click.confirm(
            f"Erase everything Journey holds about '{customer_id}'? This cannot be undone", abort=True
        )
    done = erase_customer(app.engine, customer_id, now=datetime.now(UTC))
    address = "; the address is suppressed as erased" if done.suppressed else ""
    click.echo(
        f"erased '{customer_id}': {done.events:,} events, {done.enrollments:,} enrollments, "
        f"the content of {done.sends:,} sends{address}",
        err=True,
    )
    return 0
