"""What a batch asks of the database, worked out in Python the same way for both forms of
storage: the customers it may create, its identifies merged per customer in time order."""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engine.ingest.parse import ParsedEvent
from engine.ingest.referrals import new_referral_codes


def new_customers(batch: Sequence[ParsedEvent]) -> list[tuple[str, int, str, datetime]]:
    """(external id, salt, referral code, earliest time) of every customer in the batch: what a
    customer unknown so far is created with."""
    earliest: dict[str, datetime] = {}
    for ev in batch:
        seen = earliest.get(ev.customer_id)
        if seen is None or ev.timestamp < seen:
            earliest[ev.customer_id] = ev.timestamp
    rng = random.Random(secrets.randbits(64))
    codes = new_referral_codes(len(earliest), rng)
    return [
        (cid, stable_salt(cid), code, ts) for (cid, ts), code in zip(earliest.items(), codes, strict=True)
    ]


def stable_salt(external_id: str) -> int:
    """A customer's split salt (`split:` buckets, holdouts), from its external id: the same
    customer lands in the same variant in every database, so a replay or a demo with the same
    seed gives the same split."""
    digest = hashlib.blake2b(external_id.encode("utf-8"), digest_size=4, person=b"journey.salt").digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def merged_identifies(items: Sequence[ParsedEvent]) -> dict[str, tuple[datetime, dict[str, Any]]]:
    """Per customer, the batch's identifies merged in time order: (newest time, traits)."""
    merged: dict[str, tuple[datetime, dict[str, Any]]] = {}
    for ev in sorted(items, key=lambda e: e.timestamp):
        traits = {k: v for k, v in ev.traits.items() if k not in ("referral_code", "referred_by")}
        if ev.customer_id in merged:
            _, prev = merged[ev.customer_id]
            merged[ev.customer_id] = (ev.timestamp, {**prev, **traits})
        else:
            merged[ev.customer_id] = (ev.timestamp, traits)
    return merged
