"""`journey events export`: JSON lines that `ingest` reads back; export → ingest into an empty
database gives the same customers and the same event summaries, on both databases."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from engine.cli import main
from engine.db import make_engine
from engine.db.schema import customers, event_summary, unsubscribes
from engine.sim.generate import ShopConfig, write_events
from tests.support.services import ROOT


@pytest.fixture
def shop(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shop that ran for a while: generated history, ticks that sent email (email_sent events),
    opt-outs and referrals."""
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    monkeypatch.setenv("JOURNEY_EMAIL_URL", f"file://{tmp_path / 'outbox'}")
    monkeypatch.setenv("JOURNEY_SECRET_KEY", "k")
    monkeypatch.delenv("JOURNEY_BROKER_URL", raising=False)
    buf = io.StringIO()
    write_events(ShopConfig(customers=200, days=40, seed=7), buf)
    events = tmp_path / "events.jsonl"
    events.write_text(buf.getvalue())
    assert main(["ingest", str(events)]) == 0
    for now in ("2026-10-31T00:00:00Z", "2026-11-01T00:00:00Z"):
        assert main(["tick", "--now", now]) == 0
    return tmp_path


def customers_of(engine: Engine) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        return {
            r.external_id: (
                r.email,
                r.first_name,
                r.phone,
                r.timezone,
                r.locale,
                r.referral_code,
                r.attributes,
            )
            for r in conn.execute(select(customers))
        }


def summaries_of(engine: Engine) -> dict[tuple[str, str], tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(customers.c.external_id, event_summary).join(
                customers, customers.c.id == event_summary.c.customer_id
            )
        )
        return {(r.external_id, r.name): (r.first_at, r.last_at, r.count, r.last_properties) for r in rows}


def opt_outs_of(engine: Engine) -> set[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(customers.c.external_id, unsubscribes.c.channel, unsubscribes.c.topic).join(
                customers, customers.c.id == unsubscribes.c.customer_id
            )
        )
        return {(r.external_id, r.channel, r.topic) for r in rows}


def test_export_then_ingest_into_an_empty_database_gives_the_same_customers_and_summaries(
    shop: Path,
    db: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "export.jsonl"
    capsys.readouterr()
    assert main(["events", "export", "-o", str(out)]) == 0
    assert "exported 200 customers and" in capsys.readouterr().err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    stamps = [line["timestamp"] for line in lines]
    assert stamps == sorted(stamps)  # in time order: simulate streams it as it is
    first: dict[str, str] = {}
    for line in lines:
        first.setdefault(line["customer_id"], line["type"])
    assert set(first.values()) == {"identify"}  # each customer's identify comes before their events
    assert any(line.get("event") == "email_sent" for line in lines)

    other = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("JOURNEY_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    assert main(["db", "upgrade"]) == 0
    assert main(["ingest", str(out)]) == 0
    assert customers_of(other) == customers_of(db)
    assert summaries_of(other) == summaries_of(db)
    assert opt_outs_of(other) == opt_outs_of(db) != set()
    other.dispose()


def test_export_limits_to_a_time_range_and_to_customers(
    shop: Path, db: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert (
        main(["events", "export", "--since", "2026-10-20T00:00:00Z", "--until", "2026-10-21T00:00:00Z"]) == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    tracks = [line for line in lines if line["type"] == "track"]
    assert tracks and all("2026-10-20" <= line["timestamp"] < "2026-10-21" for line in tracks)
    people = {line["customer_id"] for line in lines if line["type"] == "identify"}
    assert {line["customer_id"] for line in tracks} <= people  # whoever has an event has their traits
    one = sorted(people)[0]
    assert main(["events", "export", "--customer", one]) == 0
    mine = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {line["customer_id"] for line in mine} == {one} and mine[0]["type"] == "identify"
    assert (
        main(["events", "export", "--since", "2026-10-21T00:00:00Z", "--until", "2026-10-20T00:00:00Z"]) == 2
    )


def aliases_of(engine: Engine) -> dict[str, tuple[str, Any]]:
    from engine.db.schema import customer_aliases

    with engine.connect() as conn:
        rows = conn.execute(
            select(customer_aliases.c.alias, customers.c.external_id, customer_aliases.c.merged_at).join(
                customers, customers.c.id == customer_aliases.c.customer_id
            )
        )
        return {r.alias: (r.external_id, r.merged_at) for r in rows}


def test_merged_identities_survive_export_then_ingest_into_an_empty_database(
    db: Engine,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    items = [
        {"type": "track", "anonymousId": "anon-1", "event": "product_viewed", "timestamp": "2026-10-01T09:00:00Z",
         "messageId": "m1", "properties": {"name": "Trail shoe"}},
        {"type": "track", "userId": "old-2", "event": "cart_updated", "timestamp": "2026-10-01T09:30:00Z",
         "messageId": "m2", "properties": {"cart_value": 10}},
        {"type": "identify", "userId": "ada", "anonymousId": "anon-1", "timestamp": "2026-10-01T10:00:00Z",
         "traits": {"email": "ada@example.com", "first_name": "Ada"}},
        {"type": "alias", "previousId": "old-2", "userId": "ada", "timestamp": "2026-10-02T10:00:00Z"},
        {"type": "alias", "previousId": "ada", "userId": "ada-account", "timestamp": "2026-10-03T10:00:00Z"},
        {"type": "track", "anonymousId": "anon-1", "event": "product_viewed", "timestamp": "2026-10-04T09:00:00Z",
         "messageId": "m3", "properties": {"name": "Rain shell"}},
    ]  # fmt: skip
    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps(i) + "\n" for i in items))
    assert main(["ingest", str(history)]) == 0
    before = aliases_of(db)
    assert {a: who for a, (who, _) in before.items()} == {
        "anon-1": "ada-account",
        "old-2": "ada-account",
        "ada": "ada-account",
    }

    out = tmp_path / "export.jsonl"
    assert main(["events", "export", "-o", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["previousId"], line["userId"]) for line in lines if line["type"] == "alias"] == [
        ("anon-1", "ada-account"),
        ("old-2", "ada-account"),
        ("ada", "ada-account"),
    ]
    assert not [line for line in lines if line.get("event") == "profile_merged"]  # the aliases make them

    empty = tmp_path / "empty.db"
    monkeypatch.setenv("JOURNEY_DATABASE_URL", f"sqlite:///{empty}")
    assert main(["db", "upgrade"]) == 0
    assert main(["ingest", str(out)]) == 0
    other = make_engine(f"sqlite:///{empty}")
    assert aliases_of(other) == before
    assert customers_of(other) == customers_of(db)
    assert summaries_of(other) == summaries_of(db)
    # a later event under a merged id still lands on the survivor
    late = tmp_path / "late.jsonl"
    late.write_text(
        json.dumps({"type": "track", "customer_id": "old-2", "event": "order_placed",
                    "timestamp": "2026-10-05T09:00:00Z", "message_id": "m4"}) + "\n"
    )  # fmt: skip
    assert main(["ingest", str(late)]) == 0
    assert ("ada-account", "order_placed") in summaries_of(other)
    assert "old-2" not in customers_of(other)
    other.dispose()
