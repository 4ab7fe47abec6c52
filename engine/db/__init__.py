"""Database access: engines, migrations, and the few statements whose fast form differs by dialect.

Each dialect-specific form sits in one small function with the SQLite form beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Float,
    String,
    Table,
    cast,
    create_engine,
    event,
    func,
    literal,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from engine.db.schema import customers, meta

MIGRATIONS = Path(__file__).parent / "migrations"


def _new_file(url: str) -> str | None:
    """The SQLite file of `url` when it does not exist yet (its first connection creates it)."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return None
    return path


def make_engine(url: str, *, create: bool = True, **kwargs: Any) -> Engine:
    """An engine for a SQLAlchemy URL; SQLite gets WAL, a busy timeout and foreign keys.

    With `create=False` a SQLite file that does not exist is not created by connecting: the
    connection fails ("unable to open database file") and no empty file is left behind; only
    `journey db upgrade` (and the demo) create the database.
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    # INSERT … SELECT row counts are how the tick counts what it did
    kwargs.setdefault("execution_options", {"preserve_rowcount": True})
    if url.startswith("sqlite"):
        new = _new_file(url)
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)
        if new is not None and not create:

            @event.listens_for(engine, "do_connect")
            def _open_existing_only(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
                # mode=rw: SQLite opens the file only if it exists, instead of creating it
                target = Path(cparams.pop("database", cargs[0] if cargs else "")).absolute()
                cargs[:] = [f"{target.as_uri()}?mode=rw"]
                cparams["uri"] = True

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            nonlocal new
            if new is not None:
                # a file this engine created is its owner's alone (0600): it holds every customer
                # and the generated keys; SQLite gives its -wal and -shm files the same permissions
                with contextlib.suppress(OSError):
                    os.chmod(new, 0o600)
                new = None
            # Let SQLAlchemy, not pysqlite, decide when transactions begin (so BEGIN IMMEDIATE works).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def is_postgres(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "postgresql"


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN (no upgrade deadlock)."""
    with engine.connect() as conn:
        conn.info["write"] = True
        try:
            with conn.begin():
                yield conn
        finally:
            conn.info.pop("write", None)


NO_SCHEMA = "the database has no schema yet: run `journey db upgrade` first"


def is_missing_schema(exc: BaseException) -> bool:
    """The database was never upgraded: its tables, or its SQLite file, do not exist."""
    first = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
    return (
        "unable to open database file" in first  # a SQLite file is opened, never created, before
        or "no such table" in first
        or ("relation" in first and "does not exist" in first)
    )


def is_retryable(exc: DBAPIError) -> bool:
    """A deadlock or serialization failure: the transaction was rolled back whole; try again."""
    return getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema to `revision` with Alembic (down as well as up)."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    current = current_revision(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        script = ScriptDirectory.from_config(cfg)
        target = script.get_revision(revision) if revision not in ("head", "base") else None
        going_down = (
            current is not None
            and target is not None
            and target.revision != current
            and any(r.revision == target.revision for r in script.iterate_revisions(current, "base"))
        )
        if going_down:
            command.downgrade(cfg, revision)
        else:
            command.upgrade(cfg, revision)


def make_owner_only(engine: Engine) -> list[str]:
    """Take group and other permissions off a SQLite database's files (a database made before
    they were created 0600); the files changed."""
    path = make_url(engine.url.render_as_string(hide_password=False)).database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
        return []
    changed = []
    for name in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(OSError):
            mode = os.stat(name).st_mode & 0o777
            if mode & 0o077:
                os.chmod(name, mode & 0o700)
                changed.append(name)
    return changed


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def insert_ignore(conn: Connection, table: Table, conflict: Sequence[str]) -> Any:
    """An INSERT that skips rows whose unique key `conflict` already exists (ON CONFLICT DO NOTHING)."""
    if is_postgres(conn):
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict))


def upsert(conn: Connection | Engine, table: Table) -> Any:
    """The dialect's INSERT with `.on_conflict_do_update` (same API on both dialects)."""
    if is_postgres(conn):
        return postgresql.insert(table)
    return sqlite.insert(table)


def add_seconds(conn: Connection, column: ColumnElement[Any], seconds: float) -> ColumnElement[Any]:
    """`column + seconds` as SQL, for a timestamp column."""
    if is_postgres(conn):
        return column + text(f"interval '{float(seconds)} seconds'")
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff'; strftime gives milliseconds, so pad to six digits.
    return func.strftime("%Y-%m-%d %H:%M:%f", column, f"{float(seconds):+f} seconds").concat("000")


def greatest(conn: Connection, a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.greatest(a, b) if is_postgres(conn) else func.max(a, b)


def least(conn: Connection, a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.least(a, b) if is_postgres(conn) else func.min(a, b)


def json_merge(conn: Connection, base: ColumnElement[Any], patch: ColumnElement[Any]) -> ColumnElement[Any]:
    """`base` with the keys of `patch` written over it (a shallow merge of two JSON objects)."""
    if is_postgres(conn):
        return base.op("||")(patch)
    return func.json_patch(base, patch)


def json_field(conn: Connection, column: ColumnElement[Any], key: str, kind: str) -> ColumnElement[Any]:
    """One key of a JSON object column, as `kind` ('number', 'text', 'bool' or 'any').

    A value of the wrong JSON type reads as NULL, so a comparison with it is simply false.
    """
    if is_postgres(conn):
        elem = column.op("->")(literal(key, String))
        as_text = column.op("->>")(literal(key, String))
        if kind == "number":
            return _pg_typed(elem, as_text, "number")
        if kind == "bool":
            return _pg_typed(elem, as_text, "boolean")
        if kind == "text":
            return _pg_typed(elem, as_text, "string")
        return type_coerce(as_text, String)
    from sqlalchemy import case

    value, kind_sql = sqlite_json_key(column, key)

    if kind == "number":
        return type_coerce(case((kind_sql.in_(["integer", "real"]), cast(value, Float)), else_=None), Float)
    if kind == "bool":
        return type_coerce(case((kind_sql.in_(["true", "false"]), value), else_=None), Boolean)
    if kind == "text":
        return type_coerce(case((kind_sql == "text", value), else_=None), String)
    return value


def _pg_typed(elem: ColumnElement[Any], as_text: ColumnElement[Any], json_type: str) -> ColumnElement[Any]:
    from sqlalchemy import Boolean, case

    target: Any = {"number": Float, "boolean": Boolean, "string": String}[json_type]
    value = type_coerce(as_text, String) if json_type == "string" else cast(as_text, target)
    return type_coerce(case((func.jsonb_typeof(elem) == json_type, value), else_=None), target)


def sqlite_json_key(column: ColumnElement[Any], key: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """SQLite: the value of `key` in a JSON object column and its JSON type. A JSON path cannot
    name a key holding `"` (SQLite has no escape for it there): such a key is found by json_each."""
    if '"' not in key and "\\" not in key:
        path = '$."' + key + '"'
        return func.json_extract(column, path), func.json_type(column, path)
    each = func.json_each(column).table_valued("key", "value", "type")
    found = select(each.c.value).where(each.c.key == key).scalar_subquery()
    kind = select(each.c.type).where(each.c.key == key).scalar_subquery()
    return found, kind


@contextmanager
def advisory_lock(engine: Engine, key: int) -> Iterator[None]:
    """Hold a session-level lock, waiting for it, until the block ends (PostgreSQL: an advisory
    lock on a connection of its own). SQLite: nothing; its write transactions exclude each other."""
    with engine.connect() as conn:
        pg = is_postgres(conn)
        if pg:
            conn.execute(select(func.pg_advisory_lock(key)))
            conn.commit()
        try:
            yield
        finally:
            if pg:
                conn.execute(select(func.pg_advisory_unlock(key)))
                conn.commit()


def try_advisory_lock(conn: Connection, key: int) -> bool:
    """Take a session-level lock if it is free (PostgreSQL); SQLite always says yes."""
    if is_postgres(conn):
        return bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())
    return True


def put_meta(conn: Connection, key: str, value: str, now: datetime) -> None:
    """Write one `meta` row (scheduler heartbeats, demo marks), replacing its old value."""
    stmt = upsert(conn, meta).values(key=key, value=value, updated_at=now)
    conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value, "updated_at": now}))


def get_or_create_secret(engine: Engine, name: str, *, nbytes: int = 32) -> str:
    """A secret stored in the database on first use, so every process of a fleet shares it."""
    return secret_once(engine, name, nbytes=nbytes)[0]


def secret_once(engine: Engine, name: str, *, nbytes: int = 32) -> tuple[str, bool]:
    """The secret `name` and whether this call created it (so that it is shown once, then never)."""
    with engine.begin() as conn:
        row = conn.execute(select(meta.c.value).where(meta.c.key == name)).scalar()
        if row is not None:
            return str(row), False
        value = secrets.token_urlsafe(nbytes)
        created = conn.execute(
            insert_ignore(conn, meta, ["key"]).values(key=name, value=value, updated_at=datetime.now(UTC))
        ).rowcount
        stored = str(conn.execute(select(meta.c.value).where(meta.c.key == name)).scalar_one())
        return stored, bool(created) and stored == value


#: the `meta` row of the generated API key: only its hash, never the key (shown once, on creation)
API_KEY = "api_key"
HASHED = "sha256:"


def key_hash(key: str) -> str:
    """How a generated API key is stored: its SHA-256 (the key is random, 256 bits: no salt or
    slow hash needed to keep it from being guessed back)."""
    return HASHED + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_api_key(engine: Engine) -> str | None:
    """Generate the API key if there is none: the new key (to show once), or None when one exists.
    Only its hash is stored."""
    key = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        created = conn.execute(
            insert_ignore(conn, meta, ["key"]).values(
                key=API_KEY, value=key_hash(key), updated_at=datetime.now(UTC)
            )
        ).rowcount
    return key if created else None


def stored_api_key_hash(engine: Engine) -> str | None:
    """The stored hash of the generated API key (None before `journey serve` made one)."""
    with engine.connect() as conn:
        value = conn.execute(select(meta.c.value).where(meta.c.key == API_KEY)).scalar()
    return str(value) if value is not None else None


def customer_ids(conn: Connection, external_ids: Sequence[str]) -> dict[str, int]:
    """External id -> internal id of the customers that exist, looked up a few thousand at a time."""
    ids: dict[str, int] = {}
    for i in range(0, len(external_ids), 5000):
        chunk = external_ids[i : i + 5000]
        for ext, cid in conn.execute(
            select(customers.c.external_id, customers.c.id).where(customers.c.external_id.in_(chunk))
        ):
            ids[ext] = cid
    return ids
