"""PostgreSQL's fast form of the ingest batch: COPY into a temporary table, then one INSERT … SELECT
per target (DESIGN: the faster form behind one small function; engine/ingest.py has the portable
form beside it, which SQLite uses)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

_CUSTOMERS_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS ingest_customers (
  external_id varchar(255), salt integer, referral_code varchar(32), created_at timestamptz,
  first_seen_at timestamptz) ON COMMIT DELETE ROWS
"""
_EVENTS_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS ingest_events (
  customer_id bigint, name varchar(128), ts timestamptz, received_at timestamptz, message_id varchar(255),
  properties jsonb) ON COMMIT DELETE ROWS
"""

_UPSERT_CUSTOMERS = """
INSERT INTO customers (external_id, attributes, salt, referral_code, created_at, first_seen_at)
SELECT external_id, '{}'::jsonb, salt, referral_code, created_at, first_seen_at FROM ingest_customers
ORDER BY external_id
ON CONFLICT (external_id) DO UPDATE SET first_seen_at = LEAST(customers.first_seen_at, excluded.first_seen_at)
RETURNING external_id, id
"""

_INSERT_EVENTS = """
WITH ins AS (
  INSERT INTO events (customer_id, name, ts, received_at, message_id, properties)
  SELECT customer_id, name, ts, received_at, message_id, properties FROM ingest_events
  ON CONFLICT (message_id) DO NOTHING
  RETURNING id, customer_id, name, ts, properties
), agg AS (
  SELECT customer_id, name, min(ts) AS first_at, max(ts) AS last_at, count(*) AS cnt,
         (array_agg(id ORDER BY ts DESC, id DESC))[1] AS last_id,
         (array_agg(properties ORDER BY ts DESC, id DESC))[1] AS last_props
  FROM ins GROUP BY customer_id, name
), up AS (
  INSERT INTO event_summary AS s (customer_id, name, first_at, last_at, count, last_event_id, last_properties)
  SELECT customer_id, name, first_at, last_at, cnt, last_id, last_props FROM agg ORDER BY customer_id, name
  ON CONFLICT (customer_id, name) DO UPDATE SET
    first_at = LEAST(s.first_at, excluded.first_at),
    last_at = GREATEST(s.last_at, excluded.last_at),
    count = s.count + excluded.count,
    last_event_id = CASE WHEN (excluded.last_at, excluded.last_event_id) > (s.last_at, s.last_event_id)
                         THEN excluded.last_event_id ELSE s.last_event_id END,
    last_properties = CASE WHEN (excluded.last_at, excluded.last_event_id) > (s.last_at, s.last_event_id)
                           THEN excluded.last_properties ELSE s.last_properties END
  RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM up)
"""


def _copy(conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def ensure_customers(conn: Connection, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    conn.execute(text(_CUSTOMERS_STAGE))
    _copy(
        conn,
        "ingest_customers",
        ["external_id", "salt", "referral_code", "created_at", "first_seen_at"],
        [
            (r["external_id"], r["salt"], r["referral_code"], r["created_at"], r["first_seen_at"])
            for r in rows
        ],
    )
    return {ext: int(cid) for ext, cid in conn.execute(text(_UPSERT_CUSTOMERS))}


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Store events and fold them into event_summary in one statement; returns how many were new."""
    if not rows:
        return 0
    conn.execute(text(_EVENTS_STAGE))
    _copy(
        conn,
        "ingest_events",
        ["customer_id", "name", "ts", "received_at", "message_id", "properties"],
        [
            (
                r["customer_id"],
                r["name"],
                r["ts"],
                r["received_at"],
                r["message_id"],
                json.dumps(r["properties"], separators=(",", ":")),
            )
            for r in rows
        ],
    )
    stored = conn.execute(text(_INSERT_EVENTS)).scalar_one()
    return int(stored)


__all__ = ["datetime", "ensure_customers", "insert_events"]


_IDENTIFY_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS ingest_identifies (
  external_id varchar(255), identified_at timestamptz, email varchar(320), phone varchar(64),
  timezone varchar(64), locale varchar(32), first_name varchar(255), attributes jsonb) ON COMMIT DELETE ROWS
"""
_NEWER = "(c.identified_at IS NULL OR excluded.identified_at >= c.identified_at)"
_APPLY_IDENTIFIES = f"""
INSERT INTO customers AS c (external_id, identified_at, email, phone, timezone, locale, first_name, attributes,
                            salt, created_at)
SELECT external_id, identified_at, email, phone, timezone, locale, first_name, attributes, 0, identified_at
FROM ingest_identifies
ORDER BY external_id
ON CONFLICT (external_id) DO UPDATE SET
  identified_at = CASE WHEN {_NEWER} THEN excluded.identified_at ELSE c.identified_at END,
  attributes = CASE WHEN {_NEWER} THEN c.attributes || excluded.attributes ELSE excluded.attributes || c.attributes END,
""" + ",\n".join(
    f"  {col} = CASE WHEN {_NEWER} THEN coalesce(excluded.{col}, c.{col}) ELSE coalesce(c.{col}, excluded.{col}) END"
    for col in ("email", "phone", "timezone", "locale", "first_name")
)


def apply_identifies(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """The identify merge of engine.ingest._apply_identifies, fed by COPY."""
    conn.execute(text(_IDENTIFY_STAGE))
    cols = [
        "external_id",
        "identified_at",
        "email",
        "phone",
        "timezone",
        "locale",
        "first_name",
        "attributes",
    ]
    _copy(
        conn,
        "ingest_identifies",
        cols,
        [(*(r[c] for c in cols[:-1]), json.dumps(r["attributes"], separators=(",", ":"))) for r in rows],
    )
    conn.execute(text(_APPLY_IDENTIFIES))
