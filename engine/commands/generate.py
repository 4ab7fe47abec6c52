"""CLI commands: generate."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from engine.cli import cli, parse_now


@cli.command()
@click.option("--customers", default=2000, show_default=True, help="customers arriving over the period")
@click.option("--days", default=60, show_default=True, help="length of the period")
@click.option("--seed", default=1, show_default=True, help="same seed, same events")
@click.option("--start", "start_text", metavar="ISO8601", help="first day (default: DAYS before 2026-11-01)")
def generate(customers: int, days: int, seed: int, start_text: str | None) -> None:
    """Write a realistic shop's events as JSON lines to stdout."""
    from engine.generate import ShopConfig, write_events

    start: datetime | None = parse_now(start_text) if start_text else None
    n = write_events(ShopConfig(customers=customers, days=days, seed=seed, start=start), sys.stdout)
    click.echo(f"generated {n:,} events for {customers:,} customers over {days} days", err=True)
