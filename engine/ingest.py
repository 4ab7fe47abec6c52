"""Event ingest (CONTRACT section 2): JSON lines or decoded objects in, customers, events and the
per-(customer, event) summary out, in batches of a few statements each.

A bad item is reported with where and what, and skipped; the good items around it are stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import random
import secrets
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from sqlalchemy import Connection, Engine, bindparam, case, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from engine.db import (
    greatest,
    insert_ignore,
    is_postgres,
    is_retryable,
    json_merge,
    least,
    upsert,
    write_tx,
)
from engine.errors import IngestError
from engine.optouts import EVENT as OPT_OUT
from engine.optouts import record_opt_outs
from engine.schema import JSONType, customers, event_summary, events

KNOWN_TRAITS = ("email", "phone", "timezone", "locale", "first_name")
REFERRAL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
#: 32**10 codes: a clash is rare, and a batch that meets one is retried with fresh codes
CODE_LENGTH = 10
#: the product's own events: ingest accepts them too (imports), they are what reports read
RESERVED_EVENTS = (
    "email_sent",
    "email_opened",
    "email_clicked",
    "unsubscribed",
    "survey_answered",
    "referral_clicked",
    "referral_converted",
)


#: not frozen: ingest makes one per line, and a frozen dataclass sets each field the slow way
@dataclass(slots=True)
class ParsedEvent:
    type: str
    customer_id: str
    timestamp: datetime
    event: str | None
    message_id: str | None
    traits: dict[str, Any]
    properties: dict[str, Any]


@dataclass(frozen=True)
class InternalEvent:
    """An event the product itself records (email_sent, survey_answered, …)."""

    customer_id: int
    name: str
    ts: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = None


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    identified: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.identified += other.identified
        self.rejected += other.rejected


def parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        raise IngestError("'timestamp' must be an ISO 8601 string like 2026-11-01T10:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)  # reads a trailing Z as UTC
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("z", "+00:00"))
        except ValueError:
            raise IngestError(f"'timestamp' {value!r} is not ISO 8601 (like 2026-11-01T10:00:00Z)") from None
    if parsed.tzinfo is UTC:
        return parsed
    if parsed.tzinfo is None:
        raise IngestError(f"'timestamp' {value!r} has no time zone: add Z or +01:00")
    return parsed.astimezone(UTC)


def parse_event(obj: object, *, check_nul: bool = True) -> ParsedEvent:
    """Validate one decoded event; raise IngestError with a reason a person can act on.

    `check_nul=False` skips the search for NUL characters, for a caller that knows the JSON text
    holds no `\\u0000` escape (the only way a NUL can reach a decoded value).
    """
    if not isinstance(obj, dict):
        raise IngestError(f"an event is a JSON object, not {type(obj).__name__}")
    kind = obj.get("type")
    if kind not in ("identify", "track"):
        raise IngestError(
            "'type' must be 'identify' or 'track'" + (f", not {kind!r}" if kind else " (missing)")
        )
    cid = obj.get("customer_id")
    if type(cid) is not str:
        if isinstance(cid, bool) or not isinstance(cid, str | int):
            raise IngestError("'customer_id' is required: a non-empty string")
        cid = str(cid)
    if not cid:
        raise IngestError("'customer_id' is required: a non-empty string")
    if len(cid) > 255:
        raise IngestError("'customer_id' is longer than 255 characters")
    ts = parse_timestamp(obj.get("timestamp"))
    name = obj.get("event")
    if kind == "track":
        if not isinstance(name, str) or not name.strip():
            raise IngestError("a track event needs 'event': the event name, like 'order_placed'")
        if len(name) > 128:
            raise IngestError("'event' is longer than 128 characters")
    else:
        name = None
    mid = obj.get("message_id")
    if mid is not None and (not isinstance(mid, str) or not mid or len(mid) > 255):
        raise IngestError("'message_id' must be a non-empty string of at most 255 characters")
    traits = obj.get("traits", {}) if kind == "identify" else obj.get("context_traits", {})
    props = obj.get("properties", {})
    if traits is None:
        traits = {}
    if props is None:
        props = {}
    if not isinstance(traits, dict):
        raise IngestError("'traits' must be a JSON object")
    if not isinstance(props, dict):
        raise IngestError("'properties' must be a JSON object")
    if check_nul and "\\u0000" in json.dumps(
        [traits, props]
    ):  # JSON escapes NUL; PostgreSQL refuses it in text
        raise IngestError("a trait or property holds a NUL character (\\u0000), which databases cannot store")
    if kind == "identify" and obj.get("properties"):
        raise IngestError("an identify carries 'traits', not 'properties'")
    if traits:
        _check_traits(traits)
    return ParsedEvent(
        type=kind,
        customer_id=cid,
        timestamp=ts,
        event=name,
        message_id=mid,
        traits=dict(traits),
        properties=dict(props),
    )


def _check_traits(traits: dict[str, Any]) -> None:
    tz = traits.get("timezone")
    if tz is not None:
        if not isinstance(tz, str):
            raise IngestError("trait 'timezone' must be a name like 'Europe/Berlin'")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise IngestError(
                f"trait 'timezone' {tz!r} is not a known time zone (like 'Europe/Berlin')"
            ) from None
    for key in ("email", "phone", "locale", "first_name", "referral_code", "referred_by"):
        value = traits.get(key)
        if value is not None and not isinstance(value, str):
            raise IngestError(f"trait '{key}' must be a string")


def new_referral_code(rng: random.Random | None = None) -> str:
    if rng is not None:
        return "".join(rng.choices(REFERRAL_ALPHABET, k=CODE_LENGTH))
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(CODE_LENGTH))


#: base32 has 32 symbols like REFERRAL_ALPHABET: 5 random bits make one character of a code
_FROM_BASE32 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", REFERRAL_ALPHABET)


def new_referral_codes(n: int, rng: random.Random) -> list[str]:
    """`n` codes at once (a batch's new customers): one random draw, not one per character."""
    chunks = (n * CODE_LENGTH + 7) // 8  # base32 turns 5 bytes into 8 characters
    text = base64.b32encode(rng.randbytes(5 * chunks)).decode("ascii").translate(_FROM_BASE32)
    return [text[i : i + CODE_LENGTH] for i in range(0, n * CODE_LENGTH, CODE_LENGTH)]


# ------------------------------------------------------------------------------------- batches


def _new_customers(batch: Sequence[ParsedEvent]) -> list[tuple[str, int, str, datetime]]:
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
        for cid, salt, code, ts in _new_customers(batch)
    ]
    if rows:
        stmt = upsert(conn, customers)
        stmt = stmt.on_conflict_do_update(
            index_elements=["external_id"],
            set_={"first_seen_at": least(conn, customers.c.first_seen_at, stmt.excluded.first_seen_at)},
        )
        conn.execute(stmt, rows)
    return _ids(conn, [str(r["external_id"]) for r in rows])


def _ids(conn: Connection, external_ids: Sequence[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for i in range(0, len(external_ids), 5000):
        chunk = external_ids[i : i + 5000]
        for ext, cid in conn.execute(
            select(customers.c.external_id, customers.c.id).where(customers.c.external_id.in_(chunk))
        ):
            ids[ext] = cid
    return ids


def _merged_identifies(items: Sequence[ParsedEvent]) -> dict[str, tuple[datetime, dict[str, Any]]]:
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


def _wanted_codes(items: Sequence[ParsedEvent]) -> dict[str, str]:
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


def _apply_identifies(conn: Connection, items: Sequence[ParsedEvent]) -> None:
    """Merge traits: a newer identify overwrites, an older one only fills what is missing."""
    merged = _merged_identifies(items)
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


def _apply_referral_codes(conn: Connection, items: Sequence[ParsedEvent], ids: dict[str, int]) -> None:
    """A `referral_code` trait becomes the customer's code when no one else owns it."""
    wanted = _wanted_codes(items)
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


def _identify_rows(items: Sequence[ParsedEvent]) -> list[tuple[Any, ...]]:
    """The batch's identifies as rows of engine.ingest_pg.IDENTIFY_COLUMNS."""
    from engine.ingest_pg import dumps

    wanted = _wanted_codes(items)
    rows = []
    for ext, (ts, traits) in _merged_identifies(items).items():
        attributes = {k: v for k, v in traits.items() if k not in KNOWN_TRAITS}
        rows.append(
            (
                ext,
                ts,
                traits.get("email"),
                traits.get("phone"),
                traits.get("timezone"),
                traits.get("locale"),
                traits.get("first_name"),
                dumps(attributes),
                wanted.get(ext),
            )
        )
    return rows


def _referrals(conn: Connection, items: Sequence[ParsedEvent]) -> list[InternalEvent]:
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
    ids = _ids(conn, list(wanted))
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


def _insert_events(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert event rows, skipping known message ids; returns the rows actually stored (with id)."""
    stored: list[dict[str, Any]] = []
    keyed: dict[str, dict[str, Any]] = {}
    plain: list[dict[str, Any]] = []
    for r in rows:
        if r["message_id"] is None:
            plain.append(r)
        else:
            keyed.setdefault(r["message_id"], r)  # a duplicate inside one batch: the first wins
    if keyed:
        stmt = insert_ignore(conn, events, ["message_id"]).returning(events.c.id, events.c.message_id)
        for rid, mid in conn.execute(stmt, list(keyed.values())):
            stored.append({**keyed[mid], "id": rid})
    if plain:
        stmt = events.insert().returning(events.c.id, sort_by_parameter_order=True)
        for (rid,), row in zip(conn.execute(stmt, plain).all(), plain, strict=True):
            stored.append({**row, "id": rid})
    return stored


def _update_summary(conn: Connection, stored: Sequence[dict[str, Any]]) -> None:
    """Fold stored events into event_summary: one upsert per batch, order-independent."""
    agg: dict[tuple[int, str], dict[str, Any]] = {}
    for r in stored:
        key = (r["customer_id"], r["name"])
        cur = agg.get(key)
        if cur is None:
            agg[key] = {
                "customer_id": r["customer_id"],
                "name": r["name"],
                "first_at": r["ts"],
                "last_at": r["ts"],
                "count": 1,
                "last_event_id": r["id"],
                "last_properties": r["properties"],
            }
            continue
        cur["count"] += 1
        cur["first_at"] = min(cur["first_at"], r["ts"])
        if (r["ts"], r["id"]) > (cur["last_at"], cur["last_event_id"]):
            cur["last_at"], cur["last_event_id"], cur["last_properties"] = r["ts"], r["id"], r["properties"]
    if not agg:
        return
    stmt = upsert(conn, event_summary)
    x = stmt.excluded
    s = event_summary.c
    newer = (x.last_at > s.last_at) | ((x.last_at == s.last_at) & (x.last_event_id > s.last_event_id))
    stmt = stmt.on_conflict_do_update(
        index_elements=["customer_id", "name"],
        set_={
            "first_at": least(conn, s.first_at, x.first_at),
            "last_at": greatest(conn, s.last_at, x.last_at),
            "count": s.count + x.count,
            "last_event_id": case((newer, x.last_event_id), else_=s.last_event_id),
            "last_properties": case((newer, x.last_properties), else_=s.last_properties),
        },
    )
    rows = sorted(agg.values(), key=lambda r: (r["customer_id"], r["name"]))
    conn.execute(stmt, rows)


def record_events(conn: Connection, rows: Sequence[InternalEvent]) -> int:
    """Record events the product emits, in the caller's transaction; idempotent on message_id."""
    if not rows:
        return 0
    event_rows = [
        {
            "customer_id": r.customer_id,
            "name": r.name,
            "ts": r.ts,
            "received_at": r.ts,
            "message_id": r.message_id,
            "properties": r.properties,
        }
        for r in rows
    ]
    stored = _insert_events(conn, event_rows)
    _update_summary(conn, stored)
    return len(stored)


def _payload(engine: Engine, batch: list[ParsedEvent], skip: frozenset[int] = frozenset()) -> Any:
    """What the database's fast path needs ready-made (PostgreSQL: COPY text), else None. The
    track events at the positions `skip` are left out (a copy of a message id being stored by
    another batch): they are duplicates, but still count as the customer's activity."""
    if engine.dialect.name != "postgresql":
        return None
    from engine import ingest_pg

    identifies = [ev for ev in batch if ev.type == "identify"]
    dumps = ingest_pg.dumps
    tracks = [
        (i, ev.customer_id, ev.event, ev.timestamp, ev.message_id, dumps(ev.properties))
        for i, ev in enumerate(
            ev for pos, ev in enumerate(batch) if ev.type == "track" and (not skip or pos not in skip)
        )
    ]
    return ingest_pg.Payload(
        new_customers=ingest_pg.customer_text(_new_customers(batch)),
        identifies=ingest_pg.copy_text(_identify_rows(identifies)),
        tracks=ingest_pg.track_text(tracks),
        n_tracks=len(tracks),
    )


def _store_batch(
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
            return _store_batch_once(engine, batch, received_at, durable=durable, payload=payload)
        except IntegrityError as exc:
            if "referral_code" not in str(exc) or attempt == RETRIES:
                raise
            payload = _payload(engine, batch, skip)  # draw new codes
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
) -> IngestResult:
    """Store one batch in one transaction. `durable=False` (PostgreSQL) lets the commit return
    before its WAL is on disk: the caller commits a durable batch last, whose flush covers it."""
    result = IngestResult()
    identifies = [ev for ev in batch if ev.type == "identify"]
    tracks = [ev for ev in batch if ev.type == "track"]
    pg_info: dict[Any, Any] | None = None
    try:
        with write_tx(engine) as conn:
            if is_postgres(conn):
                from engine import ingest_pg

                pg_info = conn.connection.info
                if not durable:
                    conn.execute(text("SET LOCAL synchronous_commit = off"))
                if payload is None:
                    payload = _payload(engine, batch)
                n_stored, new_opt_outs = ingest_pg.store_batch(
                    conn, payload, received_at=received_at, opt_out=OPT_OUT
                )
            else:
                ids = _ensure_customers(conn, batch, received_at)
                _apply_identifies(conn, identifies)
                _apply_referral_codes(conn, identifies, ids)
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
                n_stored = len(stored := _insert_events(conn, rows))
                _update_summary(conn, stored)
                new_opt_outs = {r["message_id"] for r in stored if r["name"] == OPT_OUT and r["message_id"]}
            record_events(conn, _referrals(conn, batch))
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


#: seconds between the interpreter's thread switches while writer threads run (default 0.005)
WRITER_SWITCH_INTERVAL = 0.0001
#: writer threads on PostgreSQL, each with a connection (SQLite has one writer: one thread).
#: On two cores, 400,000 lines took 20-26 s with one, 14-16 s with two, 13-15 s with three or four:
#: while one server process folds a batch, another waits for its commit or for the parser.
PG_WRITERS = 3
#: attempts at a batch that hit a deadlock (concurrent batches of the same customers) or a
#: clashing random referral code
RETRIES = 4


def writers_for(engine: Engine) -> int:
    """How many batches are stored at once: on PostgreSQL, while one server process folds a
    batch, another folds the next one; SQLite takes one writer at a time."""
    return PG_WRITERS if engine.dialect.name == "postgresql" else 1


class _Writer:
    """Stores batches on threads of their own, so that parsing the next batch overlaps with the
    database's work on the previous ones (a failure is raised to the caller).

    Batches may commit in any order: what a batch does is order-independent by design (the
    summary keeps the latest time, not the latest arrival; an identify merges by its time). One
    thing is not: which copy of a message id is stored. So an event whose message id is in a
    batch still being stored is left out of the next batch as a duplicate, and the first copy
    in the file wins, as in one batch. Two batches of the same customers may deadlock on
    PostgreSQL: the one rolled back is stored again. When a batch fails, those already handed
    to other threads may still be stored, as if they had come first; ingesting the file again
    stores what is missing (message ids make it idempotent)."""

    def __init__(self, engine: Engine, received_at: datetime, threads: int = 1) -> None:
        self.engine = engine
        self.received_at = received_at
        self.total = IngestResult()
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.queue: queue.Queue[tuple[int, list[ParsedEvent], frozenset[int], Any] | None] = queue.Queue(
            maxsize=threads
        )
        #: message id -> the number of the batch being stored that holds it (several threads only)
        self.in_flight: dict[str, int] | None = {} if threads > 1 else None
        self.batches = 0
        # The parsing thread holds the interpreter almost all the time; each time the database
        # answers, a writer waits for it, by default up to 5 ms. A batch makes a dozen round trips,
        # so a writer spent a third of its time waiting: hand over more often while they run.
        self.switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(WRITER_SWITCH_INTERVAL)
        self.threads = [
            threading.Thread(target=self._run, name=f"journey-ingest-writer-{i + 1}", daemon=True)
            for i in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            number, batch, skip, payload = item
            try:
                if self.error is None:  # else drain: the caller sees the error at its next put
                    result = _store_batch(
                        self.engine, batch, self.received_at, durable=False, payload=payload, skip=skip
                    )
                    with self.lock:
                        self.total.add(result)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self.error = exc
            finally:
                self._landed(number, batch)

    def _in_flight_copies(self, number: int, batch: list[ParsedEvent]) -> frozenset[int]:
        """Positions of the track events whose message id a batch still being stored holds."""
        in_flight = self.in_flight
        if in_flight is None:
            return frozenset()
        skip: list[int] = []
        with self.lock:
            for pos, ev in enumerate(batch):
                mid = ev.message_id
                if mid is not None and ev.type == "track" and in_flight.setdefault(mid, number) != number:
                    skip.append(pos)
        return frozenset(skip)

    def _landed(self, number: int, batch: list[ParsedEvent]) -> None:
        in_flight = self.in_flight
        if in_flight is None:
            return
        with self.lock:
            for ev in batch:
                if ev.message_id is not None and in_flight.get(ev.message_id) == number:
                    del in_flight[ev.message_id]

    def put(self, batch: list[ParsedEvent]) -> None:
        """Hand a batch over; its COPY text is built here, on the caller's thread, so that the
        writers hold the interpreter only briefly while the database works."""
        self._raise()
        self.batches += 1
        skip = self._in_flight_copies(self.batches, batch)
        self.queue.put((self.batches, batch, skip, _payload(self.engine, batch, skip)))

    def close(self) -> IngestResult:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        sys.setswitchinterval(self.switch_interval)
        self._raise()
        return self.total

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


def _ingest(
    engine: Engine,
    parsed: Iterable[tuple[int, ParsedEvent | IngestError]],
    *,
    received_at: datetime,
    chunk_size: int,
    on_error: Callable[[int, IngestError], None] | None = None,
) -> IngestResult:
    """Store parsed events in batches; each IngestError is counted (and reported) with its index.

    Full batches go to a writer thread as soon as the next one is full; the last batch is stored
    here, durably, once the writer is done, so that when this returns everything is on disk.
    """
    rejected: list[tuple[int, str]] = []
    writer: _Writer | None = None
    held: list[ParsedEvent] | None = None  # a full batch, kept until we know whether it is the last
    batch: list[ParsedEvent] = []
    try:
        for index, item in parsed:
            if isinstance(item, IngestError):
                rejected.append((index, str(item)))
                if on_error is not None:
                    on_error(index, item)
                continue
            batch.append(item)
            if len(batch) >= chunk_size:
                if held is not None:
                    if writer is None:
                        writer = _Writer(engine, received_at, writers_for(engine))
                    writer.put(held)
                held, batch = batch, []
    finally:
        total = writer.close() if writer is not None else IngestResult()
    if held is not None:
        total.add(_store_batch(engine, held, received_at, durable=not batch))
    if batch:
        total.add(_store_batch(engine, batch, received_at))
    total.rejected = rejected + total.rejected
    return total


def _parse(obj: object, *, check_nul: bool = True) -> ParsedEvent | IngestError:
    try:
        return parse_event(obj, check_nul=check_nul)
    except IngestError as exc:
        return exc


def ingest_events(
    engine: Engine,
    items: Iterable[object],
    *,
    received_at: datetime,
    start_index: int = 0,
    chunk_size: int = 2000,
) -> IngestResult:
    """Ingest decoded events; each bad item is rejected with its index and reason."""
    parsed = ((index, _parse(item)) for index, item in enumerate(items, start=start_index))
    return _ingest(engine, parsed, received_at=received_at, chunk_size=chunk_size)


#: orjson decodes an integer beyond 64 bits as a float: from this size on, decode exactly
_HUGE = 2.0**63


def _rounded(value: Any) -> bool:
    """Whether a decoded value holds a float as large as a 64-bit integer: what orjson makes of
    an integer literal beyond 64 bits (a float literal that large decodes the same either way)."""
    if type(value) is dict:
        value = value.values()
    elif type(value) is not list:
        return type(value) is float and not -_HUGE < value < _HUGE
    for v in value:
        kind = type(v)
        if kind is float:
            if not -_HUGE < v < _HUGE:
                return True
        elif (kind is dict or kind is list) and _rounded(v):
            return True
    return False


def no_json_constants(name: str) -> Any:
    """`parse_constant` for json.loads: NaN and Infinity are not JSON, and a JSON column cannot
    store them."""
    raise ValueError(f"{name} is not a JSON number")


def loads(line: str) -> Any:
    """One JSON text, decoded with orjson, a few times faster than the standard library. What
    orjson refuses, and an event where it rounded a number (an integer beyond 64 bits), is decoded
    by the standard library, which keeps such numbers exact and words the error for a bad line.
    NaN and Infinity are refused: they are not JSON, and a JSON column cannot store them."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line, parse_constant=no_json_constants)
    if type(obj) is dict and (
        _rounded(obj.get("properties"))
        or _rounded(obj.get("traits"))
        or _rounded(obj.get("context_traits"))
        or type(obj.get("customer_id")) is float
    ):
        return json.loads(line, parse_constant=no_json_constants)
    return obj


def _parse_lines(
    stream: TextIO, progress: Callable[[int], None] | None
) -> Iterator[tuple[int, ParsedEvent | IngestError]]:
    for number, line in enumerate(stream, start=1):
        if progress is not None:
            progress(len(line.encode()))
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except json.JSONDecodeError as exc:
            yield number, IngestError(f"not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        except ValueError as exc:
            yield number, IngestError(f"not valid JSON: {exc}")
            continue
        # JSON text can carry a NUL only as the escape \u0000: without one, skip the search
        yield number, _parse(obj, check_nul="\\u0000" in line)


def ingest_file(
    engine: Engine,
    stream: TextIO,
    *,
    name: str,
    received_at: datetime,
    on_error: Callable[[str], None],
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 2000,
) -> IngestResult:
    """Ingest JSON lines; a bad line is reported as `NAME:LINE: reason`, skipped and counted."""
    return _ingest(
        engine,
        _parse_lines(stream, progress),
        received_at=received_at,
        chunk_size=chunk_size,
        on_error=lambda number, exc: on_error(f"{name}:{number}: {exc}"),
    )


__all__ = [
    "RESERVED_EVENTS",
    "IngestResult",
    "InternalEvent",
    "JSONType",
    "ParsedEvent",
    "ingest_events",
    "ingest_file",
    "no_json_constants",
    "parse_event",
    "record_events",
]
