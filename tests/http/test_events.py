"""POST /v1/events as a shop's backend uses it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError, OperationalError

from engine.db import create_api_key
from engine.db.schema import customers
from engine.http.app import create_app
from tests.support.http import AUTH, NOW, Shop, served


def track(cid: str, event: str | None = "cart_updated", **extra: object) -> dict[str, object]:
    item: dict[str, object] = {"type": "track", "customer_id": cid, "timestamp": "2026-11-01T10:00:00Z"}
    if event is not None:
        item["event"] = event
    item.update(extra)
    return item


def test_a_batch_with_a_bad_item_stores_the_others_and_reports_its_index(shop: Shop) -> None:
    batch = [track("x"), track("y", event=None), track("z", "order_placed")]
    r = shop.client.post("/v1/events", json=batch, headers=AUTH)
    assert r.status_code == 202
    assert r.json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [
            {"index": 1, "reason": "a track event needs 'event': the event name, like 'order_placed'"}
        ],
    }
    assert shop.count("cart_updated") == 1 and shop.count("order_placed") == 1


def test_one_object_is_accepted_and_an_identify_creates_the_customer(shop: Shop) -> None:
    identify = {
        "type": "identify",
        "customer_id": "bo",
        "timestamp": "2026-11-01T10:00:00Z",
        "traits": {"email": "bo@example.com", "first_name": "Bo"},
    }
    r = shop.client.post("/v1/events", json=identify, headers=AUTH)
    assert (r.status_code, r.json()) == (202, {"accepted": 1, "duplicates": 0, "rejected": []})
    with shop.engine.connect() as conn:
        email = conn.execute(select(customers.c.email).where(customers.c.external_id == "bo")).scalar()
    assert email == "bo@example.com"


def test_the_same_message_id_twice_is_stored_once_and_reported_as_a_duplicate(shop: Shop) -> None:
    event = track("x", message_id="m-1")
    assert shop.client.post("/v1/events", json=event, headers=AUTH).json()["accepted"] == 1
    r = shop.client.post("/v1/events", json=[event, track("x", message_id="m-2")], headers=AUTH)
    assert r.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert shop.count("cart_updated") == 2


def test_a_request_without_the_api_key_stores_nothing(shop: Shop) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdC1hcGkta2V5"}):
        r = shop.client.post("/v1/events", json=[track("x")], headers=headers)
        assert r.status_code == 401
        assert "Authorization: Bearer <key>" in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert shop.count("cart_updated") == 0


def test_without_a_configured_key_the_generated_one_is_required_and_only_its_hash_is_stored(
    shop: Shop,
) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from engine.db.schema import meta

    generated = create_api_key(shop.engine)
    assert generated is not None and create_api_key(shop.engine) is None  # made once
    client = TestClient(create_app(shop.settings.with_(api_key=None), engine=shop.engine, now=lambda: NOW))
    assert client.post("/v1/events", json=track("x"), headers=AUTH).status_code == 401
    with shop.engine.connect() as conn:
        stored = conn.execute(select(meta.c.value).where(meta.c.key == "api_key")).scalar_one()
    assert stored.startswith("sha256:") and generated not in stored
    r = client.post("/v1/events", json=track("x"), headers={"Authorization": f"Bearer {stored}"})
    assert r.status_code == 401  # the stored value is not the key
    r = client.post("/v1/events", json=track("x"), headers={"Authorization": f"Bearer {generated}"})
    assert r.status_code == 202
    # the tracking API takes it as a write key too
    r = client.post("/v1/track", json={"userId": "x", "event": "cart_updated"}, auth=(generated, ""))
    assert r.status_code == 200


def test_invalid_json_is_a_400_that_says_where(shop: Shop) -> None:
    r = shop.client.post("/v1/events", content=b'{"type": "track",', headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"].startswith("not valid JSON:") and "line 1 column" in r.json()["error"]
    r = shop.client.post("/v1/events", content=b'{"x": NaN}', headers=AUTH)
    assert r.status_code == 400 and "NaN" in r.json()["error"]
    assert shop.client.post("/v1/events", content=b"", headers=AUTH).status_code == 400


def test_a_body_over_one_mebibyte_is_refused_with_413(shop: Shop) -> None:
    big = json.dumps([track("x", properties={"pad": "x" * 2000})] * 600).encode()
    assert len(big) > 1024 * 1024
    r = shop.client.post("/v1/events", content=big, headers=AUTH)
    assert r.status_code == 413
    assert "1,048,576 bytes" in r.json()["error"] and "1,000 events" in r.json()["error"]
    assert shop.count("cart_updated") == 0


def test_a_streamed_body_without_length_is_cut_off_at_one_mebibyte(shop: Shop, live: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(2000):
            yield json.dumps(track("x", properties={"pad": "x" * 1000})).encode() + b","
        yield b"{}]"

    r = httpx.post(live + "/v1/events", content=chunks(), headers=AUTH, timeout=30)
    assert r.status_code == 413
    assert shop.count("cart_updated") == 0


def test_more_than_a_thousand_events_is_refused_and_says_the_limit(shop: Shop) -> None:
    r = shop.client.post("/v1/events", json=[track(f"c{i}") for i in range(1001)], headers=AUTH)
    assert r.status_code == 413
    assert "the limit is 1,000 events" in r.json()["error"]
    assert shop.count("cart_updated") == 0
    ok = shop.client.post("/v1/events", json=[track(f"c{i}") for i in range(1000)], headers=AUTH)
    assert ok.json()["accepted"] == 1000


def test_events_arrive_over_real_http_from_several_clients(shop: Shop) -> None:
    app = create_app(shop.settings, engine=shop.engine, now=lambda: NOW)
    with served(app) as base, httpx.Client(base_url=base, headers=AUTH) as client:
        for n in range(3):
            batch = [track(f"c{n}-{i}", message_id=f"m-{n}-{i}") for i in range(100)]
            assert client.post("/v1/events", json=batch).json()["accepted"] == 100
        metrics = client.get("/metrics").text
    assert shop.count("cart_updated") == 300
    assert "journey_events_accepted_total 300.0" in metrics


class _Deadlock(Exception):
    sqlstate = "40P01"


def test_a_batch_that_hits_a_deadlock_is_retried_and_stored(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.ingest.writer

    real = engine.ingest.writer.ingest_events
    calls = []

    def deadlock_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT …", {}, _Deadlock("deadlock detected"))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.ingest.writer, "ingest_events", deadlock_once)
    r = shop.client.post("/v1/events", json=[track("x"), track("y")], headers=AUTH)
    assert (r.status_code, r.json()["accepted"], len(calls)) == (202, 2, 2)
    assert shop.count("cart_updated") == 2


def test_a_deadlock_in_the_postgresql_copy_path_is_retried_too(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PostgreSQL batch path talks to psycopg directly (COPY): its deadlock must reach the
    retry as one, not as a 500 (concurrent batches for the same customers do deadlock)."""
    if shop.engine.dialect.name != "postgresql":
        pytest.skip("the COPY path is PostgreSQL's")
    import psycopg

    import engine.ingest._postgres

    real = engine.ingest._postgres._store_batch
    calls = []

    def deadlock_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.ingest._postgres, "_store_batch", deadlock_once)
    r = shop.client.post("/v1/events", json=[track("x"), track("y")], headers=AUTH)
    assert (r.status_code, r.json()["accepted"], len(calls)) == (202, 2, 2)
    assert shop.count("cart_updated") == 2


def test_a_database_that_is_down_is_a_503_with_retry_after(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.ingest.writer

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connect", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(engine.ingest.writer, "ingest_events", down)
    r = shop.client.post("/v1/events", json=[track("x")], headers=AUTH)
    assert (r.status_code, r.headers["retry-after"]) == (503, "5")
    assert "retry later" in r.json()["error"]


def test_a_value_the_database_refuses_is_a_422_and_stores_nothing_of_the_request(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.ingest.writer

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise DataError("INSERT …", {}, ValueError("unsupported Unicode escape sequence"))

    monkeypatch.setattr(engine.ingest.writer, "ingest_events", refused)
    r = shop.client.post("/v1/events", json=[track("x")], headers=AUTH)
    assert r.status_code == 422
    assert r.json()["error"].endswith(
        "nothing of this request was stored: unsupported Unicode escape sequence"
    )
