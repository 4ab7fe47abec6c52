"""Prometheus metrics of the scheduler and dispatch (the HTTP service keeps its own registry)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()
TICKS = Counter("journey_ticks_total", "ticks evaluated", registry=REGISTRY)
TICK_SECONDS = Histogram(
    "journey_tick_seconds",
    "duration of a tick",
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
MATCHES = Counter("journey_rule_matches_total", "customers entering a rule", ["rule"], registry=REGISTRY)
SCHEDULED = Counter("journey_sends_scheduled_total", "sends scheduled", ["rule"], registry=REGISTRY)
LEADER = Gauge("journey_scheduler_leader", "1 when this scheduler evaluates", registry=REGISTRY)
QUEUE_LAG = Gauge("journey_queue_lag_seconds", "now minus the oldest due send's due_at", registry=REGISTRY)
SENDS = Counter(
    "journey_sends_total", "sends finished, by outcome", ["rule", "channel", "status"], registry=REGISTRY
)
DELIVERY_LATENCY = Histogram(
    "journey_delivery_latency_seconds",
    "sent_at minus due_at",
    registry=REGISTRY,
    buckets=(1, 5, 15, 30, 60, 120, 300, 900, 3600, 14400, 86400),
)


def queue_lag(engine: Any, now: Any) -> float:
    """Now minus the oldest send still waiting to go, in seconds (0 when none is late)."""
    from sqlalchemy import func, select

    from engine.schema import sends

    with engine.connect() as conn:
        oldest = conn.execute(
            select(func.min(sends.c.due_at)).where(
                sends.c.status.in_(["due", "queued"]), sends.c.due_at <= now
            )
        ).scalar()
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


def observe_queue_lag(engine: Any, now: Any) -> float:
    """Set and return the queue lag gauge (see `queue_lag`)."""
    lag = queue_lag(engine, now)
    QUEUE_LAG.set(lag)
    return lag


def observe_tick(result: Any) -> None:
    TICKS.inc()
    TICK_SECONDS.observe(result.seconds)
    LEADER.set(1)
    for rule, n in result.entered.items():
        MATCHES.labels(rule).inc(n)
    for rule, n in result.scheduled.items():
        SCHEDULED.labels(rule).inc(n)


def render_latest() -> bytes:
    """The engine's series. With PROMETHEUS_MULTIPROC_DIR set (workers and the API sharing a
    directory), the series every process wrote there are merged in instead."""
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(merged))
    return bytes(generate_latest(REGISTRY))


def observe_send(rule: str, channel: str, status: str, latency_seconds: float | None = None) -> None:
    SENDS.labels(rule, channel, status).inc()
    if latency_seconds is not None:
        DELIVERY_LATENCY.observe(max(0.0, latency_seconds))
