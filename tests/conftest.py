"""Shared fixtures: a fresh database per test, on SQLite and on the real PostgreSQL.

PostgreSQL and Redis are real servers (tests/support/services.py): locally a missing one skips its
tests, under CI=true it fails them.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from engine.db import make_engine, upgrade
from engine.settings import Settings
from tests.support.services import ROOT, need_postgres, throwaway_database, truncate


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test session's own, migrated, dropped at the end."""
    need_postgres()
    with throwaway_database() as url:
        eng = make_engine(url)
        upgrade(eng)
        eng.dispose()
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per session: each test gets a copy of the file."""
    path = tmp_path_factory.mktemp("template") / "journey.db"
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    with eng.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    eng.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a fresh SQLite file, or this session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        path = tmp_path / "journey.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("pg_database")
    eng = make_engine(url)
    truncate(eng)
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the real services its fixtures reach, so `-m "not postgres and not redis"`
    selects the tests that need none (`make test-fast`)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "pg_database" in fixtures and "db_url" not in fixtures:
            item.add_marker(pytest.mark.postgres)
        if fixtures & {"broker", "start_worker"}:
            item.add_marker(pytest.mark.redis)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many examples each fuzz test ran, and with which seed (tests/support/fuzz.py)."""
    fuzzed = sys.modules.get("tests.support.fuzz")
    for name, ran in getattr(fuzzed, "RAN", []):
        terminalreporter.write_line(f"fuzz {name}: {ran} examples (seed {fuzzed.SEED})")  # type: ignore[union-attr]
