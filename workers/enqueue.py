"""The Celery enqueuer: one task per batch of send ids, on the queue named after the channel.

Registered as the `celery` entry point of the `journey.enqueuers` group (pyproject.toml), where
`engine.delivery.dispatch.broker_enqueuer` finds it: the engine never imports `workers`.
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from engine.settings import Settings
from workers.app import make_app


class CeleryEnqueuer:
    """Sends one Celery task per batch, on the queue named after the channel; `waiting(channel)`
    counts the tasks waiting in that queue (the dispatcher publishes lost tasks again only when
    it is empty)."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def __call__(self, channel: str, ids: list[int]) -> None:
        self.app.send_task("workers.tasks.deliver_sends", args=[ids], queue=channel)

    def waiting(self, channel: str) -> int | None:
        """Messages ready in the channel's queue, or None when the broker cannot be asked."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
                # declared, not looked up passively: Redis has no empty queue to find
                ok = Queue(channel).bind(conn.default_channel).queue_declare()  # type: ignore[no-untyped-call]
                return int(ok.message_count)
        except Exception:  # noqa: BLE001 - unknown: publish nothing again
            return None


def celery_enqueuer(settings: Settings) -> CeleryEnqueuer:
    """The enqueuer for the configured broker."""
    return CeleryEnqueuer(make_app(settings))
