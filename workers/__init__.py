"""The Celery side of Journey: `celery -A workers worker -Q email,webhook`.

`workers.app` is the module with `make_app(settings)`; the Celery instance built from the
environment is `workers.celery`, made on first access (never on import). `celery -A workers` looks
for `workers.app`, finds a module there and, as Celery does, takes `workers.celery` instead.
"""

from __future__ import annotations

from typing import Any

from workers import app as app  # the submodule, loaded now so that `workers.app` always means it

_app: Any = None


def __getattr__(name: str) -> Any:
    global _app
    if name == "celery":
        if _app is None:
            from engine.settings import Settings

            _app = app.make_app(Settings.from_env())
        return _app
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
