"""Column types that read the same on PostgreSQL and SQLite: JSON, 64-bit keys, UTC times."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, ColumnElement, DateTime, Integer, Text, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: JSON on SQLite, JSONB on PostgreSQL
JSONType = JSON().with_variant(JSONB(), "postgresql")
#: a 64-bit key that is still SQLite's rowid alias (INTEGER PRIMARY KEY)
BigID = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python; timestamptz on PostgreSQL, naive UTC on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(DateTime(timezone=False))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Journey stores only aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


__all__ = ["BigID", "JSONType", "UTCDateTime"]


def among(dialect: Dialect, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN values`, written for the database: on PostgreSQL one array parameter
    (`column = ANY(:values)`), which the driver sends as one value and the server parses once,
    where an IN list of 200 keys is 200 parameters to build, send and parse on every execution
    (a worker's batch runs several such reads); on SQLite an IN list."""
    if dialect.name == "postgresql":
        item = BigInteger() if isinstance(column.type, (BigInteger, Integer)) else Text()
        return cast(ColumnElement[bool], column == any_(bindparam(None, list(values), type_=ARRAY(item))))
    return cast(ColumnElement[bool], column.in_(list(values)))
