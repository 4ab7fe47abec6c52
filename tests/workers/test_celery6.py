"""Celery settings whose defaults change in Celery 6 are pinned by the app, not inherited: an
upgrade must not turn a broker blip into a mid-batch kill."""

from __future__ import annotations

import pytest

from engine.settings import Settings

#: setting -> the value Journey needs (Celery 5's default, which Celery 6 changes or stops reading)
PINNED = {
    "worker_cancel_long_running_tasks_on_connection_loss": False,
    "broker_connection_retry_on_startup": True,
    "broker_connection_retry": True,
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
}


@pytest.mark.parametrize(("name", "value"), sorted(PINNED.items()))
def test_settings_whose_celery_6_default_differs_are_set_explicitly(name: str, value: object) -> None:
    from workers.app import make_app

    app = make_app(Settings(broker_url="redis://127.0.0.1:6379/0"))
    assert name in app.conf.changes, f"{name} is not set by make_app: it would follow Celery's default"
    assert app.conf[name] == value
