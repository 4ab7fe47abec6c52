"""A worker fleet's metrics: the series the pool processes wrote, merged and served for Prometheus."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from engine.dispatch import celery_enqueuer, dispatch_due
from engine.settings import Settings
from tests.engine.evalkit import H, Kit
from tests.smtp import Recorder, free_port
from tests.workers.conftest import T0, Start, carts, count, wait_for


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
    body = ""

    def scraped() -> bool:
        nonlocal body
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return False
        return 'status="sent"' in body

    wait_for(scraped, timeout=30)
    assert 'journey_sends_total{channel="email",rule="cart_abandonment",status="sent"} 5.0' in body
