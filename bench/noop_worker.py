"""The production Celery app plus a no-op task, for `bench/deliver.py`'s baseline: Celery's own
cost per task, measured on the same workers that deliver (`celery -A bench.noop_worker worker`).
The production app has no such task; only the bench registers it."""

from __future__ import annotations

from typing import Any

from engine.settings import Settings
from workers.app import make_app

celery = make_app(Settings.from_env())


@celery.task(name="bench.noop", bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
def noop(task: Any, ids: list[int]) -> int:
    """Does nothing: one task per message, the baseline of the delivery benchmark."""
    return len(ids)
