"""Celery tasks: thin glue from a message carrying send ids to engine.delivery.deliverer.

Tasks are registered on the app that `workers.app.make_app` builds (no shared_task, no current_app).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import Celery

from engine.db import make_engine
from engine.delivery.deliverer import Deliverer
from engine.settings import Settings
from workers.state import STATE


def _deliverer(settings: Settings) -> Deliverer:
    if "deliverer" not in STATE:
        engine = make_engine(settings.database_url, create=False)
        STATE["engine"] = engine
        STATE["deliverer"] = Deliverer.create(engine, settings)
    deliverer: Deliverer = STATE["deliverer"]
    return deliverer


def deliver_sends(task: Any, ids: list[int]) -> dict[str, int]:
    """Deliver a batch of queued sends; each send's state lives in the database, not here."""
    settings = task.app.conf.journey_settings
    stats = _deliverer(settings).deliver(ids, now=datetime.now(UTC))
    return stats.figures()


def register(app: Celery) -> None:
    app.task(name="workers.tasks.deliver_sends", bind=True, ignore_result=True)(deliver_sends)
