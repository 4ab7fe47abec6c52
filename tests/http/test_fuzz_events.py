"""Fuzzing POST /v1/events: batches of good items mixed with mutated and random ones. The answer is
202 (never 500), every good item is stored, and every item not stored is rejected by its index."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import select

from engine.db.schema import events
from tests.ingest.test_fuzz import good_event
from tests.support.fuzz import fuzz, mutated_event, nasty_json
from tests.support.http import AUTH, Shop

ITEM = st.one_of(
    st.builds(lambda: (True, None)),
    st.tuples(st.just(False), mutated_event(good_event(0))),
    st.tuples(st.just(False), nasty_json),
)
BATCH = st.lists(ITEM, min_size=1, max_size=10)


def test_post_events_with_mutated_items_stores_every_good_one_and_rejects_the_others_by_index(
    shop: Shop,
) -> None:
    serial = iter(range(1, 10**9))

    def check(batch: list[tuple[bool, Any]]) -> None:
        items, good = [], {}
        for index, (is_good, item) in enumerate(batch):
            if is_good:
                n = next(serial)
                good[index] = f"good-{n}"
                item = good_event(n)
            items.append(item)
        body = json.dumps(items, allow_nan=True).encode("utf-8", "surrogatepass")
        r = shop.client.post("/v1/events", content=body, headers={**AUTH, "content-type": "application/json"})
        if b"NaN" in body or b"Infinity" in body:  # not JSON: the body is refused as a whole
            assert r.status_code == 400 and "not valid JSON" in r.json()["error"], r.text
            return
        assert r.status_code == 202, r.text
        answer = r.json()
        rejected = {x["index"] for x in answer["rejected"]}
        assert not rejected & set(good), answer
        assert answer["accepted"] + answer["duplicates"] + len(rejected) == len(items)
        with shop.engine.connect() as conn:
            stored = set(
                conn.execute(
                    select(events.c.message_id).where(events.c.message_id.in_(list(good.values())))
                ).scalars()
            )
        assert stored == set(good.values())

    assert fuzz("POST /v1/events batches", BATCH, 40)(check) == 40
