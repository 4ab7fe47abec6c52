"""What every command shares: the `App` context, `--now` parsing and the rule set.

Command modules import this module, never the group in `engine.cli`, so no command imports the
group back (celery's `bin/base.py` does the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import click
from sqlalchemy import Engine

from engine.delivery.dispatch import Enqueue, broker_enqueuer
from engine.rules.durations import parse_duration
from engine.rules.loader import RuleSet, load_ruleset
from engine.settings import Settings


@dataclass
class App:
    """What every command gets: the settings, and a database engine made on first use."""

    settings: Settings
    #: only `journey db upgrade` creates a database that does not exist yet
    create_database: bool = False
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from engine.db import make_engine

            self._engine = make_engine(self.settings.database_url, create=self.create_database)
        return self._engine

    def use_engine(self, engine: Engine) -> None:
        """Work on this engine from now on (the demo makes its own database)."""
        self._engine = engine

    def rules(self) -> RuleSet:
        """The rule set of the configured directories (RuleError, located, when it has problems)."""
        return load_ruleset(self.settings.rules_dir, self.settings.templates_dir)

    def event_aliases(self) -> dict[str, str]:
        """The event catalogue's aliases (alias -> catalogue name); none without a catalogue. A
        catalogue with problems is refused by `journey rules check`; here its good part applies."""
        from engine.rules.catalogue import load_catalogue

        catalogue = load_catalogue(self.settings.rules_dir)
        return dict(catalogue.aliases) if catalogue is not None else {}

    def enqueuer(self) -> Enqueue | None:
        """Hands batches to the workers through the broker; None without one (deliver in-process)."""
        return broker_enqueuer(self.settings)


def parse_now(value: str | None) -> datetime:
    """`--now` as an aware UTC datetime (a time without a zone is taken as UTC); default: the clock."""
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not an ISO 8601 time like 2026-11-01T10:00:00Z") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def duration_option(value: str, option: str) -> timedelta:
    """A duration option (`30s`, `15m`, `7d`) or a usage error naming the option."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


NOW_HELP = "evaluate as if it were this time (ISO 8601); default: now"
pass_app = click.make_pass_decorator(App)
