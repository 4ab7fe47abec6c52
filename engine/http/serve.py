"""`journey serve`: the checks before the service starts, and the server itself (uvicorn)."""

from __future__ import annotations

from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from engine.db import create_api_key, current_revision
from engine.errors import JourneyError
from engine.http._protocol import HEADER_TIMEOUT, with_header_timeout
from engine.http.app import create_app
from engine.rules.loader import load_ruleset
from engine.settings import Settings


@dataclass(frozen=True)
class Prepared:
    app: FastAPI
    #: the API key generated and stored on this start (the first), when none was configured
    generated_key: str | None


def prepare(settings: Settings, engine: Engine) -> Prepared:
    """The app, once the database has its schema and the rules load (they fail fast here: the
    preference page and referral links read them)."""
    if current_revision(engine) is None:
        raise JourneyError("the database has no schema yet: run `journey db upgrade` first")
    load_ruleset(settings.rules_dir, settings.templates_dir)
    key = None
    if settings.api_key is None:
        key = create_api_key(engine)  # shown once, on creation; only its hash is stored
    return Prepared(create_app(settings, engine=engine), key)


def run(app: FastAPI, *, host: str, port: int, header_timeout: float = HEADER_TIMEOUT) -> None:
    """Serve until stopped; access logs are the app's own JSON lines. A client has
    `header_timeout` seconds to send a request's headers."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        http=with_header_timeout(header_timeout),
    )
