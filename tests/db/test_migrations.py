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
    assert current_revision(db) == "0017"


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


def test_a_plain_api_key_stored_before_is_replaced_by_its_hash_and_keeps_working(db: Engine) -> None:
    from datetime import UTC, datetime

    from engine.db import key_hash, put_meta, stored_api_key_hash

    upgrade(db, "0013")
    with db.begin() as conn:
        conn.execute(text("DELETE FROM meta WHERE key = 'api_key'"))
        put_meta(conn, "api_key", "the-old-plain-key", datetime.now(UTC))
    upgrade(db)
    assert stored_api_key_hash(db) == key_hash("the-old-plain-key")
    upgrade(db, "0013")  # going down leaves the hash (a hash cannot become its key again)
    upgrade(db)
    assert stored_api_key_hash(db) == key_hash("the-old-plain-key")


def test_sends_index_message_id_and_failed_at_only_where_they_are_set(db: Engine) -> None:
    """A send is written three times before it has a Message-ID or a failure: none of those
    writes may add entries to these two indexes (migration 0016)."""
    with db.connect() as conn:
        if db.dialect.name == "postgresql":
            rows = conn.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sends'")
            ).all()
        else:
            rows = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sends'")
            ).all()
    found = {name: " ".join(str(sql).split()) for name, sql in rows}
    assert (
        "WHERE" in found["ix_sends_message_id"] and "message_id IS NOT NULL" in found["ix_sends_message_id"]
    )
    assert "WHERE" in found["ix_sends_failed_at"] and "failed_at IS NOT NULL" in found["ix_sends_failed_at"]
