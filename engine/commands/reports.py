"""CLI commands: report, demo, simulate."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import click

from engine.cli import NOW_HELP, App, cli, parse_now, pass_app
from engine.durations import parse_duration


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable figures")
@click.option(
    "--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), help="write a page with charts"
)
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@pass_app
def report(app: App, as_json: bool, html_file: Path | None, now_text: str | None) -> None:
    """Stage funnel, per-rule sends, opens, clicks, conversions and unsubscribes, NPS, cart recovery."""
    from engine.commands.core import load_rules
    from engine.report import build, render_text

    r = build(app.engine, load_rules(app), now=parse_now(now_text))
    if html_file is not None:
        from engine.report_html import render_html

        html_file.write_text(render_html(r), encoding="utf-8")
        click.echo(f"wrote {html_file}", err=True)
    if as_json:
        click.echo(json.dumps(r.as_dict(), indent=2, default=str))
    elif html_file is None:
        click.echo(render_text(r))


#: the `meta` row that marks a database the demo made: JSON {"state": "running"|"done", "events": N}
DEMO_KEY = "demo"
#: the file that marks an outbox the demo filled
OUTBOX_MARK = ".journey-demo"


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) and url != prefix + ":memory:" else None


def demo_database_state(path: Path) -> str:
    """'missing', 'demo' (made by the demo, nothing added since) or why the demo may not wipe it."""
    import sqlite3

    if not path.exists() or (path.stat().st_size == 0 and not Path(f"{path}-wal").exists()):
        return "missing"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            mark = conn.execute("SELECT value FROM meta WHERE key = ?", (DEMO_KEY,)).fetchone()
            last = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return "it is not a database the demo made"
    if mark is None:
        return "it holds data the demo did not make"
    try:
        made = json.loads(mark[0])
    except ValueError:
        made = {}
    if made.get("state") == "done" and made.get("events") != last:
        return "events were added to it after the demo"
    return "demo"


def _server(url: str) -> str:
    """The email URL without its credentials."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


def _outbox_files(outbox: Path) -> list[Path]:
    """What the demo writes into an outbox: `.eml` files, and webhook posts under webhooks/."""
    return [*outbox.glob("*.eml"), *outbox.glob("webhooks/*.json")]


def _refuse(what: str, why: str, fresh: str) -> click.ClickException:
    return click.ClickException(
        f"the demo only deletes what an earlier demo made, and {what} is not that: {why}. "
        "Nothing was deleted.\n"
        "  Run the demo elsewhere:  JOURNEY_DATABASE_URL=sqlite:///demo.db JOURNEY_EMAIL_URL=file://demo-outbox "
        "journey demo\n"
        f"  or start over, deleting {fresh}:  journey demo --fresh"
    )


@cli.command()
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
    from sqlalchemy import func, select

    from engine.channels.email import FileEmailChannel, email_channel
    from engine.channels.webhook import FileWebhookChannel
    from engine.commands.core import load_rules
    from engine.db import make_engine, upgrade
    from engine.deliver import Deliverer
    from engine.engagement import Engagement, engage
    from engine.generate import ShopConfig, generate_events
    from engine.replay import replay
    from engine.report import build, render_text
    from engine.scheduler import put_meta
    from engine.schema import events, sends

    settings = app.settings
    url = settings.database_url
    path = _sqlite_path(url)
    if path is None:
        raise click.ClickException(
            "the demo runs on SQLite: unset JOURNEY_DATABASE_URL (or point it at sqlite:///demo.db)"
        )
    tick_step = parse_duration(step)
    channel = email_channel(settings.email_url)
    outbox = channel.directory if isinstance(channel, FileEmailChannel) else None
    if outbox is None and not send_real_email:
        raise click.ClickException(
            f"JOURNEY_EMAIL_URL is {_server(settings.email_url)}, a real mail server: the demo would send "
            "it thousands of messages.\n  Unset JOURNEY_EMAIL_URL (the demo then writes .eml files to ./outbox), "
            "or pass --send-real-email if that server is a test catcher that delivers nowhere."
        )
    state = demo_database_state(path)
    if state not in ("missing", "demo") and not fresh:
        raise _refuse(str(path), state, "it")
    old_mail = _outbox_files(outbox) if outbox is not None else []
    if outbox is not None and old_mail and not (outbox / OUTBOX_MARK).exists() and not fresh:
        raise _refuse(
            f"{outbox}/", f"it holds {len(old_mail):,} emails or posts the demo did not write", "those"
        )

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    for old in old_mail:
        old.unlink(missing_ok=True)
    if state != "missing" or old_mail:
        click.echo(
            f"starting clean: deleted {path}"
            + (f" and {len(old_mail):,} files in {outbox}/" if old_mail else "")
        )
    engine = make_engine(url)
    app._engine = engine
    upgrade(engine)
    with engine.begin() as conn:
        put_meta(conn, DEMO_KEY, json.dumps({"state": "running", "seed": seed}), datetime.now(UTC))
    if outbox is not None:
        outbox.mkdir(parents=True, exist_ok=True)
        (outbox / OUTBOX_MARK).write_text(
            "Written by `journey demo`: a later demo deletes the .eml files here and under webhooks/.\n"
        )
    ruleset = load_rules(app)
    config = ShopConfig(customers=customers, days=days, seed=seed)
    deliverer = Deliverer.create(
        engine,
        settings,
        ruleset,
        channels={"email": channel, "webhook": FileWebhookChannel((outbox or Path(".")) / "webhooks")},
    )
    started = time.perf_counter()
    total_ticks = int(timedelta(days=days) / tick_step)

    readers = Engagement()
    last_now = [config.begin]

    def progress(tick: Any, stats: Any) -> None:
        # the emails of this tick meet their readers: opens, clicks, a few unsubscribes
        got = engage(engine, since=last_now[0], now=tick.now, step=tick_step, seed=seed)
        last_now[0] = tick.now
        readers.opened += got.opened
        readers.clicked += got.clicked
        if stats.ticks % max(1, total_ticks // 20) == 0 or stats.ticks == total_ticks:
            sent = stats.delivered.get("sent", 0)
            click.echo(
                f"  {tick.now.date()}  {stats.events:>7,} events  {sent:>6,} sent"
                f"  {readers.opened:>6,} opened  {readers.clicked:>5,} clicked",
                err=True,
            )

    click.echo(f"replaying {days} days of a {customers:,}-customer shop (seed {seed}), a tick every {step} …")
    stats = replay(
        engine,
        settings,
        ruleset,
        generate_events(config),
        start=config.begin,
        end=config.end,
        step=tick_step,
        deliverer=deliverer,
        on_tick=progress,
    )
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        last = int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())
        put_meta(
            conn, DEMO_KEY, json.dumps({"state": "done", "seed": seed, "events": last}), datetime.now(UTC)
        )
    click.echo("")
    click.echo(render_text(build(engine, ruleset, now=config.end)))
    where = f" in {outbox}/ (open any .eml with a mail client)" if outbox is not None else ""
    with engine.connect() as conn:
        by_channel: dict[str, int] = {
            str(channel): int(n)
            for channel, n in conn.execute(
                select(sends.c.channel, func.count())
                .where(sends.c.status == "sent")
                .group_by(sends.c.channel)
            )
        }
    hooks = f", {by_channel['webhook']:,} webhook posts" if by_channel.get("webhook") else ""
    click.echo(
        f"\n{by_channel.get('email', 0):,} emails{where}{hooks}; {stats.ticks} ticks in {seconds:.1f} s."
    )
    click.echo(
        "Try: journey explain c-0000042 --now "
        + config.end.isoformat()
        + "   |   journey report --html report.html"
    )
    click.echo(
        f"Running `journey demo` again deletes this database ({path}) and these emails, and starts over."
    )


def read_event_lines(stream: TextIO, name: str, on_error: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """The events of a JSON-lines stream, each checked as `journey ingest` checks it; a bad line is
    reported as `NAME:LINE: reason` and skipped."""
    from engine.errors import IngestError
    from engine.ingest import parse_event

    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            on_error(f"{name}:{number}: not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        try:
            parse_event(obj)
        except IngestError as exc:
            on_error(f"{name}:{number}: {exc}")
            continue
        yield obj


class _SimulatedWebhooks:
    """Posts nothing: answers as a receiving team would."""

    def post(self, *a: Any, **k: Any) -> str:
        return "200 simulated"

    def open(self) -> None: ...

    def close(self) -> None: ...


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--from", "from_text", required=True, metavar="ISO8601", help="start of the replay")
@click.option("--to", "to_text", required=True, metavar="ISO8601", help="end of the replay")
@click.option("--step", default="1h", show_default=True, help="virtual time between ticks")
@pass_app
def simulate(app: App, file: str, from_text: str, to_text: str, step: str) -> int:
    """Replay FILE against the rules on a throwaway database: what would be sent, per rule and day,
    and which sends the frequency cap and quiet hours would hold back. Sends nothing.

    A bad line is reported as FILE:LINE: reason and skipped; the exit status is 1 if any was bad.
    """
    from sqlalchemy import select

    from engine.channels.stub import StubEmailChannel
    from engine.commands.core import load_rules
    from engine.db import make_engine, upgrade
    from engine.deliver import Deliverer
    from engine.ingest import parse_timestamp
    from engine.replay import replay
    from engine.schema import sends

    start, end = parse_now(from_text), parse_now(to_text)
    if end <= start:
        raise click.BadParameter("--to must be after --from")
    tick_step = parse_duration(step)
    ruleset = load_rules(app)
    stream: TextIO
    if file == "-":
        stream = sys.stdin
    else:
        try:
            stream = open(file, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise click.ClickException(f"{file}: {exc.strerror}") from None
    bad = 0

    def on_error(message: str) -> None:
        nonlocal bad
        bad += 1
        click.echo(message, err=True)

    workdir = Path(tempfile.mkdtemp(prefix="journey-simulate-"))
    engine = make_engine(f"sqlite:///{workdir / 'simulate.db'}")
    try:
        upgrade(engine)
        deliverer = Deliverer.create(
            engine,
            app.settings.with_(secret_key="simulate"),
            ruleset,
            channels={"email": StubEmailChannel(), "webhook": _SimulatedWebhooks()},
        )
        with contextlib.closing(stream) if stream is not sys.stdin else contextlib.nullcontext(stream):
            # in time order, as they happened: an export is not always sorted
            items = sorted(
                read_event_lines(stream, file, on_error), key=lambda e: parse_timestamp(e["timestamp"])
            )
        stats = replay(
            engine,
            app.settings,
            ruleset,
            items,
            start=start,
            end=end,
            step=tick_step,
            deliverer=deliverer,
        )
        per: dict[tuple[str, str], dict[str, int]] = {}
        later = 0
        with engine.connect() as conn:
            for rule_id, status, reason, due, sent_at in conn.execute(
                select(sends.c.rule_id, sends.c.status, sends.c.reason, sends.c.due_at, sends.c.sent_at)
            ):
                when = sent_at or due
                if when > end:
                    later += 1
                    continue
                row = per.setdefault(
                    (when.date().isoformat(), rule_id),
                    {"would send": 0, "frequency cap": 0, "quiet hours": 0, "other": 0},
                )
                if status == "sent":
                    row["would send"] += 1
                    if reason == "quiet_hours":  # held until the quiet hours ended, then sent
                        row["quiet hours"] += 1
                elif reason == "frequency_cap":
                    row["frequency cap"] += 1
                elif status == "due" and reason == "quiet_hours":
                    row["quiet hours"] += 1
                else:
                    row["other"] += 1
        width = max([len(rule_id) + 2 for _, rule_id in per] + [30])
        click.echo(
            f"{'day':<12}{'rule':<{width}}{'would send':>11}{'freq. cap':>10}{'quiet hrs':>10}{'other':>7}"
        )
        for (day, rule_id), row in sorted(per.items()):
            click.echo(
                f"{day:<12}{rule_id:<{width}}{row['would send']:>11}{row['frequency cap']:>10}"
                f"{row['quiet hours']:>10}{row['other']:>7}"
            )
        total = sum(r["would send"] for r in per.values())
        capped = sum(r["frequency cap"] for r in per.values())
        quiet = sum(r["quiet hours"] for r in per.values())
        notes = [
            f"{stats.events:,} event{'s' if stats.events != 1 else ''} and {stats.identified:,} "
            f"identif{'ies' if stats.identified != 1 else 'y'} replayed"
        ]
        if stats.after_end:
            notes.append(f"{stats.after_end:,} after --to not replayed")
        if bad or stats.rejected:
            notes.append(
                f"{bad + stats.rejected:,} bad line{'s' if bad + stats.rejected != 1 else ''} skipped"
            )
        if later:
            notes.append(f"{later:,} sends due after --to not shown")
        click.echo(
            f"\n{total:,} messages would be sent ({capped:,} held back by the frequency cap, {quiet:,} "
            "delayed by quiet hours); nothing was sent."
        )
        click.echo("; ".join(notes) + ".", err=True)
    finally:
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if bad or stats.rejected else 0
