"""What an operator watches: /healthz, /metrics, access logs, and `journey serve` itself."""

from __future__ import annotations

import json
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
from tests.conftest import ROOT
from tests.engine.http.conftest import AUTH, Shop
from tests.smtp import free_port


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


def test_journey_serve_answers_on_its_port_and_prints_the_generated_key(tmp_path: Path) -> None:
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
    server = subprocess.Popen(
        [*journey, "serve", "--port", str(port)],
        env={**env, "PYTHONPATH": str(ROOT)},
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
    finally:
        server.terminate()
        _, err = server.communicate(timeout=15)
    key = err.split("stored in the database): ", 1)[1].split()[0]
    engine = make_engine(url)
    from engine.db import get_or_create_secret

    assert key == get_or_create_secret(engine, "api_key")
    engine.dispose()
