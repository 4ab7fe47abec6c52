"""POST /v1/events with items that once made it answer 500 and store nothing: that item is
rejected with its index and reason, the others of the batch are stored (both databases)."""

from __future__ import annotations

import pytest

from tests.ingest.test_bad_input import BAD, good
from tests.support.http import AUTH, Shop

DEEP = (
    '{"type":"track","customer_id":"x","event":"e","timestamp":"2026-11-01T10:00:00Z","properties":{"p":'
    + "[" * 5000
    + "]" * 5000
    + "}}"
)


@pytest.mark.parametrize("kind", [*BAD, "too deep to decode"])
def test_a_bad_item_is_rejected_alone_and_the_others_are_stored(shop: Shop, kind: str) -> None:
    item, words = BAD.get(kind, (DEEP, "nested deeper"))
    body = "[" + ",".join([good(1), item, good(2)]) + "]"
    r = shop.client.post(
        "/v1/events",
        content=body.encode("utf-8", "surrogatepass"),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["accepted"] == 2
    ((rejected),) = answer["rejected"]
    assert rejected["index"] == 1
    assert words in rejected["reason"] or (
        kind == "1e400" and "not a number JSON can carry" in rejected["reason"]
    )
    assert shop.count("viewed") == 2


def test_a_body_that_is_one_object_too_deep_to_decode_is_rejected_as_item_0(shop: Shop) -> None:
    r = shop.client.post(
        "/v1/events", content=DEEP.encode(), headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 202, r.text
    assert r.json() == {
        "accepted": 0,
        "duplicates": 0,
        "rejected": [{"index": 0, "reason": "nested deeper than 32 levels"}],
    }
