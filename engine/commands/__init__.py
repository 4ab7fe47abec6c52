"""CLI commands, one module per area; importing this package registers them on `engine.cli.cli`."""

from engine.commands import core, delivery, generate, http, ingest, ops, reports, rules  # noqa: F401
