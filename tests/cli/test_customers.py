"""`journey customers export ID` and `journey customers erase ID --yes` (GDPR): the export holds
everything about the customer; after erasure no row of the database holds their address or their
events, their address stays suppressed as a hash, and a re-import under any id is not mailed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from engine.addresses import address_hash
from engine.cli import main
from engine.db.schema import customers, events, metadata, sends, stage_history, suppressions
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from tests.support.kit import CART_RULE, D, H, Kit
from tests.support.services import utc

T0 = utc("2026-11-01T10:00:00")
REFERRAL_RULE = """
id: thanks
trigger: {event: order_placed}
steps:
  - send: thanks
"""


@pytest.fixture
def shop(db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Kit, Settings]]:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", str(db.url))
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE, REFERRAL_RULE)
    settings = Settings(
        database_url=str(db.url),
        email_url=f"file://{tmp_path / 'outbox'}",
        rules_dir=tmp_path / "rules",
        templates_dir=tmp_path / "templates",
        secret_key="test-secret",
    )
    kit.tick(T0 - H)
    yield kit, settings


def deliver(kit: Kit, settings: Settings, at: Any) -> None:
    kit.tick(at)
    dispatch_due(kit.engine, settings, now=at, deliverer=Deliverer.create(kit.engine, settings, kit.ruleset))


def history(kit: Kit, settings: Settings) -> None:
    """Ada: traits, a cart and its reminder, then an order; she was referred by Bob."""
    kit.identify("bob", T0 - D, first_name="Bob", referral_code="BOB12345")
    kit.identify("ada", T0 - H, first_name="Adaline", plan="gold-XQ7", referred_by="BOB12345")
    kit.track("ada", "cart_updated", T0, mid="cart-ada-1", sku="TRAIL-SHOE-XQ7")
    deliver(kit, settings, T0 + 2 * H)
    kit.track("ada", "order_placed", T0 + 3 * H, mid="order-ada-1", value=89.5)
    deliver(kit, settings, T0 + 4 * H)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_the_export_holds_every_event_attribute_and_send_of_the_customer(
    shop: tuple[Kit, Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    kit, settings = shop
    history(kit, settings)
    status, out, _ = run(capsys, "customers", "export", "ada")
    assert status == 0
    got = json.loads(out)
    person = got["customer"]
    assert (person["id"], person["email"], person["first_name"]) == ("ada", "ada@example.com", "Adaline")
    assert person["attributes"] == {"plan": "gold-XQ7"} and person["referred_by"] == "bob"
    with kit.engine.connect() as conn:
        cid = conn.execute(select(customers.c.id).where(customers.c.external_id == "ada")).scalar_one()
        stored = conn.execute(select(func.count()).where(events.c.customer_id == cid)).scalar_one()
        ledger = conn.execute(select(func.count()).where(sends.c.customer_id == cid)).scalar_one()
    assert len(got["events"]) == stored >= 4
    names = [e["name"] for e in got["events"]]
    assert {"cart_updated", "order_placed", "email_sent"} <= set(names)
    cart = next(e for e in got["events"] if e["name"] == "cart_updated")
    assert (cart["message_id"], cart["properties"], cart["ts"]) == (
        "cart-ada-1",
        {"sku": "TRAIL-SHOE-XQ7"},
        "2026-11-01T10:00:00Z",
    )
    assert len(got["sends"]) == ledger == 2
    assert {(s["template"], s["status"], s["subject"]) for s in got["sends"]} == {
        ("cart_reminder", "sent", "Hi"),
        ("thanks", "sent", "Hi"),
    }
    assert got["stages"] and got["summaries"] and got["enrollments"]


def test_the_export_lists_the_ids_merged_into_the_customer_and_erasure_forgets_them(
    shop: tuple[Kit, Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    kit, settings = shop
    history(kit, settings)
    seen = "2026-11-02T09:00:00Z"
    kit.ingest({"type": "page", "anonymousId": "anon-7f3a", "name": "Trail shoes", "timestamp": seen})
    kit.ingest(
        {"type": "identify", "userId": "ada", "anonymousId": "anon-7f3a", "timestamp": seen, "traits": {}}
    )
    status, out, _ = run(capsys, "customers", "export", "ada")
    assert status == 0
    merged = json.loads(out)["merged_ids"]
    assert [m["alias"] for m in merged] == ["anon-7f3a"] and merged[0]["merged_at"] == seen
    assert run(capsys, "customers", "erase", "ada", "--yes")[0] == 0
    assert rows_holding(kit.engine, ["anon-7f3a"]) == []


def rows_holding(engine: Engine, needles: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every row of every table with a value that holds one of `needles` (any case)."""
    found = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                text = json.dumps(
                    [str(v) if not isinstance(v, dict | list) else v for v in row], ensure_ascii=False
                )
                if any(n.lower() in text.lower() for n in needles):
                    found.append((table.name, dict(row._mapping)))
    return found


def test_after_erasure_no_row_holds_the_address_or_the_customer_s_events(
    shop: tuple[Kit, Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    kit, settings = shop
    history(kit, settings)
    needles = ["ada@example.com", "Adaline", "TRAIL-SHOE-XQ7", "gold-XQ7", "cart-ada-1", "order-ada-1"]
    assert rows_holding(kit.engine, needles)
    with kit.engine.connect() as conn:
        cid = conn.execute(select(customers.c.id).where(customers.c.external_id == "ada")).scalar_one()
        stages = conn.execute(select(func.count()).where(stage_history.c.customer_id == cid)).scalar_one()
    status, _, err = run(capsys, "customers", "erase", "ada", "--yes")
    assert status == 0 and "erased 'ada'" in err
    assert rows_holding(kit.engine, needles) == []
    with kit.engine.connect() as conn:
        assert conn.execute(select(func.count()).where(events.c.customer_id == cid)).scalar_one() == 0
        [row] = conn.execute(select(suppressions)).all()
        ledger = conn.execute(select(sends.c.status, sends.c.subject).where(sends.c.customer_id == cid)).all()
        kept = conn.execute(select(func.count()).where(stage_history.c.customer_id == cid)).scalar_one()
        bob = conn.execute(select(customers).where(customers.c.external_id == "bob")).one()
    assert (row.address, row.reason, row.address_hash) == (None, "erased", address_hash("ada@example.com"))
    # what reports count stays, anonymised: the ledger's rows without their content, the stages
    assert sorted(ledger) == [("sent", None), ("sent", None)] and kept == stages
    assert bob.first_name == "Bob"
    # an erased id is unknown from now on
    for argv in (["customers", "export", "ada"], ["customers", "erase", "ada", "--yes"]):
        status, _, err = run(capsys, *argv)
        assert status == 1 and "no customer 'ada' (unknown, or erased)" in err


def test_a_re_import_of_the_erased_address_under_the_same_or_a_new_id_is_not_mailed(
    shop: tuple[Kit, Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    kit, settings = shop
    history(kit, settings)
    assert run(capsys, "customers", "erase", "ada", "--yes")[0] == 0
    outbox = kit.dir / "outbox"
    before = sorted(outbox.glob("*.eml"))
    kit.identify("ada", T0 + 5 * H, email="ada@example.com")
    kit.identify("ada-2", T0 + 5 * H, email="ADA@Example.com")
    for cid in ("ada", "ada-2"):
        kit.track(cid, "cart_updated", T0 + 5 * H)
    deliver(kit, settings, T0 + 7 * H)
    assert sorted(outbox.glob("*.eml")) == before
    assert sorted(s for s in kit.sends("cart_abandonment") if s[0] in ("ada", "ada-2")) == [
        ("ada", "cart_reminder", "suppressed"),
        ("ada-2", "cart_reminder", "suppressed"),
    ]
    with kit.engine.connect() as conn:
        reasons = conn.execute(select(sends.c.reason).where(sends.c.status == "suppressed")).scalars().all()
    assert reasons == ["erased", "erased"]
    # until the address is taken off the list on purpose
    assert run(capsys, "suppressions", "remove", "ada@example.com")[0] == 0


def test_erasure_without_yes_asks_on_a_terminal_and_refuses_otherwise(
    shop: tuple[Kit, Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    kit, _ = shop
    kit.identify("ada", T0)
    status, _, err = run(capsys, "customers", "erase", "ada")
    assert status == 1 and "add --yes" in err
    assert run(capsys, "customers", "export", "ada")[0] == 0
