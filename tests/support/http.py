"""Fixtures for the HTTP service: a shop with one customer, the app over TestClient, and the same
app served over real HTTP by uvicorn in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import Engine, func, select

from engine.db.schema import customers, events, unsubscribes
from engine.delivery.context import Links
from engine.delivery.tokens import Signer
from engine.http.app import create_app
from engine.settings import Settings
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import free_port, utc

NOW = utc("2026-11-01T12:00:00")
KEY = "test-api-key"
SECRET = "test-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}

NEWSLETTER_RULE = """
id: weekly_news
description: New arrivals and offers, every Monday.
topic: newsletter
trigger: {schedule: "0 9 * * 1", audience: {attribute: email, exists: true}}
steps:
  - send: newsletter
"""

#: the preference page's topics, as customers read them
TOPICS = """
topics:
  newsletter: News and offers
  carts: Reminders about your cart
  unused: Never named by a rule
"""

RECEIPT_RULE = """
id: order_receipt
description: The receipt for an order.
transactional: true
trigger: {event: order_placed}
steps:
  - send: receipt
"""


@dataclass
class Shop:
    kit: Kit
    settings: Settings
    client: TestClient

    @property
    def engine(self) -> Engine:
        return self.kit.engine

    def links(self, cid: str = "ada", send_id: int = 7) -> Links:
        with self.engine.connect() as conn:
            row = conn.execute(select(customers).where(customers.c.external_id == cid)).first()
        assert row is not None
        return Links("", Signer(SECRET), row.id, send_id, "cart_abandonment", row.referral_code)

    def customer_id(self, cid: str = "ada") -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(customers.c.id).where(customers.c.external_id == cid)).scalar_one()
            )

    def count(self, name: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(events).where(events.c.name == name)
                ).scalar_one()
            )

    def events(self, name: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(events).where(events.c.name == name).order_by(events.c.id)))

    def opt_outs(self) -> list[tuple[str, str, str | None]]:
        """(channel, topic, source) of every unsubscribes row."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(unsubscribes).order_by(unsubscribes.c.topic))
            return [(r.channel, r.topic, r.source) for r in rows]


@pytest.fixture
def shop(db: Engine, tmp_path: Path) -> Shop:
    kit = Kit(db, tmp_path)
    kit.rules(
        CART_RULE + "topic: carts\n",
        NEWSLETTER_RULE,
        RECEIPT_RULE,
        settings="referral_landing_url: https://shop.example.com/welcome?src=mail\n" + TOPICS,
    )
    settings = Settings(
        database_url=str(db.url),
        rules_dir=tmp_path / "rules",
        templates_dir=tmp_path / "templates",
        secret_key=SECRET,
        api_key=KEY,
    )
    kit.identify("ada", NOW - H, first_name="Ada", referral_code="ADA12345")
    client = TestClient(create_app(settings, engine=db, now=lambda: NOW))
    return Shop(kit, settings, client)


def tampered(token: str) -> str:
    """The token with one character of its signature changed.

    The signature's last base64 character carries two padding bits, so changing only that one
    can decode to the same bytes; a character in the middle always changes the signature.
    """
    i = token.rfind(".") + 5
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


def expired_token(purpose: str, payload: dict[str, Any], age_s: int) -> str:
    """A token signed `age_s` seconds ago, as an old email would carry."""

    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_s

    return str(URLSafeTimedSerializer(SECRET, salt=f"journey.{purpose}", signer=Past).dumps(payload))


@contextmanager
def served(app: Any, **config: Any) -> Iterator[str]:
    """Serve an ASGI app over real HTTP on a free loopback port; yields its base URL. `config`
    goes to uvicorn's Config (`http=` a protocol class)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live(shop: Shop) -> Iterator[str]:
    """The shop's service over real HTTP; yields its base URL."""
    with served(create_app(shop.settings, engine=shop.engine, now=lambda: NOW)) as base:
        yield base
