"""Ingest refuses an invalid email address with the reason, as any bad line or item, and stores the
good ones; an internationalised address is taken as it is written."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from engine.cli import main
from engine.db.schema import customers
from engine.ingest.writer import ingest_events

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def ident(cid: str, email: object) -> dict[str, object]:
    return {
        "type": "identify",
        "customer_id": cid,
        "timestamp": "2026-11-01T10:00:00Z",
        "traits": {"email": email},
    }


def test_a_file_s_invalid_addresses_are_reported_as_bad_lines_with_the_reason(
    db_url: str,
    db: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "people.jsonl"
    lines = [
        ident("a", "ada@example.com"),
        ident("b", "bob.example.com"),
        ident("c", "chloé@exämple.com"),
        ident("d", "dan@localhost"),
        ident("e", "eve lyn@example.com"),
        ident("f", ""),
        {
            "type": "track",
            "customer_id": "g",
            "event": "x",
            "timestamp": "2026-11-01T10:00:00Z",
            "context_traits": {"email": "g@@example.com"},
        },
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    assert main(["ingest", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:5] == [
        f"{path}:2: trait 'email' 'bob.example.com' is not a valid email address: it has no @",
        f"{path}:4: trait 'email' 'dan@localhost' is not a valid email address: it has the domain "
        "'localhost' without a dot: a domain looks like example.com",
        f"{path}:5: trait 'email' 'eve lyn@example.com' is not a valid email address: it has a space before the @, "
        "which an address cannot hold",
        f"{path}:6: trait 'email' '' is not a valid email address: it is empty",
        f"{path}:7: trait 'email' 'g@@example.com' is not a valid email address: it has '@' before the @, "
        "which an address cannot hold",
    ]
    with db.connect() as conn:
        stored = dict(conn.execute(select(customers.c.external_id, customers.c.email)).all())
    assert stored == {"a": "ada@example.com", "c": "chloé@exämple.com"}


def test_an_api_batch_rejects_the_item_with_an_invalid_address_and_stores_the_others(db: Engine) -> None:
    result = ingest_events(db, [ident("a", "ada@example.com"), ident("b", "b@exa_mple.com")], received_at=NOW)
    assert result.rejected == [
        (
            1,
            "trait 'email' 'b@exa_mple.com' is not a valid email address: it has '_' in the domain "
            "'exa_mple.com', which a domain cannot hold",
        )
    ]
