"""The generated shop: deterministic, sorted, valid, streamed, and with every behaviour in it."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from collections import Counter

import pytest

from engine.cli import main
from engine.ingest.parse import parse_event
from engine.sim.generate import CATALOGUE, ShopConfig, generate_events, write_events


def text(cfg: ShopConfig) -> str:
    buf = io.StringIO()
    write_events(cfg, buf)
    return buf.getvalue()


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not() -> None:
    a = hashlib.sha256(text(ShopConfig(customers=200, days=20, seed=7)).encode()).hexdigest()
    b = hashlib.sha256(text(ShopConfig(customers=200, days=20, seed=7)).encode()).hexdigest()
    c = hashlib.sha256(text(ShopConfig(customers=200, days=20, seed=8)).encode()).hexdigest()
    assert a == b != c


def test_events_are_sorted_valid_and_uniquely_identified() -> None:
    events = list(generate_events(ShopConfig(customers=400, days=30, seed=2)))
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    for e in events:
        parse_event(e)  # raises on anything CONTRACT section 2 refuses
    ids = [e["message_id"] for e in events]
    assert len(ids) == len(set(ids))


def test_the_shop_has_every_behaviour() -> None:
    events = list(generate_events(ShopConfig(customers=1500, days=60, seed=1)))
    names = Counter(e.get("event", "identify") for e in events)
    for name in (
        "signed_up",
        "product_viewed",
        "cart_updated",
        "cart_cleared",
        "order_placed",
        "survey_answered",
        "unsubscribed",
    ):
        assert names[name] > 0, name
    per_customer = Counter(e["customer_id"] for e in events)
    assert 6 <= len(events) / len(per_customer) <= 14  # about ten events each
    orders = Counter(e["customer_id"] for e in events if e.get("event") == "order_placed")
    assert any(n >= 2 for n in orders.values())  # repeat buyers
    carts = {e["customer_id"] for e in events if e.get("event") == "cart_updated"}
    assert carts - set(orders)  # cart abandoners
    scores = [e["properties"]["score"] for e in events if e.get("event") == "survey_answered"]
    assert any(s >= 9 for s in scores) and any(s <= 6 for s in scores)
    referred = [e for e in events if e["type"] == "identify" and "referred_by" in e["traits"]]
    codes = {e["traits"]["referral_code"] for e in events if e["type"] == "identify"}
    assert referred and all(e["traits"]["referred_by"] in codes for e in referred)
    start = ShopConfig(customers=1500, days=60, seed=1).begin.isoformat()[:10]
    assert any(e["timestamp"][:10] < start for e in events)  # past buyers, some of whom lapse
    assert {e["properties"]["product_id"] for e in events if e.get("event") == "product_viewed"} <= {
        p.product_id for p in CATALOGUE
    }


def test_events_stream_without_being_made_all_at_once() -> None:
    stream = generate_events(ShopConfig(customers=1_000_000, days=60, seed=1))
    first = list(itertools.islice(stream, 5))
    assert len(first) == 5 and all(json.dumps(e) for e in first)


def test_the_cli_writes_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--customers", "30", "--days", "5", "--seed", "4"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines and all(json.loads(line)["customer_id"] for line in lines)
    assert f"generated {len(lines)} events for 30 customers" in captured.err
