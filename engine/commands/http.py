"""CLI commands: serve (the HTTP service)."""

from __future__ import annotations

import click

from engine.cli import App, cli, pass_app
from engine.errors import JourneyError


@cli.command()
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
    import uvicorn

    from engine.db import current_revision
    from engine.http.app import create_app
    from engine.rules.loader import load_ruleset

    settings = app.settings
    if current_revision(app.engine) is None:
        raise JourneyError("the database has no schema yet: run `journey db upgrade` first")
    # fail fast on broken rules: the preference page and referral links read them
    load_ruleset(settings.rules_dir, settings.templates_dir)
    api = create_app(settings, engine=app.engine)
    if settings.api_key is None:
        from engine.db import get_or_create_secret

        key = get_or_create_secret(app.engine, "api_key")
        click.echo(
            f"API key for POST /v1/events (generated, stored in the database): {key}\n"
            "  send it as 'Authorization: Bearer <key>'; set JOURNEY_API_KEY to choose your own",
            err=True,
        )
    click.echo(f"serving on http://{host}:{port} (links in emails point to {settings.base_url})", err=True)
    uvicorn.run(api, host=host, port=port, log_level="warning", access_log=False, server_header=False)
