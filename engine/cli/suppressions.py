"""CLI commands: suppressions list, add, remove, import, export (CONTRACT 10, 14)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from engine.cli.base import App, pass_app

REASONS = ("hard_bounce", "complaint", "manual", "erased")


@click.group()
def suppressions() -> None:
    """Addresses that get no email: hard bounces and erased customers get nothing, complaints and
    manual entries no marketing."""


@suppressions.command("list")
@click.option("--reason", type=click.Choice(REASONS), help="only this reason")
@pass_app
def list_(app: App, reason: str | None) -> None:
    """One line per address: address, reason, source, time (an erased address as its hash)."""
    from engine.suppressions import listing

    for row in listing(app.engine, reason):
        at = row.created_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        detail = f"\t{row.detail}" if row.detail else ""
        click.echo(f"{row.email}\t{row.reason}\t{row.source}\t{at}{detail}")


@suppressions.command()
@click.argument("address")
@click.option("--reason", type=click.Choice(REASONS[:3]), default="manual", show_default=True, help="why")
@pass_app
def add(app: App, address: str, reason: str) -> None:
    """Suppress ADDRESS (a stronger reason already there is kept)."""
    from engine.addresses import InvalidAddress
    from engine.suppressions import Entry, SuppressionReason
    from engine.suppressions import add as add_entries

    try:
        entry = Entry.of(address, SuppressionReason(reason), "cli", datetime.now(UTC))
    except InvalidAddress as exc:
        raise click.ClickException(f"'{address}' is not a valid address: it {exc}") from None
    add_entries(app.engine, [entry])
    click.echo(f"suppressed {entry.address} ({reason})", err=True)


@suppressions.command()
@click.argument("address")
@pass_app
def remove(app: App, address: str) -> int:
    """Take ADDRESS off the list, whatever its reason (an erased customer's too)."""
    from engine.addresses import InvalidAddress, address_hash, hashed_token
    from engine.suppressions import remove as remove_address

    try:
        key = hashed_token(address) or address_hash(address)
    except InvalidAddress as exc:
        raise click.ClickException(f"'{address}' is not a valid address: it {exc}") from None
    if not remove_address(app.engine, key):
        click.echo(f"{address} is not on the suppression list", err=True)
        return 1
    click.echo(f"removed {address} from the suppression list", err=True)
    return 0


@suppressions.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@pass_app
def import_(app: App, file: str) -> int:
    """Add the addresses of a CSV file (`email,reason,source,created_at`, or a provider's export;
    only the address is required). A bad line is reported as FILE:LINE: reason and skipped.
    Exits 0 only when every line was stored."""
    from engine.suppressions.files import import_file

    try:
        stream = sys.stdin if file == "-" else open(file, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise click.ClickException(f"{file}: {exc.strerror}") from None
    try:
        result = import_file(
            app.engine,
            stream,
            name=file,
            now=datetime.now(UTC),
            on_error=lambda message: click.echo(message, err=True),
        )
    finally:
        if stream is not sys.stdin:
            stream.close()
    bad = f", {result.bad:,} bad line{'s' if result.bad != 1 else ''}" if result.bad else ""
    click.echo(f"imported {result.stored:,} addresses{bad}", err=True)
    return 1 if result.bad else 0


@suppressions.command("export")
@click.option("--reason", type=click.Choice(REASONS), help="only this reason")
@pass_app
def export_(app: App, reason: str | None) -> None:
    """Write the list as CSV to stdout: email,reason,source,created_at (an erased address as
    sha256:HASH, which import reads back)."""
    from engine.suppressions.files import export_file

    export_file(app.engine, sys.stdout, reason)
