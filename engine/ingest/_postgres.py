"""PostgreSQL's fast form of the ingest batch (DESIGN: the faster form behind one small function;
engine/ingest/store.py has the portable form beside it, which SQLite uses).

A batch is COPYed into three temporary tables (new customers, merged identifies, track events),
then folded into the real tables by a few set-based statements, keyed on the customer's external
id so that no id has to travel back to Python:

1. the batch's known customers are looked up once, by external id, into a fourth table;
2. customers: the unknown ones are inserted with their identify merged in, and the identifies of
   known ones are merged by an upsert (a known customer without an identify is not touched);
3. events and event_summary: one statement moves back the earliest activity of the few customers
   that got late events, inserts the events (ON CONFLICT (message_id) DO NOTHING) and folds the
   rows it inserted into the summary per (customer, event).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from engine.events import PG_SUMMARY_FOLD
from engine.ingest.batch import merged_identifies, new_customers
from engine.ingest.parse import KNOWN_TRAITS, ParsedEvent
from engine.ingest.referrals import wanted_codes

_STAGE = (
    """CREATE TEMP TABLE IF NOT EXISTS ingest_new_customers (
  external_id varchar(255), salt integer, referral_code varchar(32), first_seen_at timestamptz
) ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS ingest_identify_rows (
  external_id varchar(255), identified_at timestamptz, email varchar(320), phone varchar(64),
  timezone varchar(64), locale varchar(32), first_name varchar(255), attributes jsonb,
  referral_code varchar(32)
) ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS ingest_track_rows (
  seq integer, external_id varchar(255), name varchar(128), ts timestamptz, message_id varchar(255),
  properties jsonb
) ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS ingest_batch (
  id bigint, external_id varchar(255), batch_first timestamptz, first_seen_at timestamptz
) ON COMMIT DELETE ROWS""",
)

CUSTOMER_COLUMNS = ("external_id", "salt", "referral_code", "first_seen_at")
IDENTIFY_COLUMNS = (
    "external_id",
    "identified_at",
    "email",
    "phone",
    "timezone",
    "locale",
    "first_name",
    "attributes",
    "referral_code",
)
TRACK_COLUMNS = ("seq", "external_id", "name", "ts", "message_id", "properties")

_NEWER = "(c.identified_at IS NULL OR excluded.identified_at >= c.identified_at)"
_FREE_CODE = "NOT EXISTS (SELECT 1 FROM customers o WHERE o.referral_code = {code})"
#: the batch's known customers, each looked up once: their id, and their earliest activity so far
_RESOLVE = """
INSERT INTO ingest_batch (id, external_id, batch_first, first_seen_at)
SELECT c.id, n.external_id, n.first_seen_at, c.first_seen_at
FROM ingest_new_customers n JOIN customers c ON c.external_id = n.external_id
"""

#: `created`: the batch's unknown customers, written once with their merged identify (a wanted
#: referral code no one owns replaces the random one), and added to ingest_batch; then the
#: identifies of known customers: a newer identify overwrites, an older one only fills what is
#: missing. A customer another batch created meanwhile is left to ON CONFLICT.
_CUSTOMERS = f"""
WITH created AS (
  INSERT INTO customers (external_id, attributes, salt, referral_code, created_at, first_seen_at,
                         identified_at, email, phone, timezone, locale, first_name)
  SELECT n.external_id, coalesce(i.attributes, '{{}}'::jsonb), n.salt,
         CASE WHEN i.referral_code IS NOT NULL AND {_FREE_CODE.format(code="i.referral_code")}
              THEN i.referral_code ELSE n.referral_code END,
         %(received_at)s, n.first_seen_at, i.identified_at, i.email, i.phone, i.timezone, i.locale, i.first_name
  FROM ingest_new_customers n LEFT JOIN ingest_identify_rows i ON i.external_id = n.external_id
  WHERE NOT EXISTS (SELECT 1 FROM ingest_batch b WHERE b.external_id = n.external_id)
  ORDER BY n.external_id
  ON CONFLICT (external_id) DO NOTHING
  RETURNING id, external_id, first_seen_at
), listed AS (
  INSERT INTO ingest_batch (id, external_id, batch_first, first_seen_at)
  SELECT id, external_id, first_seen_at, first_seen_at FROM created
)
INSERT INTO customers AS c (external_id, identified_at, email, phone, timezone, locale, first_name, attributes,
                            referral_code, salt, created_at)
SELECT external_id, identified_at, email, phone, timezone, locale, first_name, attributes, referral_code, 0,
       identified_at
FROM ingest_identify_rows i
WHERE NOT EXISTS (SELECT 1 FROM created WHERE created.external_id = i.external_id)
ORDER BY external_id
ON CONFLICT (external_id) DO UPDATE SET
  identified_at = CASE WHEN {_NEWER} THEN excluded.identified_at ELSE c.identified_at END,
  attributes = CASE WHEN {_NEWER} THEN c.attributes || excluded.attributes
                    ELSE excluded.attributes || c.attributes END,
  referral_code = CASE WHEN excluded.referral_code IS NOT NULL AND {_FREE_CODE.format(code="excluded.referral_code")}
                       THEN excluded.referral_code ELSE c.referral_code END,
""" + ",\n".join(
    f"  {col} = CASE WHEN {_NEWER} THEN coalesce(excluded.{col}, c.{col}) "
    f"ELSE coalesce(c.{col}, excluded.{col}) END"
    for col in ("email", "phone", "timezone", "locale", "first_name")
)

#: `batch`: every customer of the batch: ingest_batch, and the few another batch created
#: meanwhile (committed now: ON CONFLICT waited for it); `seen`: those whose earliest activity
#: moved back (late events), checked again on the row it updates, which a concurrent batch may
#: have moved back further; then the events, and their fold into event_summary
_INSERT_EVENTS = f"""
WITH missing AS MATERIALIZED (
  SELECT n.external_id, n.first_seen_at FROM ingest_new_customers n
  WHERE NOT EXISTS (SELECT 1 FROM ingest_batch b WHERE b.external_id = n.external_id)
), batch AS MATERIALIZED (
  SELECT id, external_id, batch_first, first_seen_at FROM ingest_batch
  UNION ALL
  SELECT c.id, m.external_id, m.first_seen_at, c.first_seen_at
  FROM missing m JOIN customers c ON c.external_id = m.external_id
), seen AS (
  UPDATE customers c SET first_seen_at = b.batch_first FROM batch b
  WHERE c.id = b.id AND (b.first_seen_at IS NULL OR b.batch_first < b.first_seen_at)
    AND (c.first_seen_at IS NULL OR b.batch_first < c.first_seen_at)
  RETURNING 1
), ins AS (
  INSERT INTO events (customer_id, name, ts, received_at, message_id, properties)
  SELECT b.id, t.name, t.ts, %(received_at)s, t.message_id, t.properties
  FROM ingest_track_rows t JOIN batch b ON b.external_id = t.external_id
  ORDER BY t.seq
  ON CONFLICT (message_id) DO NOTHING
  RETURNING id, customer_id, name, ts, message_id, properties
), agg AS (
  SELECT customer_id, name, min(ts) AS first_at, max(ts) AS last_at, count(*) AS cnt
  FROM ins GROUP BY customer_id, name
), latest AS (
  SELECT DISTINCT ON (customer_id, name) customer_id, name, id, properties
  FROM ins ORDER BY customer_id, name, ts DESC, id DESC
), up AS (
  INSERT INTO event_summary AS s (customer_id, name, first_at, last_at, count, last_event_id, last_properties)
  SELECT a.customer_id, a.name, a.first_at, a.last_at, a.cnt, l.id, l.properties
  FROM agg a JOIN latest l ON l.customer_id = a.customer_id AND l.name = a.name
  ORDER BY a.customer_id, a.name
  {PG_SUMMARY_FOLD}
  RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM up), (SELECT count(*) FROM seen),
       (SELECT coalesce(array_agg(message_id), '{{}}') FROM ins WHERE name = %(opt_out)s AND message_id IS NOT NULL)
"""


NULL = "\\N"


def _field(value: Any) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def copy_text(rows: Iterable[Sequence[Any]]) -> str:
    """Rows in COPY's text format: built on the thread that parses, sent in one write."""
    return "".join("\t".join([_field(v) for v in row]) + "\n" for row in rows)


def _text(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return _field(value)
    return value


def track_text(rows: Iterable[tuple[Any, ...]]) -> str:
    """copy_text for TRACK_COLUMNS rows, unrolled: the bulk of every batch."""
    return "".join(
        [
            f"{seq}\t{_text(ext)}\t{_text(name)}\t{ts.isoformat()}\t{NULL if mid is None else _text(mid)}\t"
            f"{_text(props)}\n"
            for seq, ext, name, ts, mid, props in rows
        ]
    )


def customer_text(rows: Iterable[tuple[str, int, str, datetime]]) -> str:
    """copy_text for CUSTOMER_COLUMNS rows, unrolled: one row per customer of every batch."""
    return "".join([f"{_text(ext)}\t{salt}\t{code}\t{ts.isoformat()}\n" for ext, salt, code, ts in rows])


@dataclass(frozen=True)
class Payload:
    """A batch ready for COPY, in the order of CUSTOMER_COLUMNS, IDENTIFY_COLUMNS (attributes as
    JSON text) and TRACK_COLUMNS (properties as JSON text)."""

    new_customers: str
    identifies: str
    tracks: str
    n_tracks: int


def _copy(cur: Any, table: str, columns: Sequence[str], data: str) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        copy.write(data)


#: one encoder for every call: json.dumps with arguments builds a new one each time
_std_dumps = json.JSONEncoder(separators=(",", ":")).encode


def dumps(value: Any) -> str:
    """JSON text of a decoded object, with orjson (a few times faster than the standard library);
    what orjson refuses (an integer beyond 64 bits) is written by the standard library."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return _std_dumps(value)


def store_batch(
    conn: Connection, payload: Payload, *, received_at: datetime, opt_out: str
) -> tuple[int, set[str]]:
    """Store one batch in the caller's transaction; returns how many track events were new, and
    the message ids of the new ones named `opt_out` (a known message id is not acted on twice).

    It talks to psycopg directly (COPY); its errors are raised as SQLAlchemy's, as any other
    statement's would be, so that callers tell a deadlock (retry) from a bad value (refuse)."""
    try:
        return _store_batch(conn, payload, received_at=received_at, opt_out=opt_out)
    except psycopg.Error as exc:
        raise DBAPIError.instance(None, None, exc, psycopg.Error, dialect=conn.dialect) from exc


def _store_batch(
    conn: Connection, payload: Payload, *, received_at: datetime, opt_out: str
) -> tuple[int, set[str]]:
    raw: Any = conn.connection.driver_connection
    params: dict[str, Any] = {"received_at": received_at, "opt_out": opt_out}
    with raw.cursor() as cur:
        # a temporary table lives as long as the session: create them once per connection (the
        # caller drops the flag when this transaction fails, which may have rolled them back)
        info = conn.connection.info
        if not info.get("ingest_stage"):
            for ddl in _STAGE:
                cur.execute(ddl)
            info["ingest_stage"] = True
        _copy(cur, "ingest_new_customers", CUSTOMER_COLUMNS, payload.new_customers)
        cur.execute(_RESOLVE)
        if payload.identifies:
            _copy(cur, "ingest_identify_rows", IDENTIFY_COLUMNS, payload.identifies)
        cur.execute(_CUSTOMERS, params)
        if not payload.n_tracks:
            return 0, set()
        _copy(cur, "ingest_track_rows", TRACK_COLUMNS, payload.tracks)
        cur.execute(_INSERT_EVENTS, params)
        row = cur.fetchone()
        return int(row[0]), set(row[3])


__all__ = [
    "CUSTOMER_COLUMNS",
    "IDENTIFY_COLUMNS",
    "TRACK_COLUMNS",
    "Payload",
    "copy_text",
    "customer_text",
    "dumps",
    "store_batch",
]


def identify_rows(items: Sequence[ParsedEvent]) -> list[tuple[Any, ...]]:
    """The batch's identifies as rows of engine.ingest._postgres.IDENTIFY_COLUMNS."""
    wanted = wanted_codes(items)
    rows = []
    for ext, (ts, traits) in merged_identifies(items).items():
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


def payload(engine: Engine, batch: list[ParsedEvent], skip: frozenset[int] = frozenset()) -> Any:
    """What the database's fast path needs ready-made (PostgreSQL: COPY text), else None. The
    track events at the positions `skip` are left out (a copy of a message id being stored by
    another batch): they are duplicates, but still count as the customer's activity."""
    if engine.dialect.name != "postgresql":
        return None
    identifies = [ev for ev in batch if ev.type == "identify"]
    tracks = [
        (i, ev.customer_id, ev.event, ev.timestamp, ev.message_id, dumps(ev.properties))
        for i, ev in enumerate(
            ev for pos, ev in enumerate(batch) if ev.type == "track" and (not skip or pos not in skip)
        )
    ]
    return Payload(
        new_customers=customer_text(new_customers(batch)),
        identifies=copy_text(identify_rows(identifies)),
        tracks=track_text(tracks),
        n_tracks=len(tracks),
    )
