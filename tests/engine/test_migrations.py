"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from engine.db import current_revision, upgrade
from engine.schema import metadata


def test_migrations_match_the_declared_schema(db: Engine) -> None:
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert current_revision(db) is not None


def test_upgrade_twice_is_harmless(db: Engine) -> None:
    upgrade(db)
    assert {"customers", "events", "event_summary", "sends", "enrollments"} <= set(
        inspect(db).get_table_names()
    )


def test_downgrade_to_the_first_revision_and_back(db: Engine) -> None:
    upgrade(db, "0001")
    assert current_revision(db) == "0001"
    upgrade(db)
    assert current_revision(db) == "0003"
