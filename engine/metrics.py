"""Prometheus metrics of the scheduler and of delivery (the HTTP service keeps its own registry).

Nothing is created on import: a process makes the series it reports on first use, so that with a
shared PROMETHEUS_MULTIPROC_DIR no process writes series that belong to another (`journey serve`
never reports a scheduler's gauges as its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

REGISTRY = CollectorRegistry()


@dataclass(frozen=True)
class SchedulerMetrics:
    ticks: Counter
    tick_seconds: Histogram
    matches: Counter
    scheduled: Counter
    leader: Gauge
    queue_lag: Gauge


@dataclass(frozen=True)
class SendMetrics:
    sends: Counter
    latency: Histogram


@cache
def scheduler_metrics() -> SchedulerMetrics:
    """A scheduler's series, made on first use."""
    return SchedulerMetrics(
        ticks=Counter("journey_ticks_total", "ticks evaluated", registry=REGISTRY),
        tick_seconds=Histogram(
            "journey_tick_seconds",
            "duration of a tick, in seconds",
            registry=REGISTRY,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        ),
        matches=Counter(
            "journey_rule_matches_total", "customers entering a rule", ["rule"], registry=REGISTRY
        ),
        scheduled=Counter("journey_sends_scheduled_total", "sends scheduled", ["rule"], registry=REGISTRY),
        leader=Gauge("journey_scheduler_leader", "1 when this scheduler evaluates", registry=REGISTRY),
        queue_lag=Gauge(
            "journey_queue_lag_seconds", "now minus the oldest due send's due_at", registry=REGISTRY
        ),
    )


@cache
def send_metrics() -> SendMetrics:
    """The series of a process that delivers (a worker, or a tick delivering in-process)."""
    return SendMetrics(
        sends=Counter(
            "journey_sends_total",
            "sends finished, by outcome",
            ["rule", "channel", "status"],
            registry=REGISTRY,
        ),
        latency=Histogram(
            "journey_delivery_latency_seconds",
            "sent_at minus due_at, in seconds",
            registry=REGISTRY,
            buckets=(1, 5, 15, 30, 60, 120, 300, 900, 3600, 14400, 86400),
        ),
    )


def observe_tick(result: Any) -> None:
    m = scheduler_metrics()
    m.ticks.inc()
    m.tick_seconds.observe(result.seconds)
    m.leader.set(1)
    for rule, n in result.entered.items():
        m.matches.labels(rule).inc(n)
    for rule, n in result.scheduled.items():
        m.scheduled.labels(rule).inc(n)


def observe_scheduler(*, leader: bool, queue_lag_seconds: float) -> None:
    m = scheduler_metrics()
    m.leader.set(1 if leader else 0)
    m.queue_lag.set(queue_lag_seconds)


@cache
def rate_metrics() -> tuple[Gauge, Gauge]:
    """A dispatcher's rate-limit series: sends claimed in the current window, and the budget."""
    return (
        Gauge(
            "journey_rate_limit_used",
            "sends claimed in the channel's current rate-limit window (all dispatchers)",
            ["channel"],
            registry=REGISTRY,
            multiprocess_mode="max",
        ),
        Gauge(
            "journey_rate_limit_budget",
            "sends allowed per rate-limit window (settings.yaml rate_limit)",
            ["channel"],
            registry=REGISTRY,
            multiprocess_mode="max",
        ),
    )


def observe_rate(channel: str, *, used: int, budget: int) -> None:
    used_gauge, budget_gauge = rate_metrics()
    used_gauge.labels(channel).set(used)
    budget_gauge.labels(channel).set(budget)


def observe_send(rule: str, channel: str, status: str, latency_seconds: float | None = None) -> None:
    m = send_metrics()
    m.sends.labels(rule, channel, status).inc()
    if latency_seconds is not None:
        m.latency.observe(max(0.0, latency_seconds))


def render_latest(registry: CollectorRegistry = REGISTRY, multiproc_dir: str | None = None) -> bytes:
    """The series of `registry`. With a multiprocess directory (PROMETHEUS_MULTIPROC_DIR: workers
    and the API sharing one), the series every process wrote there, merged, instead: none twice."""
    if multiproc_dir:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=multiproc_dir)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(merged))
    return bytes(generate_latest(registry))


def serve_metrics(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve `registry` for Prometheus on `port`, from a thread of this process."""
    start_http_server(port, registry=registry)
