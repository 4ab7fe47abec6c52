"""Every provider against a `journey serve` subprocess: the documented samples, signed with keys
generated here, land on the right customer and stop the next send with their reason; forged,
altered and replayed reports are refused and record nothing; SNS's SubscriptionConfirmation is
confirmed against a local HTTP server standing in for the SubscribeURL (and for the certificate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from engine.db.schema import customers, events, feedback, suppressions
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.settings import Settings
from tests.support.feedback import Keys, Sent, altered, filled, forged, load, request, sns_sign
from tests.support.feedback_shop import RECEIPT_RULE, T0
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import free_port

pytestmark = pytest.mark.slow

#: `journey serve`, with the SNS fetches going to the test's stand-in instead of Amazon
WRAPPER = """
import functools, os, sys
from urllib.parse import urlsplit
import httpx
import engine.http.app as app
stand_in = os.environ["TEST_SNS_STAND_IN"]
def get(url):
    parts = urlsplit(url)
    answer = httpx.get(stand_in + parts.path + ("?" + parts.query if parts.query else ""))
    answer.raise_for_status()
    return answer.content
app.create_app = functools.partial(app.create_app, sns_get=get)
from engine.cli import main
sys.exit(main())
"""


class StandIn(BaseHTTPRequestHandler):
    """Amazon SNS as the service sees it: the signing certificate, and the SubscribeURL."""

    pem = b""
    confirmed: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path.endswith(".pem"):
            body = self.pem
        else:
            self.confirmed.append(self.path)
            body = b"<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>x</SubscriptionArn>"
            body += b"</ConfirmSubscriptionResult></ConfirmSubscriptionResponse>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in(keys: Keys) -> Iterator[tuple[str, list[str]]]:
    StandIn.pem = keys.cert_pem
    StandIn.confirmed = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", StandIn.confirmed
    finally:
        server.shutdown()


@pytest.fixture
def keys() -> Keys:
    return Keys()


def serve(settings: Settings, keys: Keys, stand_in: str, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {
        **os.environ,
        **keys.env(),
        "JOURNEY_DATABASE_URL": settings.database_url,
        "JOURNEY_RULES_DIR": str(settings.rules_dir),
        "JOURNEY_TEMPLATES_DIR": str(settings.templates_dir),
        "JOURNEY_SECRET_KEY": str(settings.secret_key),
        "JOURNEY_API_KEY": "k",
        "TEST_SNS_STAND_IN": stand_in,
    }
    server = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "journey serve did not start"
        time.sleep(0.05)


def counts(engine: Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (events, feedback, suppressions)
        )


#: who gets which report, from whom, and what their next email then is
PLAN = {
    "ada": ("ses", "hard_bounce", "hard_bounce"),
    "bea": ("sendgrid", "complaint", "complaint"),
    "cy": ("postmark", "hard_bounce", "hard_bounce"),
    "di": ("mailgun", "complaint", "complaint"),
}


def test_every_provider_s_reports_through_journey_serve(
    db: Engine, tmp_path: Path, keys: Keys, stand_in: tuple[str, list[str]]
) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE, RECEIPT_RULE)
    settings = Settings(
        database_url=str(db.url),
        email_url=f"file://{tmp_path / 'outbox'}",
        rules_dir=tmp_path / "rules",
        templates_dir=tmp_path / "templates",
        secret_key="test-secret",
    )
    kit.tick(T0 - H)
    for cid in PLAN:
        kit.identify(cid, T0 - H)
        kit.track(cid, "cart_updated", T0)
    kit.tick(T0 + 2 * H)
    dispatch_due(db, settings, now=T0 + 2 * H, deliverer=Deliverer.create(db, settings, kit.ruleset))
    sent = {}
    from email import message_from_bytes

    for path in (tmp_path / "outbox").glob("*.eml"):
        msg = message_from_bytes(path.read_bytes())
        sent[str(msg["To"]).split("@")[0]] = Sent.of(msg)
    server, base = serve(settings, keys, stand_in[0], tmp_path)
    try:
        now = datetime.now(UTC)  # the service's clock is the wall clock
        happened = T0 + 2 * H + H / 6

        def post(provider: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
            return httpx.post(f"{base}/feedback/{provider}", content=body, headers=headers)

        # SNS first asks to confirm the subscription: the service GETs the SubscribeURL
        env = sns_sign(load("sns_subscription_confirmation.json") | {"Timestamp": now.isoformat()}, keys.sns)
        r = post("ses", json.dumps(env).encode(), {"x-amz-sns-message-type": "SubscriptionConfirmation"})
        assert (r.status_code, r.json()["confirmed"]) == (200, True)
        assert stand_in[1] == [
            "/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37..."
        ]

        for cid, (provider, kind, _) in PLAN.items():
            before = counts(db)
            # forged: signed with other keys (or the wrong password)
            assert (
                post(
                    provider, *forged(provider, filled(provider, kind, sent[cid], happened), now)
                ).status_code
                == 401
            )
            # replayed from long ago (Postmark has no signature, so no time to be too old)
            if provider != "postmark":
                old = request(
                    provider,
                    filled(provider, kind, sent[cid], happened),
                    keys,
                    datetime(2026, 1, 1, tzinfo=UTC),
                )
                assert post(provider, *old).status_code == 401
            assert counts(db) == before
            # delivered, then the bounce or complaint: recorded on the customer
            assert (
                post(
                    provider,
                    *request(provider, filled(provider, "delivered", sent[cid], happened), keys, now),
                ).json()["recorded"]
                == 1
            )
            body, headers = request(provider, filled(provider, kind, sent[cid], happened + H / 6), keys, now)
            assert post(provider, body, headers).json()["recorded"] == 1
            recorded = counts(db)
            # the same request again: a repeat recorded once (Mailgun: its token is refused)
            again = post(provider, body, headers)
            assert again.status_code == (403 if provider == "mailgun" else 200)
            # altered: what the signature covers changed (Postmark: its credentials)
            assert post(provider, *altered(provider, body, headers, keys)).status_code == 401
            assert counts(db) == recorded
        metrics = httpx.get(f"{base}/metrics").text
    finally:
        server.terminate()
        server.communicate(timeout=15)
    for cid, (provider, kind, _) in PLAN.items():
        with db.connect() as conn:
            names = conn.execute(
                select(events.c.name, events.c.properties)
                .join(customers, customers.c.id == events.c.customer_id)
                .where(
                    customers.c.external_id == cid,
                    events.c.name.in_(["email_delivered", "email_bounced", "email_complained"]),
                )
                .order_by(events.c.ts)
            ).all()
        expected = "email_bounced" if kind == "hard_bounce" else "email_complained"
        assert [n for n, _ in names] == ["email_delivered", expected]
        assert {p["provider"] for _, p in names} == {provider}
        assert (
            f'journey_feedback_reports_total{{kind="delivered",outcome="recorded",provider="{provider}"}} 1.0'
            in metrics
        )
    # the next step of each journey is not sent, with the reason
    kit.tick(T0 + 25 * H)
    dispatch_due(db, settings, now=T0 + 25 * H, deliverer=Deliverer.create(db, settings, kit.ruleset))
    with db.connect() as conn:
        from engine.db.schema import sends

        got = dict(
            conn.execute(
                select(customers.c.external_id, sends.c.reason)
                .join(customers, customers.c.id == sends.c.customer_id)
                .where(sends.c.template == "cart_last_chance", sends.c.status == "suppressed")
            ).all()
        )
    assert got == {cid: reason for cid, (_, _, reason) in PLAN.items()}
