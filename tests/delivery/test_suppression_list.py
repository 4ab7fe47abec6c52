"""The suppression list at send time: checked with the unsubscribes right before each group leaves,
by address (case-insensitive, the domain in IDNA form), whoever the customer; hard bounces and
erasures stop every message, complaints and manual entries marketing only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from engine.db.schema import customers, sends, suppressions
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from engine.suppressions import Entry, SuppressionReason, add
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import utc
from tests.support.smtp import Recorder, smtp_server

T0 = utc("2026-11-01T10:00:00")

RECEIPT_RULE = """
id: order_receipt
transactional: true
trigger: {event: order_placed}
steps:
  - send: receipt
"""


@pytest.fixture
def shop(db: Engine, tmp_path: Path) -> Iterator[tuple[Kit, Settings, Recorder]]:
    with smtp_server() as (recorder, port):
        kit = Kit(db, tmp_path)
        kit.rules(CART_RULE, RECEIPT_RULE)
        settings = Settings(
            database_url=str(db.url),
            email_url=f"smtp://127.0.0.1:{port}",
            rules_dir=tmp_path / "rules",
            templates_dir=tmp_path / "templates",
            secret_key="test-secret",
        )
        kit.tick(T0 - H)
        yield kit, settings, recorder


def statuses(kit: Kit) -> list[tuple[str, str, str | None]]:
    with kit.engine.connect() as conn:
        return sorted(
            (r.external_id, r.status, r.reason)
            for r in conn.execute(
                select(customers.c.external_id, sends.c.status, sends.c.reason).join(
                    customers, customers.c.id == sends.c.customer_id
                )
            )
        )


def suppress(kit: Kit, address: str, reason: SuppressionReason) -> None:
    add(kit.engine, [Entry.of(address, reason, "test", T0)])


def run(kit: Kit, settings: Settings, at: datetime, **channels: Any) -> dict[str, Any]:
    kit.tick(at)
    deliverer = Deliverer.create(kit.engine, settings, kit.ruleset, channels=channels or None)
    return dispatch_due(kit.engine, settings, now=at, deliverer=deliverer).as_dict()


def test_an_address_on_the_list_is_matched_whatever_its_case_and_domain_form(
    shop: tuple[Kit, Settings, Recorder],
) -> None:
    kit, settings, smtp = shop
    suppress(kit, "ADA@Example.COM", SuppressionReason.MANUAL)
    suppress(kit, "Chloé@XN--EXMPLE-CUA.com", SuppressionReason.HARD_BOUNCE)
    for cid, email in (
        ("ada", "ada@example.com"),
        ("chloe", "chloé@exämple.com"),
        ("dan", "dan@example.com"),
    ):
        kit.identify(cid, T0 - H, email=email)
        kit.track(cid, "cart_updated", T0)
    run(kit, settings, T0 + 2 * H)
    assert statuses(kit) == [
        ("ada", "suppressed", "manual"),
        ("chloe", "suppressed", "hard_bounce"),
        ("dan", "sent", None),
    ]
    assert [m["To"] for m in smtp.messages] == ["dan@example.com"]


@pytest.mark.parametrize(
    ("reason", "receipt"),
    [("hard_bounce", "suppressed"), ("erased", "suppressed"), ("complaint", "sent"), ("manual", "sent")],
)
def test_hard_bounces_and_erasures_stop_receipts_complaints_and_manual_entries_do_not(
    shop: tuple[Kit, Settings, Recorder], reason: str, receipt: str
) -> None:
    kit, settings, _ = shop
    kit.identify("ada", T0 - H)
    suppress(kit, "ada@example.com", SuppressionReason(reason))
    kit.track("ada", "cart_updated", T0)
    run(kit, settings, T0 + 2 * H)
    kit.track("ada", "order_placed", T0 + 2 * H)
    run(kit, settings, T0 + 3 * H)
    with kit.engine.connect() as conn:
        got = {r.template: (r.status, r.reason) for r in conn.execute(select(sends))}
    assert got["cart_reminder"] == ("suppressed", reason)
    assert got["receipt"] == (receipt, reason if receipt == "suppressed" else None)


class SuppressTheOthers:
    """After the first message leaves, a hard bounce of every other address arrives (feedback
    recorded from another connection while the batch runs)."""

    name = "email"

    def __init__(self, kit: Kit, settings: Settings) -> None:
        self.kit = kit
        self.inner = Deliverer.create(kit.engine, settings, kit.ruleset).channels.email
        self.sent = 0

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def send(self, msg: Any) -> str:
        answer = str(self.inner.send(msg))
        self.sent += 1
        if self.sent == 1:
            with self.kit.engine.connect() as conn:
                others = conn.execute(select(customers.c.email).where(customers.c.email != msg.recipient))
                entries = [Entry.of(e, SuppressionReason.HARD_BOUNCE, "ses", T0) for e in others.scalars()]
            add(self.kit.engine, entries)
        return answer


@pytest.mark.parametrize(("group", "sent"), [(1, 1), (20, 4)])
def test_a_bounce_recorded_while_a_batch_runs_stops_the_next_group(
    shop: tuple[Kit, Settings, Recorder], group: int, sent: int
) -> None:
    kit, settings, smtp = shop
    for cid in ("mia", "nia", "oli", "pat"):
        kit.identify(cid, T0 - H)
        kit.track(cid, "cart_updated", T0)
    kit.tick(T0 + 2 * H)
    deliverer = Deliverer.create(
        kit.engine, settings, kit.ruleset, channels={"email": SuppressTheOthers(kit, settings)}
    )
    deliverer.group = group
    out = dispatch_due(kit.engine, settings, now=T0 + 2 * H, deliverer=deliverer).as_dict()
    assert (out["sent"], out.get("suppressed", 0)) == (sent, 4 - sent)
    assert len(smtp.messages) == sent
    assert sorted(s for _, s, _ in statuses(kit)) == sorted(["sent"] * sent + ["suppressed"] * (4 - sent))
    assert {r for _, _, r in statuses(kit)} == ({None, "hard_bounce"} if sent < 4 else {None})


def test_an_smtp_hard_bounce_puts_the_address_on_the_list_for_every_customer_who_has_it(
    shop: tuple[Kit, Settings, Recorder],
) -> None:
    kit, settings, smtp = shop
    smtp.answers["shared@example.com"] = ["550 5.1.1 <shared@example.com>: no such user"]
    kit.identify("eve", T0 - H, email="shared@example.com")
    kit.track("eve", "cart_updated", T0)
    run(kit, settings, T0 + 2 * H)
    with kit.engine.connect() as conn:
        [row] = conn.execute(select(suppressions)).all()
    assert (row.address, row.reason, row.source) == ("shared@example.com", "hard_bounce", "smtp")
    assert "550" in row.detail
    # another customer with the same address, in another case, gets nothing either
    kit.identify("fay", T0 + 3 * H, email="Shared@Example.com")
    kit.track("fay", "cart_updated", T0 + 3 * H)
    run(kit, settings, T0 + 5 * H)
    assert ("fay", "suppressed", "hard_bounce") in statuses(kit)
    assert smtp.messages == []
