"""`journey demo`: the whole product on the embedded default. A generated shop is replayed day by
day through the rules, the emails land in the outbox, simulated readers open and click, and the
report closes the run.

The demo only deletes what an earlier demo made: a database it marked, and the outbox's emails
beside its mark file. Anything else stops it, deleting nothing, unless it is asked to start fresh.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, func, select

from engine.db import make_engine, put_meta, upgrade
from engine.db.schema import events, sends
from engine.delivery.channels.email import FileEmailChannel, email_channel
from engine.delivery.channels.webhook import FileWebhookChannel
from engine.delivery.deliverer import Deliverer
from engine.errors import JourneyError
from engine.reporting.report import build
from engine.reporting.text import render_text
from engine.rules.durations import format_duration
from engine.rules.loader import RuleSet
from engine.settings import Settings
from engine.sim.engagement import Engagement, engage
from engine.sim.generate import ShopConfig, generate_events
from engine.sim.replay import ReplayStats, replay

#: the `meta` row that marks a database the demo made: JSON {"state": "running"|"done", "events": N}
DEMO_KEY = "demo"
#: the file that marks an outbox the demo filled
OUTBOX_MARK = ".journey-demo"


class DemoRefused(JourneyError):
    """The demo would have to delete, or send, something that is not its own."""


@dataclass(frozen=True)
class DemoOptions:
    customers: int = 2000
    days: int = 60
    seed: int = 1
    #: virtual time between ticks
    step: timedelta = timedelta(hours=6)
    #: delete the database and the outbox's emails even when the demo did not make them
    fresh: bool = False
    #: deliver through an smtp:// email URL (thousands of messages)
    send_real_email: bool = False


@dataclass
class DemoResult:
    path: Path
    outbox: Path | None
    report: str
    stats: ReplayStats
    emails: int
    webhooks: int
    seconds: float
    end: datetime


def sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) and url != prefix + ":memory:" else None


def demo_database_state(path: Path) -> str:
    """'missing', 'demo' (made by the demo, nothing added since) or why the demo may not wipe it."""
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
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


def _outbox_files(outbox: Path) -> list[Path]:
    """What the demo writes into an outbox: `.eml` files, and webhook posts under webhooks/."""
    return [*outbox.glob("*.eml"), *outbox.glob("webhooks/*.json")]


def _refuse(what: str, why: str, fresh: str) -> DemoRefused:
    return DemoRefused(
        f"the demo only deletes what an earlier demo made, and {what} is not that: {why}. "
        "Nothing was deleted.\n"
        "  Run the demo elsewhere:  JOURNEY_DATABASE_URL=sqlite:///demo.db JOURNEY_EMAIL_URL=file://demo-outbox "
        "journey demo\n"
        f"  or start over, deleting {fresh}:  journey demo --fresh"
    )


def prepare(settings: Settings, options: DemoOptions, say: Callable[[str], None]) -> tuple[Path, Any]:
    """Check that the demo may run here and clear what an earlier demo left: (database path, email
    channel). Raises DemoRefused, deleting nothing, when it may not."""
    path = sqlite_path(settings.database_url)
    if path is None:
        raise DemoRefused(
            "the demo runs on SQLite: unset JOURNEY_DATABASE_URL (or point it at sqlite:///demo.db)"
        )
    channel = email_channel(settings.email_url)
    outbox = channel.directory if isinstance(channel, FileEmailChannel) else None
    if outbox is None and not options.send_real_email:
        raise DemoRefused(
            f"JOURNEY_EMAIL_URL is {_server(settings.email_url)}, a real mail server: the demo would send "
            "it thousands of messages.\n  Unset JOURNEY_EMAIL_URL (the demo then writes .eml files to ./outbox), "
            "or pass --send-real-email if that server is a test catcher that delivers nowhere."
        )
    state = demo_database_state(path)
    if state not in ("missing", "demo") and not options.fresh:
        raise _refuse(str(path), state, "it")
    old_mail = _outbox_files(outbox) if outbox is not None else []
    if outbox is not None and old_mail and not (outbox / OUTBOX_MARK).exists() and not options.fresh:
        raise _refuse(
            f"{outbox}/", f"it holds {len(old_mail):,} emails or posts the demo did not write", "those"
        )
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    for old in old_mail:
        old.unlink(missing_ok=True)
    if state != "missing" or old_mail:
        say(
            f"starting clean: deleted {path}"
            + (f" and {len(old_mail):,} files in {outbox}/" if old_mail else "")
        )
    return path, channel


def run_demo(
    settings: Settings,
    ruleset_of: Callable[[], RuleSet],
    options: DemoOptions,
    *,
    say: Callable[[str], None],
    progress: Callable[[str], None],
) -> tuple[Engine, DemoResult]:
    """Run the demo: `say` gets the lines for the reader, `progress` the per-tick lines."""
    path, channel = prepare(settings, options, say)
    outbox = channel.directory if isinstance(channel, FileEmailChannel) else None
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with engine.begin() as conn:
        put_meta(conn, DEMO_KEY, json.dumps({"state": "running", "seed": options.seed}), datetime.now(UTC))
    if outbox is not None:
        outbox.mkdir(parents=True, exist_ok=True)
        (outbox / OUTBOX_MARK).write_text(
            "Written by `journey demo`: a later demo deletes the .eml files here and under webhooks/.\n"
        )
    ruleset = ruleset_of()
    config = ShopConfig(customers=options.customers, days=options.days, seed=options.seed)
    deliverer = Deliverer.create(
        engine,
        settings,
        ruleset,
        channels={"email": channel, "webhook": FileWebhookChannel((outbox or Path(".")) / "webhooks")},
    )
    started = time.perf_counter()
    tick_step = options.step
    total_ticks = int(timedelta(days=options.days) / tick_step)
    readers = Engagement()
    last_now = [config.begin]

    def on_tick(tick: Any, stats: ReplayStats) -> None:
        # the emails of this tick meet their readers: opens, clicks, a few unsubscribes
        got = engage(engine, since=last_now[0], now=tick.now, step=tick_step, seed=options.seed)
        last_now[0] = tick.now
        readers.opened += got.opened
        readers.clicked += got.clicked
        if stats.ticks % max(1, total_ticks // 20) == 0 or stats.ticks == total_ticks:
            sent = stats.delivered.get("sent", 0)
            progress(
                f"  {tick.now.date()}  {stats.events:>7,} events  {sent:>6,} sent"
                f"  {readers.opened:>6,} opened  {readers.clicked:>5,} clicked"
            )

    say(
        f"replaying {options.days} days of a {options.customers:,}-customer shop (seed {options.seed}), "
        f"a tick every {format_duration(tick_step)} …"
    )
    stats = replay(
        engine,
        settings,
        ruleset,
        generate_events(config),
        start=config.begin,
        end=config.end,
        step=tick_step,
        deliverer=deliverer,
        on_tick=on_tick,
    )
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        last = int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())
        put_meta(
            conn,
            DEMO_KEY,
            json.dumps({"state": "done", "seed": options.seed, "events": last}),
            datetime.now(UTC),
        )
        by_channel: dict[str, int] = {
            str(ch): int(n)
            for ch, n in conn.execute(
                select(sends.c.channel, func.count())
                .where(sends.c.status == "sent")
                .group_by(sends.c.channel)
            )
        }
    report = render_text(build(engine, ruleset, now=config.end))
    return engine, DemoResult(
        path=path,
        outbox=outbox,
        report=report,
        stats=stats,
        emails=by_channel.get("email", 0),
        webhooks=by_channel.get("webhook", 0),
        seconds=seconds,
        end=config.end,
    )
