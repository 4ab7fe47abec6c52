"""CLI commands: run, health."""

from __future__ import annotations

import click

from engine.cli.base import NOW_HELP, App, duration_option, parse_now, pass_app
from engine.health import check
from engine.logs import configure
from engine.metrics import serve_metrics
from engine.scheduler import Scheduler


@click.command()
@click.option("--every", default="30s", show_default=True, help="time between ticks")
@click.option(
    "--dispatch-every", default="5s", show_default=True, help="time between dispatches of due sends"
)
@click.option("--metrics-port", default=0, type=int, help="serve Prometheus metrics on this port (0: off)")
@click.option("--log-format", type=click.Choice(["json", "console"]), default="json", show_default=True)
@click.option("--once", is_flag=True, help="one tick and one dispatch, then exit")
@pass_app
def run(app: App, every: str, dispatch_every: str, metrics_port: int, log_format: str, once: bool) -> None:
    """The long-running scheduler: ticks every --every; any number may run, one evaluates at a time."""
    configure(log_format)
    if metrics_port:
        serve_metrics(metrics_port)
    Scheduler(
        app.settings,
        app.engine,
        every=duration_option(every, "--every"),
        dispatch_every=duration_option(dispatch_every, "--dispatch-every"),
        enqueue=app.enqueuer(),
    ).run(once=once)


@click.command()
@click.option("--max-tick-age", default="5m", show_default=True, help="a scheduler silent longer is unwell")
@click.option("--allow-no-tick", is_flag=True, help="a database that was never ticked is fine")
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@pass_app
def health(app: App, max_tick_age: str, allow_no_tick: bool, now_text: str | None) -> int:
    """Exit non-zero, saying why, when the database, the broker or the scheduler is unwell."""
    results = check(
        app.settings,
        app.engine,
        now=parse_now(now_text),
        max_tick_age=duration_option(max_tick_age, "--max-tick-age"),
        allow_no_tick=allow_no_tick,
    )
    for name, _ok, message in results:
        click.echo(f"{name}: {message}")
    return 0 if all(ok for _, ok, _ in results) else 1
