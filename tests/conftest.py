"""Shared fixtures: a fresh database per test, on SQLite and on the real PostgreSQL.

PostgreSQL and Redis are real servers. Locally a missing one skips its tests; under CI=true it
fails them, so a green CI always means they ran.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from engine.db import make_engine, upgrade
from engine.schema import metadata
from engine.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("JOURNEY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("JOURNEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def need_service(name: str, host: str, port: int) -> None:
    """Skip locally, fail under CI=true, when a real service is not answering."""
    if _port_open(host, port):
        return
    message = f"{name} is not answering on {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing service is a failure)")
    pytest.skip(message)


def utc(text_: str) -> datetime:
    """`utc('2026-11-01T10:00')`: an aware UTC datetime for tests."""
    value = datetime.fromisoformat(text_)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test session's own, dropped at the end."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"journey_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(eng: Engine) -> None:
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    with eng.begin() as conn:
        if eng.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                conn.execute(text(f"DELETE FROM {t}"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a fresh SQLite file, or this session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'journey.db'}"
        eng = make_engine(url)
        upgrade(eng)
        eng.dispose()
        yield url
        return
    url = request.getfixturevalue("pg_database")
    eng = make_engine(url)
    _truncate(eng)
    eng.dispose()
    yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings for a test: its own database and outbox, the shipped rules and templates."""
    return Settings(
        database_url=db_url,
        email_url=f"file://{tmp_path / 'outbox'}",
        rules_dir=ROOT / "rules",
        templates_dir=ROOT / "message_templates",
        secret_key="test-secret",
        api_key="test-api-key",
    )
