"""What an operator watches: /healthz, /metrics, access logs, and `journey serve` itself."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from engine.db import make_engine
from engine.http.app import create_app
from engine.logs import configure
from tests.support.http import AUTH, NOW, Shop
from tests.support.kit import H
from tests.support.services import ROOT, free_port

#: `journey serve` subprocesses
pytestmark = pytest.mark.slow


def test_healthz_says_ok_when_the_database_answers(shop: Shop) -> None:
    r = shop.client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok", "database": "ok"})


def test_healthz_is_503_when_the_database_does_not_answer(shop: Shop, tmp_path: Path) -> None:
    gone = make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    r = TestClient(create_app(shop.settings, engine=gone)).get("/healthz")
    assert r.status_code == 503
    assert r.json()["status"] == "unavailable" and r.json()["database"].startswith("OperationalError")
    gone.dispose()


def test_metrics_count_requests_by_route_and_status_and_time_them(shop: Shop) -> None:
    client = shop.client
    client.get("/healthz")
    client.get("/healthz")
    client.get(shop.links().unsubscribe)
    client.get("/u/forged")
    client.get("/no/such/page")
    client.post("/v1/events", json=[{"type": "track"}, {"type": "track"}], headers=AUTH)
    body = client.get("/metrics").text
    assert 'journey_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in body
    assert 'journey_http_requests_total{method="GET",route="/u/{token}",status="200"} 1.0' in body
    assert 'journey_http_requests_total{method="GET",route="/u/{token}",status="404"} 1.0' in body
    assert 'journey_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in body
    assert 'journey_http_request_duration_seconds_count{method="GET",route="/healthz"} 2.0' in body
    assert 'journey_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz"}' in body
    assert "journey_events_rejected_total 2.0" in body and "journey_events_accepted_total 0.0" in body


def test_each_app_has_its_own_metrics(shop: Shop) -> None:
    other = TestClient(create_app(shop.settings, engine=shop.engine))
    shop.client.get("/healthz")
    assert 'route="/healthz"' not in other.get("/metrics").text


def test_access_logs_are_json_lines_without_tokens(shop: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    configure("console", level=logging.WARNING)  # what the CLI sets before `journey serve` starts
    url = shop.links().unsubscribe
    token = url.rsplit("/", 1)[1]
    shop.client.get(url)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    [entry] = [e for e in lines if e.get("event") == "request"]
    assert {k: entry[k] for k in ("method", "route", "status")} == {
        "method": "GET",
        "route": "/u/{token}",
        "status": 200,
    }
    assert isinstance(entry["duration_ms"], float)
    assert token[:20] not in json.dumps(lines)


def test_journey_serve_answers_on_its_port_logs_requests_and_prints_the_generated_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journey.db'}"
    env = {
        **os.environ,
        "JOURNEY_DATABASE_URL": url,
        "JOURNEY_RULES_DIR": str(ROOT / "rules"),
        "JOURNEY_TEMPLATES_DIR": str(ROOT / "message_templates"),
    }
    env.pop("JOURNEY_API_KEY", None)
    journey = [sys.executable, "-c", "import sys; from engine.cli import main; sys.exit(main())"]
    no_schema = subprocess.run([*journey, "serve"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert no_schema.returncode == 1 and "journey db upgrade" in no_schema.stderr
    subprocess.run([*journey, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=tmp_path)
    port = free_port()
    (tmp_path / "prometheus").mkdir()
    server = subprocess.Popen(
        [*journey, "serve", "--port", str(port)],
        env={**env, "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")},
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "journey serve did not start"
            time.sleep(0.05)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        server.terminate()
        _, err = server.communicate(timeout=15)
    # multiprocess mode (as beside workers): every series once, this process's requests included
    families = [line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE")]
    assert len(families) == len(set(families)), metrics
    assert 'journey_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics
    assert "journey_queue_lag_seconds 0.0" in metrics
    # one JSON access line per request, at the CLI's default log level
    requests = [json.loads(line) for line in err.splitlines() if '"event": "request"' in line]
    assert {(r["route"], r["status"]) for r in requests} >= {("/healthz", 200)}
    key = err.split("only its hash is stored): ", 1)[1].split()[0]
    engine = make_engine(url)
    from engine.db import key_hash, stored_api_key_hash

    assert stored_api_key_hash(engine) == key_hash(key)  # the key itself is nowhere on disk
    engine.dispose()


def test_metrics_give_the_queue_lag_and_no_scheduler_series_the_service_never_updates(shop: Shop) -> None:
    body = shop.client.get("/metrics").text
    assert "journey_queue_lag_seconds 0.0" in body
    assert "journey_ticks_total" not in body and "journey_scheduler_leader" not in body
    shop.kit.track("ada", "cart_updated", NOW - 3 * H)
    shop.kit.tick(NOW - 2 * H + 1 * H / 60)  # the reminder falls due an hour after the cart: NOW - 2h
    shop.kit.tick(NOW - 1 * H)
    assert shop.kit.sends() == [("ada", "cart_reminder", "due")]
    body = shop.client.get("/metrics").text  # the app's clock says NOW: the reminder is 2 h late
    assert "journey_queue_lag_seconds 7200.0" in body
