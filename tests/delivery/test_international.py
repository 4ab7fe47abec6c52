"""Internationalised addresses on a real SMTP server: the domain goes IDNA-encoded; a non-ASCII local
part goes with SMTPUTF8 when the server offers it, and otherwise that one send fails with a reason
while the others of its group are sent."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from engine.db.schema import customers, sends
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import utc
from tests.support.smtp import Recorder, serving

T0 = utc("2026-11-01T10:00:00")
PEOPLE = {
    "ann": "ann@example.com",
    "chloe": "chloé@exämple.com",
    "ida": "ida@exämple.com",
    "zoe": "zoe@example.com",
}


@dataclass
class Envelopes(Recorder):
    """Keeps each message's envelope recipients and its bytes, read as RFC 6532 (UTF-8 headers)."""

    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.SMTPUTF8)
        assert isinstance(msg, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"


def deliver(
    db: Engine, tmp_path: Path, *, smtputf8: bool
) -> tuple[Envelopes, dict[str, tuple[str, Any, Any]]]:
    """The four customers' cart reminders, in one group, through a server with or without SMTPUTF8."""
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE)
    kit.tick(T0 - H)
    for cid, email in PEOPLE.items():
        kit.identify(cid, T0 - H, email=email)
        kit.track(cid, "cart_updated", T0)
    kit.tick(T0 + 2 * H)
    with serving(Envelopes(), enable_SMTPUTF8=smtputf8) as (server, port):
        settings = Settings(
            database_url=str(db.url),
            email_url=f"smtp://127.0.0.1:{port}",
            rules_dir=tmp_path / "rules",
            templates_dir=tmp_path / "templates",
            secret_key="test-secret",
        )
        deliverer = Deliverer.create(db, settings, kit.ruleset)
        dispatch_due(db, settings, now=T0 + 2 * H, deliverer=deliverer)
    with db.connect() as conn:
        rows = conn.execute(
            select(customers.c.external_id, sends.c.status, sends.c.reason, sends.c.error).join(
                customers, customers.c.id == sends.c.customer_id
            )
        )
        return server, {r.external_id: (r.status, r.reason, r.error) for r in rows}


@pytest.fixture
def offered(db: Engine, tmp_path: Path) -> Iterator[tuple[Envelopes, dict[str, tuple[str, Any, Any]]]]:
    yield deliver(db, tmp_path, smtputf8=True)


def test_an_international_address_reaches_a_server_that_offers_smtputf8(
    offered: tuple[Envelopes, dict[str, tuple[str, Any, Any]]],
) -> None:
    server, outcome = offered
    assert {cid: status for cid, (status, _, _) in outcome.items()} == dict.fromkeys(PEOPLE, "sent")
    by_rcpt = {rcpts[0]: msg for rcpts, msg in server.received}
    assert set(by_rcpt) == {
        "ann@example.com",
        "chloé@xn--exmple-cua.com",
        "ida@xn--exmple-cua.com",
        "zoe@example.com",
    }
    assert by_rcpt["chloé@xn--exmple-cua.com"]["To"] == "chloé@xn--exmple-cua.com"
    assert by_rcpt["ida@xn--exmple-cua.com"]["To"] == "ida@xn--exmple-cua.com"


def test_without_smtputf8_only_the_non_ascii_local_part_fails_and_the_rest_of_its_group_is_sent(
    db: Engine, tmp_path: Path
) -> None:
    server, outcome = deliver(db, tmp_path, smtputf8=False)
    status, reason, error = outcome["chloe"]
    assert (status, reason) == ("failed", "refused")
    assert "SMTPUTF8" in error and "chloé@xn--exmple-cua.com" in error
    assert {cid: o[0] for cid, o in outcome.items() if cid != "chloe"} == {
        "ann": "sent",
        "ida": "sent",
        "zoe": "sent",
    }
    # an international domain alone needs nothing of the server: it goes IDNA-encoded
    assert sorted(rcpts[0] for rcpts, _ in server.received) == [
        "ann@example.com",
        "ida@xn--exmple-cua.com",
        "zoe@example.com",
    ]
