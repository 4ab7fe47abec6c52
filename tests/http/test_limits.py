"""The service's own limits and secrets: request headers have a deadline, the database file is the
owner's alone, and a generated API key is shown once, on creation."""

from __future__ import annotations

import socket
import stat
import time
from pathlib import Path

import httpx

from engine.db import make_engine, upgrade
from engine.http._protocol import with_header_timeout
from engine.http.app import create_app
from engine.http.serve import prepare
from engine.settings import Settings
from tests.support.http import NOW, Shop, served
from tests.support.kit import H
from tests.support.services import ROOT


def test_a_client_that_never_finishes_its_headers_is_closed_and_others_are_served(shop: Shop) -> None:
    app = create_app(shop.settings, engine=shop.engine)
    with served(app, http=with_header_timeout(0.3)) as base:
        host, port = base.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(5)]
        for conn in held:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: shop\r\nX-Slow: ")  # never finished
        assert httpx.get(f"{base}/healthz").status_code == 200  # the others are served meanwhile
        started = time.monotonic()
        for conn in held:
            assert conn.recv(100) == b""  # closed by the server (recv would wait 10 s otherwise)
            conn.close()
        assert time.monotonic() - started < 5
        # a request sent in pieces within the deadline is answered, and its connection kept
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\n")
            conn.sendall(b"Host: shop\r\n\r\n")
            assert conn.recv(100).startswith(b"HTTP/1.1 200")


def test_a_new_sqlite_database_is_readable_by_its_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "journey.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_generated_api_key_is_shown_on_the_first_start_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'journey.db'}"
    engine = make_engine(url)
    upgrade(engine)
    settings = Settings(
        database_url=url, rules_dir=ROOT / "rules", templates_dir=ROOT / "message_templates", api_key=None
    )
    first = prepare(settings, engine).generated_key
    assert first is not None and len(first) > 30
    assert prepare(settings, engine).generated_key is None  # never printed (nor logged) again
    assert prepare(settings.with_(api_key="chosen"), engine).generated_key is None
    engine.dispose()


def test_metrics_report_stuck_failing_and_recently_failed_sends(shop: Shop) -> None:
    from sqlalchemy import insert

    from engine.db.schema import sends

    base = {
        "step": "0",
        "occurrence": 0,
        "template": "t",
        "due_at": NOW,
        "created_at": NOW,
        "rule_id": "r",
        "attempts": 1,
        "reason": None,
        "lease_until": None,
        "failed_at": None,
    }
    rows = [
        {"customer_id": 1, "status": "sending", "lease_until": NOW - H},
        {"customer_id": 2, "status": "due", "reason": "retry", "attempts": 2},
        {"customer_id": 3, "status": "failed", "reason": "template", "failed_at": NOW - H / 2},
        {"customer_id": 4, "status": "failed", "reason": "template", "failed_at": NOW - 2 * H},
    ]
    with shop.engine.begin() as conn:
        conn.execute(insert(sends), [{**base, **r} for r in rows])
    body = shop.client.get("/metrics").text
    assert "journey_sends_stuck 1.0" in body
    assert "journey_sends_failing 1.0" in body
    assert 'journey_sends_failed_last_hour{reason="template"} 1.0' in body
