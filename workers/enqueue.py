"""The Celery enqueuer: one task per batch of send ids, on the queue named after the channel.

Registered as the `celery` entry point of the `journey.enqueuers` group (pyproject.toml), where
`engine.delivery.dispatch.broker_enqueuer` finds it: the engine never imports `workers`.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.settings import Settings
from workers.app import make_app


def celery_enqueuer(settings: Settings) -> Callable[[str, list[int]], None]:
    """Send one Celery task per batch, on the queue named after the channel."""
    app = make_app(settings)

    def enqueue(channel: str, ids: list[int]) -> None:
        app.send_task("workers.tasks.deliver_sends", args=[ids], queue=channel)

    return enqueue
