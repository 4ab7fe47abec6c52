"""Referral codes: every customer gets one, a `referral_code` trait may choose it, and a
`referred_by: CODE` on a customer's first identify or first order credits the code's owner once
(`referral_converted`)."""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, select

from engine.db import customer_ids
from engine.db.schema import customers
from engine.events import InternalEvent
from engine.ingest.parse import ParsedEvent

REFERRAL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

#: 32**10 codes: a clash is rare, and a batch that meets one is retried with fresh codes
CODE_LENGTH = 10

#: base32 has 32 symbols like REFERRAL_ALPHABET: 5 random bits make one character of a code
_FROM_BASE32 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", REFERRAL_ALPHABET)


def new_referral_codes(n: int, rng: random.Random) -> list[str]:
    """`n` codes at once (a batch's new customers): one random draw, not one per character."""
    chunks = (n * CODE_LENGTH + 7) // 8  # base32 turns 5 bytes into 8 characters
    text = base64.b32encode(rng.randbytes(5 * chunks)).decode("ascii").translate(_FROM_BASE32)
    return [text[i : i + CODE_LENGTH] for i in range(0, n * CODE_LENGTH, CODE_LENGTH)]


def wanted_codes(items: Sequence[ParsedEvent]) -> dict[str, str]:
    """external id -> the `referral_code` trait it asks for; a code asked for by two customers of
    the batch goes to the first."""
    wanted = {ev.customer_id: ev.traits["referral_code"] for ev in items if ev.traits.get("referral_code")}
    out: dict[str, str] = {}
    claimed: set[str] = set()
    for ext, code in wanted.items():
        if code not in claimed:
            claimed.add(code)
            out[ext] = code
    return out


def apply_referral_codes(conn: Connection, items: Sequence[ParsedEvent], ids: dict[str, int]) -> None:
    """A `referral_code` trait becomes the customer's code when no one else owns it."""
    wanted = wanted_codes(items)
    if not wanted:
        return
    taken = {
        code
        for (code,) in conn.execute(
            select(customers.c.referral_code).where(customers.c.referral_code.in_(set(wanted.values())))
        )
    }
    updates = [{"b_id": ids[ext], "b_code": code} for ext, code in wanted.items() if code not in taken]
    if updates:
        conn.execute(
            customers.update()
            .where(customers.c.id == bindparam("b_id"))
            .values(referral_code=bindparam("b_code")),
            updates,
        )


def credit_referrals(conn: Connection, items: Sequence[ParsedEvent]) -> list[InternalEvent]:
    """`referred_by: CODE` on a first identify or first order credits the code's owner, once."""
    wanted: dict[str, tuple[str, datetime]] = {}
    for ev in items:
        code = ev.traits.get("referred_by") if ev.type == "identify" else None
        if ev.type == "track" and ev.event == "order_placed":
            code = ev.properties.get("referred_by")
        if isinstance(code, str) and code:
            ext = ev.customer_id
            if ext not in wanted or ev.timestamp < wanted[ext][1]:
                wanted[ext] = (code, ev.timestamp)
    if not wanted:
        return []
    ids = customer_ids(conn, list(wanted))
    candidates = {ids[ext]: found for ext, found in wanted.items()}
    owners = {
        code: (owner, ext)
        for code, owner, ext in conn.execute(
            select(customers.c.referral_code, customers.c.id, customers.c.external_id).where(
                customers.c.referral_code.in_({c for c, _ in candidates.values()})
            )
        )
    }
    already = {
        cid
        for (cid,) in conn.execute(
            select(customers.c.id).where(customers.c.id.in_(candidates), customers.c.referred_by.is_not(None))
        )
    }
    out: list[InternalEvent] = []
    ext_of = {v: k for k, v in ids.items()}
    for cid, (code, ts) in candidates.items():
        owner = owners.get(code)
        if owner is None or owner[0] == cid or cid in already:
            continue
        conn.execute(
            customers.update()
            .where(customers.c.id == cid, customers.c.referred_by.is_(None))
            .values(referred_by=owner[0])
        )
        out.append(
            InternalEvent(
                customer_id=owner[0],
                name="referral_converted",
                ts=ts,
                properties={"referred_customer": ext_of[cid], "code": code},
                message_id=f"referral_converted:{cid}",
            )
        )
    return out
