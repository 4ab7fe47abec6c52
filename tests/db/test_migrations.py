"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from engine.db import current_revision, upgrade
from engine.db.schema import metadata


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
    assert current_revision(db) == "0014"


def test_customers_keep_room_for_in_place_updates_and_stage_is_not_indexed(db: Engine) -> None:
    # a stage change must not touch any index (PostgreSQL then updates the row in its page)
    assert "stage" not in {c for ix in inspect(db).get_indexes("customers") for c in ix["column_names"]}
    if db.dialect.name == "postgresql":
        assert _options(db, "customers") == ["fillfactor=50"]


def test_summary_rows_keep_room_for_in_place_updates_and_last_at_is_not_indexed(db: Engine) -> None:
    # a new event moves its summary row's last_at: no index may hold it, or every event folded
    # into an existing row writes new index entries (PostgreSQL cannot update the row in its page)
    indexed = {c for ix in inspect(db).get_indexes("event_summary") for c in ix["column_names"]}
    assert "last_at" not in indexed
    if db.dialect.name == "postgresql":
        assert _options(db, "event_summary") == ["fillfactor=70"]


def _options(db: Engine, table: str) -> object:
    with db.connect() as conn:
        return conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = :t"), {"t": table}).scalar()


def test_the_rule_pauses_table_comes_and_goes_with_its_migration(db: Engine) -> None:
    assert "rule_pauses" in inspect(db).get_table_names()
    upgrade(db, "0006")
    assert "rule_pauses" not in inspect(db).get_table_names()
    upgrade(db)
    assert {c["name"] for c in inspect(db).get_columns("rule_pauses")} == {
        "rule_id",
        "paused_at",
        "paused_by",
        "resumed_at",
    }
