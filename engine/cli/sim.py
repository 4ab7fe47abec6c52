"""CLI commands: generate, demo, simulate."""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime
from typing import TextIO

import click

from engine.cli.base import App, duration_option, parse_now, pass_app
from engine.ingest.export import export_events
from engine.rules.loader import RuleSet
from engine.sim.demo import DemoOptions, DemoRefused, run_demo
from engine.sim.generate import ShopConfig, write_events
from engine.sim.simulate import COLUMNS, Simulation, only_rules, split_weights
from engine.sim.simulate import simulate as run_simulation
from engine.sim.sorting import SortedEvents

#: the events that record a real send: a simulation from the database makes its own
SEND_RECORDS = ("email_sent", "webhook_sent")


@click.command()
@click.option("--customers", default=2000, show_default=True, help="customers arriving over the period")
@click.option("--days", default=60, show_default=True, help="length of the period")
@click.option("--seed", default=1, show_default=True, help="same seed, same events")
@click.option("--start", "start_text", metavar="ISO8601", help="first day (default: DAYS before 2026-11-01)")
def generate(customers: int, days: int, seed: int, start_text: str | None) -> None:
    """Write a realistic shop's events as JSON lines to stdout."""
    start: datetime | None = parse_now(start_text) if start_text else None
    n = write_events(ShopConfig(customers=customers, days=days, seed=seed, start=start), sys.stdout)
    click.echo(f"generated {n:,} events for {customers:,} customers over {days} days", err=True)


@click.command()
@click.option("--customers", default=2000, show_default=True)
@click.option("--days", default=60, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--step", default="6h", show_default=True, help="virtual time between ticks")
@click.option(
    "--fresh",
    is_flag=True,
    help="delete the SQLite database and the outbox's emails even when the demo did not make them",
)
@click.option(
    "--send-real-email",
    is_flag=True,
    help="deliver through JOURNEY_EMAIL_URL when it is an SMTP server (thousands of messages)",
)
@pass_app
def demo(
    app: App, customers: int, days: int, seed: int, step: str, fresh: bool, send_real_email: bool
) -> None:
    """The whole product on the embedded default: a generated shop replayed day by day through the
    rules, emails written to the outbox, and a report.

    It starts clean: it deletes the database and the outbox's emails of an earlier demo. It stops,
    deleting nothing, when the database (or the outbox) holds anything else, unless --fresh.
    """
    options = DemoOptions(
        customers=customers,
        days=days,
        seed=seed,
        step=duration_option(step, "--step"),
        fresh=fresh,
        send_real_email=send_real_email,
    )
    try:
        engine, result = run_demo(
            app.settings,
            app.rules,
            options,
            say=click.echo,
            progress=lambda line: click.echo(line, err=True),
        )
    except DemoRefused as exc:
        raise click.ClickException(str(exc)) from None
    app.use_engine(engine)
    click.echo("")
    click.echo(result.report)
    where = f" in {result.outbox}/ (open any .eml with a mail client)" if result.outbox is not None else ""
    hooks = f", {result.webhooks:,} webhook posts" if result.webhooks else ""
    click.echo(
        f"\n{result.emails:,} emails{where}{hooks}; {result.stats.ticks} ticks in {result.seconds:.1f} s."
    )
    click.echo(
        "Try: journey explain c-0000042 --now "
        + result.end.isoformat()
        + "   |   journey report --html report.html"
    )
    click.echo(
        f"Running `journey demo` again deletes this database ({result.path}) and these emails, and starts over."
    )


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--from-db",
    "from_db",
    is_flag=True,
    help="replay the configured database's events instead of a file (not its email_sent records)",
)
@click.option("--from", "from_text", required=True, metavar="ISO8601", help="start of the replay")
@click.option("--to", "to_text", required=True, metavar="ISO8601", help="end of the replay")
@click.option("--step", default="1h", show_default=True, help="virtual time between ticks")
@click.option("--rule", "rule_ids", multiple=True, metavar="ID", help="simulate only this rule (repeatable)")
@pass_app
def simulate(
    app: App,
    file: str | None,
    from_db: bool,
    from_text: str,
    to_text: str,
    step: str,
    rule_ids: tuple[str, ...],
) -> int:
    """Replay FILE (or, with --from-db, the database's history) against the rules on a throwaway
    database: what would be sent, per rule and day, per rule, step and split variant, and which
    sends the frequency cap and quiet hours would hold back. Sends nothing, writes nothing.

    A bad line is reported as FILE:LINE: reason and skipped; the exit status is 1 if any was bad.
    The file is read in time order without holding it in memory.
    """
    start, end = parse_now(from_text), parse_now(to_text)
    if end <= start:
        raise click.BadParameter("--to must be after --from")
    if (file is None) == (not from_db):
        raise click.UsageError("give an event FILE, or --from-db to replay the database's events (not both)")
    tick_step = duration_option(step, "--step")
    ruleset = only_rules(app.rules(), rule_ids)
    bad = 0
    if from_db:
        # read-only: the history streams out of the database into the throwaway one, without the
        # records of what was really sent (the simulation makes its own)
        history = export_events(app.engine, until=end, leave_out=SEND_RECORDS)
        sim = run_simulation(app.settings, ruleset, history, start=start, end=end, step=tick_step)
    else:
        assert file is not None
        stream: TextIO
        if file == "-":
            stream = sys.stdin
        else:
            try:
                stream = open(file, encoding="utf-8")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise click.ClickException(f"{file}: {exc.strerror}") from None
        with contextlib.closing(stream) if stream is not sys.stdin else contextlib.nullcontext(stream):
            sorted_events = SortedEvents(
                stream, file, lambda message: click.echo(message, err=True), aliases=app.event_aliases()
            )
        with sorted_events:
            bad = sorted_events.bad
            sim = run_simulation(app.settings, ruleset, sorted_events, start=start, end=end, step=tick_step)
    _print_simulation(sim, ruleset, only=bool(rule_ids))
    stats = sim.stats
    notes = [
        f"{stats.events:,} event{'s' if stats.events != 1 else ''} and {stats.identified:,} "
        f"identif{'ies' if stats.identified != 1 else 'y'} replayed"
    ]
    if stats.after_end:
        notes.append(f"{stats.after_end:,} after --to not replayed")
    skipped = bad + stats.rejected
    if skipped:
        notes.append(f"{skipped:,} bad line{'s' if skipped != 1 else ''} skipped")
    if sim.later:
        notes.append(f"{sim.later:,} sends due after --to not shown")
    click.echo(
        f"\n{sim.total('would send'):,} messages would be sent ({sim.total('frequency cap'):,} held back by "
        f"the frequency cap, {sim.total('quiet hours'):,} delayed by quiet hours); nothing was sent."
    )
    click.echo("; ".join(notes) + ".", err=True)
    return 1 if skipped else 0


def _print_simulation(sim: Simulation, ruleset: RuleSet, *, only: bool) -> None:
    width = max([len(rule_id) + 2 for _, rule_id in sim.per_day] + [30])
    click.echo(
        f"{'day':<12}{'rule':<{width}}{'would send':>11}{'freq. cap':>10}{'quiet hrs':>10}{'other':>7}"
    )
    for (day, rule_id), row in sorted(sim.per_day.items()):
        send, cap, quiet, other = (row[c] for c in COLUMNS)
        click.echo(f"{day:<12}{rule_id:<{width}}{send:>11}{cap:>10}{quiet:>10}{other:>7}")
    # per rule, then its steps and its split's variants
    ids = [r.id for r in ruleset.rules]
    width = max([len(i) + 4 for i in ids] + [len(t) + 10 for _, _, t in sim.per_step] + [30])
    click.echo("")
    click.echo(
        f"{'per rule and step' + (' (--rule)' if only else ''):<{width}}{'entered':>8}{'would send':>11}"
        f"{'freq. cap':>10}{'quiet hrs':>10}{'other':>7}"
    )
    weights = split_weights(ruleset)
    for rule_id in ids:
        row = sim.per_rule.get(rule_id, dict.fromkeys(COLUMNS, 0))
        send, cap, quiet, other = (row[c] for c in COLUMNS)
        click.echo(
            f"{rule_id:<{width}}{sim.entered.get(rule_id, 0):>8}{send:>11}{cap:>10}{quiet:>10}{other:>7}"
        )
        for (rid, path, template), srow in sorted(sim.per_step.items()):
            if rid == rule_id:
                send, cap, quiet, other = (srow[c] for c in COLUMNS)
                click.echo(
                    f"{'  ' + path + ' ' + template:<{width}}{'':>8}{send:>11}{cap:>10}{quiet:>10}{other:>7}"
                )
        for (rid, variant), weight in weights.items():
            if rid == rule_id:
                v = sim.per_variant.get((rid, variant), {"entered": 0, "would send": 0})
                label = f"  variant {variant} ({weight}%)"
                click.echo(f"{label:<{width}}{v['entered']:>8}{v['would send']:>11}")
