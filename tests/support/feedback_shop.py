"""A shop whose emails go out through a provider that reports back: the cart journey (a reminder,
23 hours later a last chance) and an order receipt (transactional), emails written to an outbox,
and the HTTP service with every provider's webhook configured (fixtures `hooks` and `keys`; a
conftest imports them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, func, select

from engine.db.schema import customers, events, feedback, sends, suppressions
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.http.app import create_app
from engine.settings import Settings
from tests.support.feedback import CERT_URL, Keys, Sent, filled, forged, request
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import utc

T0 = utc("2026-11-01T10:00:00")

RECEIPT_RULE = """
id: order_receipt
transactional: true
trigger: {event: order_placed}
steps:
  - send: receipt
"""


@dataclass
class Clock:
    now: datetime


@dataclass
class Hooks:
    kit: Kit
    settings: Settings
    keys: Keys
    clock: Clock
    client: TestClient
    #: every URL the service GETs from SNS (certificates, SubscribeURLs)
    fetched: list[str]

    @property
    def engine(self) -> Engine:
        return self.kit.engine

    def dispatch(self, at: datetime) -> dict[str, Any]:
        self.kit.tick(at)
        deliverer = Deliverer.create(self.engine, self.settings, self.kit.ruleset)
        return dispatch_due(self.engine, self.settings, now=at, deliverer=deliverer).as_dict()

    def cart_reminder(self, cid: str, **traits: Any) -> Sent:
        """The customer leaves a cart at T0; the reminder goes out at T0 + 2h: what it carried."""
        return self.cart_reminders(cid, **traits)[0]

    def cart_reminders(self, *cids: str, **traits: Any) -> list[Sent]:
        for cid in cids:
            self.kit.identify(cid, T0 - H, **traits)
            self.kit.track(cid, "cart_updated", T0)
        self.dispatch(T0 + 2 * H)
        return [self.sent(cid, "cart_reminder") for cid in cids]

    def sent(self, cid: str, template: str) -> Sent:
        with self.engine.connect() as conn:
            mid = conn.execute(
                select(sends.c.message_id)
                .join(customers, customers.c.id == sends.c.customer_id)
                .where(customers.c.external_id == cid, sends.c.template == template, sends.c.status == "sent")
            ).scalar_one()
        for path in (self.kit.dir / "outbox").glob("*.eml"):
            msg = message_from_bytes(path.read_bytes())
            if msg["Message-ID"] == mid:
                return Sent.of(msg)
        raise AssertionError(f"no email {mid} in the outbox")

    def post(self, provider: str, kind: str, sent: Sent, at: datetime, url: str | None = None) -> Response:
        """The provider reports `kind` about the message `sent`, happening at `at`."""
        body, headers = request(provider, filled(provider, kind, sent, at, url), self.keys, self.clock.now)
        return self.post_raw(provider, body, headers)

    def post_raw(self, provider: str, body: bytes, headers: dict[str, str]) -> Response:
        response: Response = self.client.post(f"/feedback/{provider}", content=body, headers=headers)
        return response

    def post_forged(self, provider: str, kind: str, sent: Sent, at: datetime) -> Response:
        body, headers = forged(provider, filled(provider, kind, sent, at), self.clock.now)
        return self.post_raw(provider, body, headers)

    def events(self, name: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(events, customers.c.external_id)
                    .join(customers, customers.c.id == events.c.customer_id)
                    .where(events.c.name == name)
                    .order_by(events.c.id)
                )
            )

    def suppressions(self) -> dict[str | None, tuple[str, str]]:
        """address -> (reason, source)."""
        with self.engine.connect() as conn:
            return {r.address: (r.reason, r.source) for r in conn.execute(select(suppressions))}

    def recorded(self) -> tuple[int, int, int]:
        """(events, feedback rows, suppressions): what a refused request must leave as it was."""
        with self.engine.connect() as conn:
            return tuple(  # type: ignore[return-value]
                int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (events, feedback, suppressions)
            )

    def statuses(self, cid: str) -> list[tuple[str, str, str | None]]:
        with self.engine.connect() as conn:
            return [
                (r.template, r.status, r.reason)
                for r in conn.execute(
                    select(sends.c.template, sends.c.status, sends.c.reason)
                    .join(customers, customers.c.id == sends.c.customer_id)
                    .where(customers.c.external_id == cid)
                    .order_by(sends.c.id)
                )
            ]


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


def sns_stand_in(keys: Keys, fetched: list[str]) -> Any:
    def get(url: str) -> bytes:
        fetched.append(url)
        if url == CERT_URL:
            return keys.cert_pem
        return b"<ConfirmSubscriptionResponse/>"

    return get


@pytest.fixture
def hooks(db: Engine, tmp_path: Path, keys: Keys) -> Iterator[Hooks]:
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE, RECEIPT_RULE)
    settings = Settings(
        database_url=str(db.url),
        email_url=f"file://{tmp_path / 'outbox'}",
        rules_dir=tmp_path / "rules",
        templates_dir=tmp_path / "templates",
        secret_key="test-secret",
        api_key="test-api-key",
        base_url="https://shop.example.com",
        **keys.settings(),
    )
    kit.tick(T0 - H)
    clock = Clock(T0 + 3 * H)
    fetched: list[str] = []
    app = create_app(settings, engine=db, now=lambda: clock.now, sns_get=sns_stand_in(keys, fetched))
    with TestClient(app) as client:
        yield Hooks(kit, settings, keys, clock, client, fetched)
