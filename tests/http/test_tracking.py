"""The Segment-compatible tracking API, driven by the real SDKs (segment-analytics-python and
rudder-sdk-python) against a `journey serve` subprocess, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from engine.db import make_engine
from engine.db.schema import customer_aliases, customers, events
from tests.support.proxy import Proxy
from tests.support.serve import API_KEY, WRITE_KEY, journey_serve
from tests.support.waiting import wait_for

#: `journey serve` subprocesses
pytestmark = pytest.mark.slow

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    eng = make_engine(db_url)
    with journey_serve(db_url, tmp_path) as base:
        yield base, eng
    eng.dispose()


class Errors:
    """The SDK's on_error: what it was told failed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, error: Exception, batch: Any) -> None:
        self.seen.append(f"{error!r}")


def names(eng: Engine, cid: str) -> list[str]:
    with eng.connect() as conn:
        rows = conn.execute(
            select(events.c.name)
            .join(customers, customers.c.id == events.c.customer_id)
            .where(customers.c.external_id == cid)
            .order_by(events.c.ts, events.c.id)
        )
        return [r.name for r in rows]


def customer(eng: Engine, cid: str) -> Any:
    with eng.connect() as conn:
        return conn.execute(select(customers).where(customers.c.external_id == cid)).first()


def count_events(eng: Engine) -> int:
    with eng.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def segment(base: str, errors: Errors, **options: Any) -> SegmentClient:
    return SegmentClient(WRITE_KEY, host=base, on_error=errors, upload_interval=0.05, **options)


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_every_segment_sdk_call_lands_and_on_error_never_fires(
    served: tuple[str, Engine], gzipped: bool
) -> None:
    base, eng = served
    errors = Errors()
    sdk = segment(base, errors, gzip=gzipped)
    sdk.page(
        anonymous_id="anon-1",
        category="shop",
        name="Shoes",
        properties={"url": "https://shop/shoes"},
        timestamp=T0,
    )
    sdk.track(
        anonymous_id="anon-1",
        event="Product Viewed",
        properties={"product_id": "p-7", "name": "Red shoes"},
        timestamp=T0.replace(minute=1),
    )
    sdk.screen(user_id="ada", name="Home", timestamp=T0.replace(minute=2))
    sdk.identify(
        user_id="ada",
        anonymous_id="anon-1",
        traits={"email": "ada@example.com", "first_name": "Ada"},
        context={"timezone": "Europe/Berlin", "locale": "de-DE"},
        timestamp=T0.replace(minute=3),
    )
    sdk.group(user_id="ada", group_id="acme", traits={"name": "Acme"}, timestamp=T0.replace(minute=4))
    sdk.track(
        user_id="ada", event="Order Completed", properties={"total": 42}, timestamp=T0.replace(minute=5)
    )
    sdk.alias(previous_id="ada-old-login", user_id="ada", timestamp=T0.replace(minute=6))
    sdk.shutdown()
    assert errors.seen == []
    ada = customer(eng, "ada")
    assert (ada.email, ada.first_name, ada.timezone, ada.locale) == (
        "ada@example.com",
        "Ada",
        "Europe/Berlin",
        "de-DE",
    )
    assert ada.attributes["group_id"] == "acme" and ada.attributes["group"] == {"name": "Acme"}
    # the anonymous visit became Ada's; the catalogue stored Segment's names under its own
    assert names(eng, "ada") == [
        "page_viewed",
        "product_viewed",
        "screen_viewed",
        "profile_merged",
        "order_placed",
        "profile_merged",
    ]
    assert customer(eng, "anon-1") is None
    with eng.connect() as conn:
        merged = {r.alias: r.merged_at for r in conn.execute(select(customer_aliases))}
    assert merged == {"anon-1": T0.replace(minute=3), "ada-old-login": T0.replace(minute=6)}
    with eng.connect() as conn:
        page = conn.execute(select(events.c.properties).where(events.c.name == "page_viewed")).scalar_one()
    assert page["name"] == "Shoes" and page["category"] == "shop" and page["url"] == "https://shop/shoes"


def test_rudderstack_sdk_with_basic_auth_and_gzip_lands(served: tuple[str, Engine]) -> None:
    base, eng = served
    errors = Errors()
    sdk = RudderClient(WRITE_KEY, host=base, on_error=errors, upload_interval=0.05)
    assert sdk.gzip  # RudderStack's SDK gzips by default, and sends the key as the Basic user
    sdk.identify(user_id="bo", traits={"email": "bo@example.com"}, timestamp=T0)
    sdk.track(user_id="bo", event="Product Added", properties={"sku": "s-1"}, timestamp=T0.replace(minute=1))
    sdk.page(user_id="bo", name="Cart", timestamp=T0.replace(minute=2), context={"timezone": "Asia/Tokyo"})
    sdk.shutdown()
    assert errors.seen == []
    bo = customer(eng, "bo")
    # the device's zone fills the customer's, which the identify left empty
    assert (bo.email, bo.timezone) == ("bo@example.com", "Asia/Tokyo")
    assert names(eng, "bo") == ["cart_updated", "page_viewed"]


def batch_body(**top: Any) -> dict[str, Any]:
    return {
        "batch": [
            {
                "type": "identify",
                "userId": "cy",
                "traits": {"email": "cy@example.com"},
                "messageId": "m-1",
                "timestamp": "2026-11-01T10:00:00Z",
            },
            {
                "type": "track",
                "userId": "cy",
                "event": "cart_updated",
                "messageId": "m-2",
                "timestamp": "2026-11-01T10:01:00Z",
                "properties": {"cart_value": 10},
            },
            {"type": "track", "userId": "cy", "messageId": "m-3"},  # no event: skipped, not fatal
        ],
        **top,
    }


def test_a_body_key_or_a_bearer_token_is_accepted_and_a_replayed_batch_stores_nothing_new(
    served: tuple[str, Engine],
) -> None:
    base, eng = served
    first = httpx.post(f"{base}/v1/batch", json=batch_body(writeKey="wk-test-2"))
    assert (first.status_code, first.json()) == (200, {"success": True})
    assert count_events(eng) == 1
    again = httpx.post(f"{base}/v1/batch", json=batch_body(), headers={"Authorization": f"Bearer {API_KEY}"})
    assert (again.status_code, again.json()) == (200, {"success": True})
    assert count_events(eng) == 1
    single = httpx.post(
        f"{base}/v1/track",
        json={"userId": "cy", "event": "Checkout Started", "timestamp": "2026-11-01T10:02:00Z"},
        auth=(WRITE_KEY, ""),
    )
    assert single.json() == {"success": True}
    assert names(eng, "cy") == ["cart_updated", "checkout_started"]
    # a bad item (no event; over 32 KB) is skipped and counted, never failing its batch
    huge = {"type": "track", "userId": "cy", "event": "product_viewed", "properties": {"pad": "x" * 40_000}}
    assert httpx.post(f"{base}/v1/batch", json={"batch": [huge]}, auth=(WRITE_KEY, "")).json() == {
        "success": True
    }
    assert names(eng, "cy") == ["cart_updated", "checkout_started"]
    assert "journey_events_rejected_total 3.0" in httpx.get(f"{base}/metrics").text


def test_a_wrong_key_is_401_and_a_bad_body_is_400_with_code_and_message_and_nothing_is_stored(
    served: tuple[str, Engine],
) -> None:
    base, eng = served
    wrong = httpx.post(f"{base}/v1/batch", json=batch_body(), auth=("nope", ""))
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_write_key"
    assert "write key" in wrong.json()["message"]
    auth = (WRITE_KEY, "")
    not_json = httpx.post(f"{base}/v1/batch", content=b"{not json", auth=auth)
    assert not_json.status_code == 400 and not_json.json()["code"] == "invalid_json"
    # a gzip bomb: 20 MiB of zeros in about 20 KiB, refused while inflating
    bomb = gzip.compress(b'{"batch": [' + b" " * (20 * 1024 * 1024) + b"]}")
    assert len(bomb) < 100_000
    big = httpx.post(f"{base}/v1/batch", content=bomb, headers={"Content-Encoding": "gzip"}, auth=auth)
    assert big.status_code == 400 and big.json()["code"] == "body_too_large"
    broken = httpx.post(
        f"{base}/v1/batch", content=b"\x1f\x8bnot gzip", headers={"Content-Encoding": "gzip"}, auth=auth
    )
    assert broken.status_code == 400 and set(broken.json()) == {"code", "message"}
    many = {"batch": [{"type": "track", "userId": "x", "event": "e"}] * 2501}
    assert httpx.post(f"{base}/v1/batch", json=many, auth=auth).json()["code"] == "batch_too_large"
    assert count_events(eng) == 0 and customer(eng, "cy") is None


def test_a_full_batch_of_2500_items_in_4_mib_is_taken(served: tuple[str, Engine]) -> None:
    base, eng = served
    pad = "x" * 1600
    items = [
        {
            "type": "track",
            "userId": f"u{i % 50}",
            "event": "product_viewed",
            "messageId": f"big-{i}",
            "timestamp": "2026-11-01T10:00:00Z",
            "properties": {"pad": pad},
        }
        for i in range(2500)
    ]
    body = json.dumps({"batch": items}).encode()
    assert len(body) > 4 * 1024 * 1024
    r = httpx.post(
        f"{base}/v1/batch",
        content=gzip.compress(body),
        headers={"Content-Encoding": "gzip"},
        auth=(WRITE_KEY, ""),
        timeout=60,
    )
    assert r.json() == {"success": True}
    assert count_events(eng) == 2500


def test_a_missing_timestamp_is_corrected_for_the_senders_clock(served: tuple[str, Engine]) -> None:
    base, eng = served
    # the sender's clock is an hour fast: it sent at 11:00 (its time) what happened at 10:30 (its time)
    body = {
        "batch": [
            {
                "type": "track",
                "userId": "dee",
                "event": "cart_updated",
                "originalTimestamp": "2099-01-01T10:30:00Z",
            }
        ],
        "sentAt": "2099-01-01T11:00:00Z",
    }
    before = datetime.now(UTC)
    assert httpx.post(f"{base}/v1/batch", json=body, auth=(WRITE_KEY, "")).json() == {"success": True}
    after = datetime.now(UTC)
    with eng.connect() as conn:
        ts = conn.execute(select(events.c.ts)).scalar_one()
    assert before.timestamp() - 1800 - 1 <= ts.timestamp() <= after.timestamp() - 1800 + 1


@pytest.mark.postgres
def test_a_stopped_database_answers_503_and_the_sdks_retry_stores_the_batch_once(
    pg_database: str, tmp_path: Path
) -> None:
    from tests.support.services import truncate

    admin = make_engine(pg_database)
    truncate(admin)
    url = make_url(pg_database)
    with Proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with journey_serve(through, tmp_path) as base:
            proxy.down()
            refused = httpx.post(f"{base}/v1/batch", json=batch_body(), auth=(WRITE_KEY, ""), timeout=30)
            assert refused.status_code == 503 and refused.headers["Retry-After"]
            assert set(refused.json()) == {"code", "message"}
            errors = Errors()
            sdk = segment(base, errors)
            for i in range(5):
                sdk.track(user_id="eve", event="cart_updated", message_id=f"eve-{i}", timestamp=T0)
            log = tmp_path / "serve.log"
            # the SDK's first attempt meets the outage (a second 503 in the access log) ...
            wait_for(
                lambda: log.read_text().count('"status": 503') >= 2, 30, "the SDK's attempt answered 503"
            )
            assert count_events(admin) == 0
            proxy.up()  # ... and its retry, once the database is back, stores the batch
            sdk.shutdown()
            assert errors.seen == []
    assert count_events(admin) == 5
    admin.dispose()
