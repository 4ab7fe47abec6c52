"""Metrics (Prometheus, one registry per app) and structured access logs (JSON lines on stderr).

Logs and metrics name the route template (`/u/{token}`), never the path: link tokens stay out of
both, and the number of label values stays bounded.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: request latency buckets, in seconds
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StderrLogger:
    """Writes each rendered line to the current sys.stderr (looked up per line, so a test's
    capture and a redirected stream both see it)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    info = warning = error = critical = exception = debug = msg


class Observer:
    """The app's metrics registry and access logger."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "journey_http_requests",
            "HTTP requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "journey_http_request_duration_seconds",
            "Time to answer an HTTP request, in seconds, by method and route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events_accepted = Counter(
            "journey_events_accepted", "Events accepted by POST /v1/events", registry=self.registry
        )
        self.events_duplicates = Counter(
            "journey_events_duplicates",
            "Events POST /v1/events had already stored (same message_id)",
            registry=self.registry,
        )
        self.events_rejected = Counter(
            "journey_events_rejected", "Events POST /v1/events rejected as malformed", registry=self.registry
        )
        self.feedback = Counter(
            "journey_feedback_reports",
            "Delivery reports from email providers, by provider, kind and what became of them "
            "(recorded, duplicate, unmatched, erased)",
            ["provider", "kind", "outcome"],
            registry=self.registry,
        )
        self.feedback_refused = Counter(
            "journey_feedback_refused",
            "Feedback requests refused because they failed their provider's check",
            ["provider"],
            registry=self.registry,
        )
        # Its own level: access lines are kept whatever level the CLI set for everything else.
        self.log: Any = structlog.wrap_logger(
            _StderrLogger(),
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class AccessMiddleware:
    """Pure ASGI (no body buffering): counts, times and logs every HTTP request."""

    def __init__(self, app: ASGIApp, observer: Observer) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        error: str | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            status, error = 500, type(exc).__name__
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = route_of(scope)
            method = str(scope.get("method", ""))
            obs = self.observer
            obs.requests.labels(method, route, str(status)).inc()
            obs.latency.labels(method, route).observe(elapsed)
            fields: dict[str, Any] = {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            }
            if error is not None:
                fields["error"] = error
            if status >= 500:
                obs.log.error("request", **fields)
            else:
                obs.log.info("request", **fields)


class QueueLagCollector:
    """`journey_queue_lag_seconds`, read from the database when Prometheus scrapes: now minus the
    oldest send still waiting to go (0 when none is late). Workers are behind when it grows."""

    def __init__(self, engine: Any, now: Callable[[], datetime]) -> None:
        self.engine = engine
        self.now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from engine.delivery.dispatch import queue_lag

        family = GaugeMetricFamily(
            "journey_queue_lag_seconds", "now minus the oldest due send's due_at, in seconds"
        )
        try:
            family.add_metric([], queue_lag(self.engine, self.now()))
        except Exception:  # a scrape must answer even when the database does not; /healthz says why
            return
        yield family
        yield from self._troubles()

    def _troubles(self) -> Iterator[GaugeMetricFamily]:
        """Sends past their lease, failing repeatedly, and failed in the last hour by reason."""
        from engine.delivery.troubles import troubles

        try:
            t = troubles(self.engine, self.now())
        except Exception:  # as above
            return
        stuck = GaugeMetricFamily("journey_sends_stuck", "sends 'sending' past their lease")
        stuck.add_metric([], t.stuck)
        failing = GaugeMetricFamily(
            "journey_sends_failing", "sends due again after failing twice or more for our own reasons"
        )
        failing.add_metric([], t.failing)
        failed = GaugeMetricFamily(
            "journey_sends_failed_last_hour", "sends that ended failed in the last hour", labels=["reason"]
        )
        for reason, n in sorted(t.failed_last_hour.items()):
            failed.add_metric([reason], n)
        yield from (stuck, failing, failed)
