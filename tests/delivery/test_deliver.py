"""The send path, end to end on a real SMTP server: once, with the right headers, and the policies
checked at send time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from engine.db.schema import customers, sends, unsubscribes
from engine.delivery.deliverer import LOOK_MAX_AGE, Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.delivery.ledger import LEASE
from engine.delivery.policies import MAX_ATTEMPTS
from engine.settings import Settings
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import utc
from tests.support.smtp import Recorder, smtp_server

T0 = utc("2026-11-01T10:00:00")  # 11:00 in Berlin: not quiet


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def shop(db: Engine, tmp_path: Path, smtp: tuple[Recorder, int]) -> Iterator[tuple[Kit, Settings, Recorder]]:
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE, settings="frequency_cap: {max: 2, per: 7d}\nquiet_hours: '21:00-08:00'\n")
    recorder, port = smtp
    settings = Settings(
        database_url=str(db.url),
        email_url=f"smtp://127.0.0.1:{port}",
        rules_dir=tmp_path / "rules",
        templates_dir=Path(__file__).resolve().parents[2] / "message_templates",
        secret_key="test-secret",
        base_url="https://shop.example.com",
    )
    kit.tick(T0 - H)
    yield kit, settings, recorder


def cart(kit: Kit, cid: str, tz: str = "Europe/Berlin", **traits: Any) -> None:
    kit.identify(cid, T0 - H, first_name=cid.title(), timezone=tz, **traits)
    kit.track(
        cid,
        "cart_updated",
        T0,
        items=[{"name": "Trail shoe", "price": 89.0, "qty": 1, "url": "https://shop.example.com/p/1"}],
    )


def dispatch(kit: Kit, settings: Settings, at: Any) -> dict[str, Any]:
    deliverer = Deliverer.create(kit.engine, settings, kit.ruleset)
    return dispatch_due(kit.engine, settings, now=at, deliverer=deliverer).as_dict()


def statuses(kit: Kit) -> list[tuple[str, str, str | None]]:
    with kit.engine.connect() as conn:
        return [(r.template, r.status, r.reason) for r in conn.execute(select(sends).order_by(sends.c.id))]


def test_a_due_cart_reminder_arrives_once_with_the_right_headers(
    shop: tuple[Kit, Settings, Recorder],
) -> None:
    kit, settings, smtp = shop
    cart(kit, "ada")
    kit.tick(T0 + 2 * H)
    assert dispatch(kit, settings, T0 + 2 * H)["sent"] == 1
    assert dispatch(kit, settings, T0 + 2 * H)["queued"] == 0
    kit.tick(T0 + 3 * H)
    dispatch(kit, settings, T0 + 3 * H)
    (msg,) = smtp.messages
    assert msg["To"] == "Ada <ada@example.com>"
    assert msg["Subject"] == "Ada, you left something in your cart"
    assert msg["List-Unsubscribe"].startswith("<https://shop.example.com/u/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "<cart-abandonment.example.com>"
    assert msg["Message-ID"].endswith("@example.com>")
    parts = {
        p.get_content_type(): bytes(p.get_payload(decode=True)).decode()
        for p in msg.walk()
        if not p.is_multipart()
    }
    assert set(parts) == {"text/plain", "text/html"}
    assert (
        "Trail shoe" in parts["text/plain"]
        and "Unsubscribe: https://shop.example.com/u/" in parts["text/plain"]
    )
    assert 'style="' in parts["text/html"] and "Unsubscribe</a>" in parts["text/html"]
    with kit.engine.connect() as conn:
        row = conn.execute(select(sends)).first()
    assert row is not None and row.status == "sent" and row.subject == msg["Subject"]
    assert row.message_id == msg["Message-ID"]


def test_an_unsubscribe_after_queueing_stops_the_send(shop: tuple[Kit, Settings, Recorder]) -> None:
    kit, settings, smtp = shop
    cart(kit, "bob")
    kit.tick(T0 + 2 * H)
    from engine.delivery.dispatch import claim

    claim(kit.engine, now=T0 + 2 * H, limit=100)  # queued: the task is on its way to a worker
    with kit.engine.begin() as conn:
        cid = conn.execute(select(customers.c.id).where(customers.c.external_id == "bob")).scalar_one()
        conn.execute(unsubscribes.insert().values(customer_id=cid, channel="email", topic="*", at=T0 + 2 * H))
    ids = [r.id for r in kit.send_rows()]
    Deliverer.create(kit.engine, settings, kit.ruleset).deliver(ids, now=T0 + 2 * H)
    assert smtp.messages == []
    assert statuses(kit) == [("cart_reminder", "suppressed", "unsubscribed")]


def test_quiet_hours_delay_and_then_deliver(shop: tuple[Kit, Settings, Recorder]) -> None:
    kit, settings, smtp = shop
    cart(kit, "cy", tz="Asia/Tokyo")  # 19:00 in Tokyo at the cart; the reminder falls at 21:00+
    late = T0 + 2 * H  # 21:00 in Tokyo
    kit.tick(late)
    assert dispatch(kit, settings, late)["deferred"] == 1
    assert smtp.messages == []
    row = kit.send_rows()[0]
    assert (row.status, row.due_at) == ("due", utc("2026-11-01T23:00:00"))  # 08:00 in Tokyo
    assert dispatch(kit, settings, utc("2026-11-01T22:59:00"))["queued"] == 0
    assert dispatch(kit, settings, utc("2026-11-01T23:00:00"))["sent"] == 1
    assert len(smtp.messages) == 1


def test_the_frequency_cap_holds(shop: tuple[Kit, Settings, Recorder]) -> None:
    kit, settings, smtp = shop
    cart(kit, "dee")
    kit.tick(T0 + 2 * H)
    dispatch(kit, settings, T0 + 2 * H)
    kit.tick(T0 + 25 * H)
    dispatch(kit, settings, T0 + 25 * H)  # the last chance: second email in 7 days, allowed
    kit.track("dee", "cart_updated", T0 + 30 * H)
    kit.tick(T0 + 32 * H)  # a new cart journey? reentry: none in the test rule, so a new reminder
    dispatch(kit, settings, T0 + 32 * H)
    assert len(smtp.messages) == 2
    assert statuses(kit)[-1] == ("cart_reminder", "suppressed", "frequency_cap")


def test_an_smtp_451_retries_and_then_delivers_once(shop: tuple[Kit, Settings, Recorder]) -> None:
    kit, settings, smtp = shop
    smtp.answers["eve@example.com"] = ["451 4.7.1 Try again later", "451 4.7.1 Try again later"]
    cart(kit, "eve")
    kit.tick(T0 + 2 * H)
    at = T0 + 2 * H
    for _ in range(3):
        dispatch(kit, settings, at)
        row = kit.send_rows()[0]
        at = max(at, row.due_at)
    assert len(smtp.messages) == 1
    row = kit.send_rows()[0]
    assert (row.status, row.attempts) == ("sent", 3)


def test_an_smtp_550_fails_and_suppresses_the_address(shop: tuple[Kit, Settings, Recorder]) -> None:
    kit, settings, smtp = shop
    smtp.answers["fay@example.com"] = ["550 5.1.1 No such user"]
    cart(kit, "fay")
    kit.tick(T0 + 2 * H)
    assert dispatch(kit, settings, T0 + 2 * H)["failed"] == 1
    assert statuses(kit) == [("cart_reminder", "failed", "refused")]
    with kit.engine.connect() as conn:
        c = conn.execute(select(customers).where(customers.c.external_id == "fay")).first()
    assert c is not None and c.email_suppressed_at is not None and "550" in c.email_suppressed_reason
    kit.tick(T0 + 25 * H)
    dispatch(kit, settings, T0 + 25 * H)
    assert statuses(kit)[-1] == ("cart_last_chance", "suppressed", "bounced")
    assert smtp.messages == []


def test_a_message_id_is_the_same_on_every_retry(
    shop: tuple[Kit, Settings, Recorder], tmp_path: Path
) -> None:
    kit, settings, smtp = shop
    cart(kit, "gus")
    kit.tick(T0 + 2 * H)
    file_settings = settings.with_(email_url=f"file://{tmp_path / 'outbox'}")
    dispatch(kit, file_settings, T0 + 2 * H)
    # a crash after the SMTP accepted it: the lease expires and the send goes again
    with kit.engine.begin() as conn:
        conn.execute(sends.update().values(status="sending", lease_until=T0 + 2 * H))
    dispatch(kit, file_settings, T0 + 3 * H)
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1  # the same Message-ID overwrote the same file
    assert kit.send_rows()[0].status == "sent"


def test_exit_on_after_scheduling_cancels_the_send(shop: tuple[Kit, Settings, Recorder]) -> None:
    kit, settings, smtp = shop
    cart(kit, "hal")
    kit.tick(T0 + 2 * H)
    kit.track("hal", "order_placed", T0 + H + 30 * (H / 60))  # arrives late, after scheduling
    assert dispatch(kit, settings, T0 + 2 * H)["cancelled"] == 1
    assert smtp.messages == []


def test_a_broken_template_fails_the_send_with_the_error_text(
    shop: tuple[Kit, Settings, Recorder], tmp_path: Path
) -> None:
    kit, settings, smtp = shop
    (tmp_path / "templates" / "cart_reminder.txt.j2").write_text(
        "Hello {{ customer.first_name }}\n{{ oops }}"
    )
    cart(kit, "ivy")
    kit.tick(T0 + 2 * H)
    assert dispatch(kit, settings.with_(templates_dir=tmp_path / "templates"), T0 + 2 * H)["failed"] == 1
    row = kit.send_rows()[0]
    assert (row.status, row.reason) == ("failed", "template")
    assert "cart_reminder.txt.j2" in row.error and "oops" in row.error
    assert smtp.messages == []


def test_a_send_that_keeps_failing_gives_up_after_the_last_attempt(
    shop: tuple[Kit, Settings, Recorder],
) -> None:
    kit, settings, smtp = shop
    smtp.answers["joe@example.com"] = ["421 4.3.0 Service busy"] * MAX_ATTEMPTS
    cart(kit, "joe")
    kit.tick(T0 + 2 * H)
    at = T0 + 2 * H
    for _ in range(MAX_ATTEMPTS):
        dispatch(kit, settings, at)
        row = kit.send_rows()[0]
        assert row.due_at >= at  # a retry is a row due later, never a timer in a worker
        at = row.due_at
    row = kit.send_rows()[0]
    assert (row.status, row.reason, row.attempts) == ("failed", "gave_up", MAX_ATTEMPTS)
    assert "421 4.3.0 Service busy" in row.error
    assert smtp.messages == []


TRANSACTIONAL = CART_RULE.replace("exit_on:", "transactional: true\nexit_on:")


def test_a_transactional_send_ignores_an_unsubscribe_but_not_a_bounce(
    shop: tuple[Kit, Settings, Recorder],
) -> None:
    kit, settings, smtp = shop
    kit.rules(TRANSACTIONAL, settings="quiet_hours: '00:00-23:59'\n")
    cart(kit, "kim")
    cart(kit, "lea")
    with kit.engine.begin() as conn:
        ids = dict(conn.execute(select(customers.c.external_id, customers.c.id)).all())
        conn.execute(unsubscribes.insert().values(customer_id=ids["kim"], channel="*", topic="*", at=T0))
        conn.execute(customers.update().where(customers.c.id == ids["lea"]).values(email_suppressed_at=T0))
    kit.tick(T0 + 2 * H)
    out = dispatch(kit, settings, T0 + 2 * H)  # quiet hours all day do not hold it back
    assert (out["sent"], out["suppressed"]) == (1, 1)
    (msg,) = smtp.messages
    assert msg["To"] == "Kim <kim@example.com>" and msg["List-Unsubscribe"] is None
    assert sorted(statuses(kit)) == [
        ("cart_reminder", "sent", None),
        ("cart_reminder", "suppressed", "bounced"),
    ]


class UnsubscribeTheOthers:
    """After the first message leaves, every other customer unsubscribes (from another connection);
    each message also takes `seconds_per_message` on the deliverer's clock."""

    name = "email"

    def __init__(self, kit: Kit, settings: Settings, clock: list[float], seconds_per_message: float) -> None:
        self.kit = kit
        self.inner = Deliverer.create(kit.engine, settings, kit.ruleset).channels.email
        self.clock = clock
        self.seconds = seconds_per_message
        self.sent = 0

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def send(self, msg: Any) -> str:
        answer = str(self.inner.send(msg))
        self.clock[0] += self.seconds
        self.sent += 1
        if self.sent == 1:
            with self.kit.engine.begin() as conn:
                others = conn.execute(select(customers.c.id).where(customers.c.email != msg.recipient))
                conn.execute(
                    unsubscribes.insert(),
                    [
                        {"customer_id": c, "channel": "email", "topic": "*", "at": T0 + 2 * H}
                        for c in others.scalars()
                    ],
                )
        return answer


@pytest.mark.parametrize(
    ("group", "seconds_per_message", "sent"),
    [
        (1, 0.0, 1),  # a look before every message: the unsubscribes stop all the others
        (2, 0.0, 2),  # the rest of the first message's group goes (the documented window), no more
        (20, 0.0, 5),  # the whole batch is one group: it all goes
        (20, LOOK_MAX_AGE + 0.1, 1),  # a slow channel: the group's look is made again, it stops them
    ],
)
def test_an_unsubscribe_recorded_while_a_batch_runs_stops_the_next_group(
    shop: tuple[Kit, Settings, Recorder], group: int, seconds_per_message: float, sent: int
) -> None:
    kit, settings, smtp = shop
    for name in ("mia", "nia", "oli", "pat", "quy"):
        cart(kit, name)
    kit.tick(T0 + 2 * H)
    clock = [0.0]
    channel = UnsubscribeTheOthers(kit, settings, clock, seconds_per_message)
    deliverer = Deliverer.create(kit.engine, settings, kit.ruleset, channels={"email": channel})
    deliverer.group = group
    deliverer.clock = lambda: clock[0]
    out = dispatch_due(kit.engine, settings, now=T0 + 2 * H, deliverer=deliverer).as_dict()
    assert (out["sent"], out.get("suppressed", 0)) == (sent, 5 - sent)
    assert len(smtp.messages) == sent
    assert sorted(statuses(kit)) == sorted(
        [("cart_reminder", "sent", None)] * sent
        + [("cart_reminder", "suppressed", "unsubscribed")] * (5 - sent)
    )


def test_every_send_logs_a_json_line_with_rule_send_key_and_customer(
    shop: tuple[Kit, Settings, Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import structlog

    from engine.logs import configure
    from engine.metrics import render_latest

    configure("json")  # writes to this test's captured stderr: undone below for the tests after it
    kit, settings, smtp = shop
    cart(kit, "log")
    kit.tick(T0 + 2 * H)
    try:
        dispatch(kit, settings, T0 + 2 * H)
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    (line,) = [entry for entry in lines if entry.get("event") == "send"]
    assert line["rule"] == "cart_abandonment" and line["status"] == "sent" and line["channel"] == "email"
    assert line["send_key"].startswith("cart_abandonment:0:") and isinstance(line["customer"], int)
    body = render_latest().decode()
    assert 'journey_sends_total{channel="email",rule="cart_abandonment",status="sent"}' in body
    assert "journey_delivery_latency_seconds_bucket" in body


@pytest.mark.parametrize("group", [1, 20])
def test_a_worker_whose_lease_was_taken_back_does_not_send_what_it_no_longer_holds(
    shop: tuple[Kit, Settings, Recorder], group: int
) -> None:
    kit, settings, smtp = shop
    clock = [0.0]
    for name in ("pia", "quin"):
        cart(kit, name)
    kit.tick(T0 + 2 * H)
    inner = Deliverer.create(kit.engine, settings, kit.ruleset).channels.email

    class SlowWorker:
        """While the first message is on its way, the batch's lease runs out (the clock moves past
        it): the dispatcher takes the other send back and another worker claims it (one more attempt)."""

        name = "email"

        def open(self) -> None:
            inner.open()

        def close(self) -> None:
            inner.close()

        def send(self, msg: Any) -> str:
            with kit.engine.begin() as conn:
                conn.execute(
                    sends.update()
                    .where(sends.c.status == "sending", sends.c.message_id.is_(None))
                    .where(
                        sends.c.customer_id
                        != select(customers.c.id).where(customers.c.email == msg.recipient).scalar_subquery()
                    )
                    .values(attempts=sends.c.attempts + 1)
                )
            clock[0] += LEASE.total_seconds()
            return str(inner.send(msg))

    deliverer = Deliverer.create(kit.engine, settings, kit.ruleset, channels={"email": SlowWorker()})
    deliverer.group = group
    deliverer.clock = lambda: clock[0]
    stats = dispatch_due(kit.engine, settings, now=T0 + 2 * H, deliverer=deliverer).as_dict()
    assert (stats["sent"], stats["skipped"]) == (1, 1)
    assert len(smtp.messages) == 1
    rows = sorted((r.status, r.attempts) for r in kit.send_rows())
    assert rows == [("sending", 2), ("sent", 1)]  # the other worker's claim is left alone
