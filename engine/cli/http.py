"""CLI commands: serve (the HTTP service)."""

from __future__ import annotations

import click

from engine.cli.base import App, pass_app
from engine.http.serve import prepare, run


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="address to listen on (0.0.0.0 for every interface, e.g. in a container)",
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@pass_app
def serve(app: App, host: str, port: int) -> None:
    """The HTTP service: POST /v1/events, unsubscribe and preference pages, survey, referral and
    tracking links, /healthz and /metrics. Access logs are JSON lines on stderr."""
    settings = app.settings
    prepared = prepare(settings, app.engine)
    if prepared.generated_key is not None:
        click.echo(
            f"API key for POST /v1/events (generated; shown this once, only its hash is stored): "
            f"{prepared.generated_key}\n"
            "  send it as 'Authorization: Bearer <key>'; set JOURNEY_API_KEY to choose your own",
            err=True,
        )
    click.echo(f"serving on http://{host}:{port} (links in emails point to {settings.base_url})", err=True)
    run(prepared.app, host=host, port=port)
