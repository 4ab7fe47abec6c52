"""A worker fleet's metrics: the series the pool processes wrote, merged and served for Prometheus."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from tests.support.kit import H, Kit
from tests.support.metrics import scrape_until
from tests.support.services import free_port
from tests.support.smtp import Recorder
from tests.support.waiting import wait_for
from tests.support.workers import T0, Start, carts, count
from workers.enqueue import celery_enqueuer

#: Celery worker subprocesses
pytestmark = pytest.mark.slow


def test_a_worker_serves_its_send_metrics(
    shop: tuple[Kit, Settings, Recorder],
    start_worker: Start,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kit, settings, _ = shop
    port = free_port()
    (tmp_path / "prom").mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    monkeypatch.setenv("JOURNEY_WORKER_METRICS_PORT", str(port))
    carts(kit, 5)
    kit.tick(T0 + 2 * H)
    start_worker(settings)
    dispatch_due(kit.engine, settings, now=T0 + 2 * H, enqueue=celery_enqueuer(settings))
    wait_for(lambda: count(kit.engine, "sent") == 5)
    body = scrape_until(f"http://127.0.0.1:{port}/metrics", lambda page: 'status="sent"' in page)
    assert 'journey_sends_total{channel="email",rule="cart_abandonment",status="sent"} 5.0' in body
