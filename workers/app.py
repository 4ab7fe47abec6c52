"""The Celery app, built from settings: queues per channel, late acks, no results."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from kombu.entity import Queue

from engine.errors import ConfigError
from engine.settings import Settings
from workers.state import STATE

#: what a cold shutdown still gives running batches, in seconds (keep a container's
#: stop_grace_period longer: docker-compose.yml gives workers 120 s)
SOFT_SHUTDOWN_SECONDS = 60.0


def make_app(settings: Settings) -> Celery:
    if not settings.broker_url:
        raise ConfigError(
            "JOURNEY_BROKER_URL is not set: Celery workers need a broker; set it to redis://HOST:6379/0 "
            "or amqp://USER:PASS@HOST:5672// (without a broker, `journey tick` delivers in-process)"
        )
    app = Celery("journey", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_queues=[Queue("email"), Queue("webhook")],  # type: ignore[no-untyped-call]
        task_default_queue="email",
        task_routes={"workers.tasks.deliver_sends": {"queue": "email"}},
        worker_send_task_events=True,
        task_send_sent_event=True,
        # Settings whose defaults Celery 6 changes, pinned (tests/workers/test_celery6.py):
        # - a broker blip must not cancel running batches (Celery 6: on). With late acks a
        #   cancelled batch would act like a mid-batch kill; a batch that finishes instead is
        #   redelivered after the blip and its sends, already 'sent', are skipped (compare-and-set).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # - the first connection is retried like the others (Celery 6 reads only this setting)
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        worker_hijack_root_logger=False,
        # our JSON lines go to stderr as they are: redirected, Celery would log each one again
        # at WARNING (every successful send a warning)
        worker_redirect_stdouts=False,
        # SIGTERM is Celery's warm shutdown: running batches finish. A cold shutdown (SIGQUIT, a
        # second Ctrl-C) still gives them this long, in seconds, before it stops them; sends a
        # stopped batch held stay 'sending' and are taken back after the lease.
        worker_soft_shutdown_timeout=SOFT_SHUTDOWN_SECONDS,
        # Redis: a task not acked within this many seconds is redelivered; sends are idempotent.
        broker_transport_options={"visibility_timeout": 3600},
        timezone="UTC",
    )
    app.conf.journey_settings = settings
    from workers.tasks import register

    register(app)
    return app


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _init_process(**_: Any) -> None:
    """A database engine per worker process: pools must not cross a fork."""
    STATE.clear()
    from engine.logs import configure

    configure("json")  # one JSON line per send: rule, send key, customer, outcome


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _shutdown_process(**_: Any) -> None:
    engine = STATE.pop("engine", None)
    if engine is not None:
        engine.dispose()


@worker_init.connect  # type: ignore[untyped-decorator]
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    """`JOURNEY_WORKER_METRICS_PORT=9101` (with PROMETHEUS_MULTIPROC_DIR set to a writable directory):
    the worker's main process serves the series its pool processes wrote, merged, for Prometheus."""
    settings: Settings | None = getattr(getattr(sender, "app", None), "conf", {}).get("journey_settings")
    if settings is None or not settings.worker_metrics_port or not settings.prometheus_multiproc_dir:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=settings.prometheus_multiproc_dir)  # type: ignore[no-untyped-call]
    start_http_server(settings.worker_metrics_port, registry=registry)
