"""The real services the tests talk to. Locally a missing one skips its tests; under CI=true it
fails them, so a green CI always means they ran."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from engine.db import make_engine
from engine.db.schema import metadata

ROOT = Path(__file__).resolve().parent.parent.parent
PG_ADMIN_URL = os.environ.get("JOURNEY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("JOURNEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: the Redis database the worker tests use as their broker (and flush)
BROKER_URL = os.environ.get("JOURNEY_TEST_BROKER_URL", REDIS_URL.rsplit("/", 1)[0] + "/13")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def need_service(name: str, host: str, port: int) -> None:
    """Skip locally, fail under CI=true, when a real service is not answering."""
    if port_open(host, port):
        return
    message = f"{name} is not answering on {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing service is a failure)")
    pytest.skip(message)


def need_postgres() -> None:
    need_service("PostgreSQL", "127.0.0.1", 5432)


def need_redis() -> None:
    need_service("Redis", "127.0.0.1", 6379)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def utc(text_: str) -> datetime:
    """`utc('2026-11-01T10:00')`: an aware UTC datetime for tests."""
    value = datetime.fromisoformat(text_)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@contextmanager
def throwaway_database(prefix: str = "journey_test", admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A PostgreSQL database of its own, dropped at the end: its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def truncate(eng: Engine) -> None:
    """Empty every table of the schema (and restart PostgreSQL's id sequences)."""
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    with eng.begin() as conn:
        if eng.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                conn.execute(text(f"DELETE FROM {t}"))
