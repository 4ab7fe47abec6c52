"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

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
    assert current_revision(db) == "0004"


def test_customers_keep_room_for_in_place_updates_and_stage_is_not_indexed(db: Engine) -> None:
    # a stage change must not touch any index (PostgreSQL then updates the row in its page)
    assert "stage" not in {c for ix in inspect(db).get_indexes("customers") for c in ix["column_names"]}
    if db.dialect.name == "postgresql":
        with db.connect() as conn:
            options = conn.execute(
                text("SELECT reloptions FROM pg_class WHERE relname = 'customers'")
            ).scalar()
        assert options == ["fillfactor=50"]
