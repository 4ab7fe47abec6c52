"""Celery tasks: thin glue from a message carrying send ids to engine.deliver.

Tasks are registered on the app that `workers.app.make_app` builds (no shared_task, no current_app).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import Celery

from workers.state import STATE


def _deliverer(settings: Any) -> Any:
    if "deliverer" not in STATE:
        from engine.db import make_engine
        from engine.deliver import Deliverer

        engine = make_engine(settings.database_url)
        STATE["engine"] = engine
        STATE["deliverer"] = Deliverer.create(engine, settings)
    return STATE["deliverer"]


def deliver_sends(task: Any, ids: list[int]) -> dict[str, int]:
    """Deliver a batch of queued sends; each send's state lives in the database, not here."""
    settings = task.app.conf.journey_settings
    stats = _deliverer(settings).deliver(ids, now=datetime.now(UTC))
    return {k: v for k, v in stats.__dict__.items() if isinstance(v, int) and v}


def noop(task: Any, ids: list[int]) -> int:
    """Does nothing: the benchmark's baseline for Celery's own cost per task."""
    return len(ids)


def register(app: Celery) -> None:
    app.task(name="workers.tasks.deliver_sends", bind=True, ignore_result=True)(deliver_sends)
    app.task(name="workers.tasks.noop", bind=True, ignore_result=True)(noop)
