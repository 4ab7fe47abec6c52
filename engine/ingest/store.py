"""Storing a batch of parsed events in one transaction (CONTRACT section 2): unknown customers
created, identifies merged by their time, track events inserted once per `message_id` and folded
into the summary, referral codes applied and credited, opt-outs recorded.

This is the portable form, which SQLite uses; PostgreSQL's fast form (COPY and a few set-based
statements) sits beside it in `engine.ingest._postgres`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, case, func, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from engine.consent import EVENT as OPT_OUT
from engine.consent import record_opt_outs
from engine.db import customer_ids, is_postgres, is_retryable, json_merge, least, upsert, write_tx
from engine.db.schema import customers
from engine.events import fold_summary, insert_events, record_events
from engine.ingest import _postgres
from engine.ingest.batch import merged_identifies, new_customers
from engine.ingest.identity import apply_merges, resolve
from engine.ingest.parse import KNOWN_TRAITS, ParsedEvent
from engine.ingest.referrals import apply_referral_codes, credit_referrals

#: attempts at a batch that hit a deadlock (concurrent batches of the same customers) or a
#: clashing random referral code
RETRIES = 4


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    identified: int = 0
    #: profiles merged into another (CONTRACT 9)
    merged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.identified += other.identified
        self.merged += other.merged
        self.rejected += other.rejected


def _ensure_customers(
    conn: Connection, batch: Sequence[ParsedEvent], received_at: datetime
) -> dict[str, int]:
    """Create unknown customers (one statement), and return external id -> internal id."""
    rows = [
        {
            "external_id": cid,
            "attributes": {},
            "salt": salt,
            "referral_code": code,
            "created_at": received_at,
            "first_seen_at": ts,
        }
        for cid, salt, code, ts in new_customers(batch)
    ]
    if rows:
        stmt = upsert(conn, customers)
        stmt = stmt.on_conflict_do_update(
            index_elements=["external_id"],
            set_={"first_seen_at": least(conn, customers.c.first_seen_at, stmt.excluded.first_seen_at)},
        )
        conn.execute(stmt, rows)
    return customer_ids(conn, [str(r["external_id"]) for r in rows])


def _apply_identifies(conn: Connection, items: Sequence[ParsedEvent]) -> None:
    """Merge traits: a newer identify overwrites, an older one only fills what is missing."""
    merged = merged_identifies(items)
    if not merged:
        return
    rows = []
    for ext, (ts, traits) in merged.items():
        row: dict[str, Any] = {
            "external_id": ext,
            "identified_at": ts,
            "attributes": {k: v for k, v in traits.items() if k not in KNOWN_TRAITS},
            "salt": 0,
            "created_at": ts,
        }
        for key in KNOWN_TRAITS:
            row[key] = traits.get(key)
        rows.append(row)
    stmt = upsert(conn, customers)
    x = stmt.excluded
    newer = customers.c.identified_at.is_(None) | (x.identified_at >= customers.c.identified_at)
    set_: dict[str, Any] = {
        "identified_at": case((newer, x.identified_at), else_=customers.c.identified_at),
        "attributes": case(
            (newer, json_merge(conn, customers.c.attributes, x.attributes)),
            else_=json_merge(conn, x.attributes, customers.c.attributes),
        ),
    }
    for key in KNOWN_TRAITS:
        col = customers.c[key]
        set_[key] = case((newer, func.coalesce(x[key], col)), else_=func.coalesce(col, x[key]))
    conn.execute(stmt.on_conflict_do_update(index_elements=["external_id"], set_=set_), rows)


def _fill_context_fields(conn: Connection, tracks: Sequence[ParsedEvent]) -> None:
    """A track's `context.timezone` and `context.locale` (Segment's shape) fill the customer's
    fields where they are empty; an identify's traits are what change them."""
    rows = {
        ev.customer_id: (ev.traits.get("timezone"), ev.traits.get("locale"))
        for ev in tracks
        if ev.traits and ("timezone" in ev.traits or "locale" in ev.traits)
    }
    if not rows:
        return
    conn.execute(
        customers.update()
        .where(customers.c.external_id == bindparam("cid"))
        .values(
            timezone=func.coalesce(customers.c.timezone, bindparam("tz")),
            locale=func.coalesce(customers.c.locale, bindparam("loc")),
        ),
        [{"cid": cid, "tz": tz, "loc": loc} for cid, (tz, loc) in rows.items()],
    )


def store_batch(
    engine: Engine,
    batch: list[ParsedEvent],
    received_at: datetime,
    *,
    durable: bool = True,
    payload: Any = None,
    skip: frozenset[int] = frozenset(),
) -> IngestResult:
    """Store one batch, again when a repeat can succeed: a random referral code clashed (with
    fresh codes), or a concurrent batch of the same customers deadlocked with this one."""
    for attempt in range(1, RETRIES + 1):
        try:
            return _store_batch_once(engine, batch, received_at, durable=durable, payload=payload, skip=skip)
        except IntegrityError as exc:
            if "referral_code" not in str(exc) or attempt == RETRIES:
                raise
            payload = _postgres.payload(engine, batch, skip)  # draw new codes
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == RETRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _store_batch_once(
    engine: Engine,
    batch: list[ParsedEvent],
    received_at: datetime,
    *,
    durable: bool = True,
    payload: Any = None,
    skip: frozenset[int] = frozenset(),
) -> IngestResult:
    """Store one batch in one transaction. `durable=False` (PostgreSQL) lets the commit return
    before its WAL is on disk: the caller commits a durable batch last, whose flush covers it."""
    result = IngestResult()
    pg_info: dict[Any, Any] | None = None
    try:
        with write_tx(engine) as conn:
            resolved, merges = resolve(conn, batch)
            if resolved is not batch:
                batch, payload = resolved, None
            identifies = [ev for ev in batch if ev.type == "identify"]
            tracks = [ev for ev in batch if ev.type == "track"]
            if is_postgres(conn):
                pg_info = conn.connection.info
                if not durable:
                    conn.execute(text("SET LOCAL synchronous_commit = off"))
                if payload is None:
                    payload = _postgres.payload(engine, batch, skip)
                n_stored, new_opt_outs = _postgres.store_batch(
                    conn, payload, received_at=received_at, opt_out=OPT_OUT
                )
            else:
                ids = _ensure_customers(conn, batch, received_at)
                _apply_identifies(conn, identifies)
                apply_referral_codes(conn, identifies, ids)
                rows = [
                    {
                        "customer_id": ids[ev.customer_id],
                        "name": ev.event,
                        "ts": ev.timestamp,
                        "received_at": received_at,
                        "message_id": ev.message_id,
                        "properties": ev.properties,
                    }
                    for ev in tracks
                ]
                n_stored = len(stored := insert_events(conn, rows))
                fold_summary(conn, stored)
                new_opt_outs = {r["message_id"] for r in stored if r["name"] == OPT_OUT and r["message_id"]}
            result.merged = apply_merges(conn, merges, received_at)
            _fill_context_fields(conn, tracks)
            record_events(conn, credit_referrals(conn, batch))
            # only an opt-out stored now: the same event sent again (a retry, a re-import) after the
            # customer re-subscribed must not unsubscribe them again
            record_opt_outs(
                conn,
                (
                    (ev.customer_id, ev.timestamp, ev.properties)
                    for ev in tracks
                    if ev.event == OPT_OUT and (ev.message_id is None or ev.message_id in new_opt_outs)
                ),
            )
    except BaseException:
        if pg_info is not None:
            pg_info.pop("ingest_stage", None)  # its temporary tables may have been rolled back
        raise
    result.stored = n_stored
    result.duplicates = len(tracks) - n_stored
    result.identified = len(identifies)
    return result
