"""Channels on real servers: SMTP (aiosmtpd), webhooks (http.server), `.eml` files; and the MIME
message every email is built as."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import Engine, select

from engine.db.schema import events, sends
from engine.delivery.channels.email import FileEmailChannel, SmtpEmailChannel, email_channel
from engine.delivery.channels.webhook import FileWebhookChannel, WebhookChannel, signature
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.delivery.mime import Email, build_email, message_id, send_key
from engine.delivery.render import Rendered
from engine.errors import ConfigError, DeliveryError
from engine.settings import Settings
from tests.support.hooks import Hooks
from tests.support.kit import H, Kit
from tests.support.services import free_port, utc
from tests.support.smtp import PipeliningRecorder, Recorder, serving, smtp_server

NOW = utc("2026-11-02T10:00:00")


def email(
    to: str = "ada@example.com",
    *,
    occurrence: int = 1,
    subject: str = "Your cart",
    unsubscribe: str | None = "https://shop.example.com/u/tok",
    mailto: str | None = None,
    text: str = "Hello Ada",
    html: str = "<p>Hello <b>Ada</b></p>",
) -> Email:
    return build_email(
        rendered=Rendered(subject=subject, html=html, text=text),
        mail_from="Shop <hello@shop.example.com>",
        to_email=to,
        to_name="Ada",
        key=send_key("cart_abandonment", "0", 7, occurrence),
        rule_id="cart_abandonment",
        unsubscribe_url=unsubscribe,
        unsubscribe_mailto=mailto,
        date=NOW,
    )


# ------------------------------------------------------------------------------------------ MIME


def test_a_marketing_email_has_both_parts_and_the_one_click_unsubscribe_headers() -> None:
    msg = message_from_bytes(email(mailto="unsubscribe@shop.example.com").as_bytes())
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.get_payload()] == ["text/plain", "text/html"]  # type: ignore[union-attr]
    assert msg["From"] == "Shop <hello@shop.example.com>"
    assert msg["To"] == "Ada <ada@example.com>"
    assert msg["List-Unsubscribe"] == (
        "<https://shop.example.com/u/tok>, <mailto:unsubscribe@shop.example.com?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "<cart-abandonment.shop.example.com>"
    assert msg["X-Journey-Send-Key"] == "cart_abandonment:0:7:1"
    assert msg["Date"] == "Mon, 02 Nov 2026 10:00:00 +0000"


def test_the_message_id_depends_only_on_the_send_key() -> None:
    assert email()["Message-ID"] == email()["Message-ID"]
    assert email()["Message-ID"] != email(occurrence=2)["Message-ID"]
    expected = hashlib.sha256(b"cart_abandonment:0:7:1").hexdigest()[:32]
    assert email()["Message-ID"] == f"<{expected}@shop.example.com>"
    assert message_id("k", "example.org").endswith("@example.org>")


def test_a_transactional_email_carries_no_unsubscribe_headers() -> None:
    msg = email(unsubscribe=None)
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
    assert msg["List-Id"] == "<cart-abandonment.shop.example.com>"


def test_a_non_ascii_subject_survives_the_trip() -> None:
    msg = message_from_bytes(email(subject="Vergiss deinen Warenkorb nicht, Zoë").as_bytes())
    assert str(make_header(decode_header(msg["Subject"]))) == "Vergiss deinen Warenkorb nicht, Zoë"


def test_non_ascii_names_and_bodies_survive_the_trip() -> None:
    text = "Grüße, Zoë!\n.a line that starts with a dot\n" + "long " * 60 + "\n"
    msg = build_email(
        rendered=Rendered(subject="Hallo", html="<p>Grüße</p>", text=text),
        mail_from="Läden GmbH <hello@shop.example.com>",
        to_email="zoe@example.com",
        to_name="Zoë Müller",
        key="k",
        rule_id="welcome",
        unsubscribe_url=None,
        date=NOW,
    )
    parsed = message_from_bytes(msg.as_bytes())
    assert str(make_header(decode_header(parsed["To"]))) == "Zoë Müller <zoe@example.com>"
    assert str(make_header(decode_header(parsed["From"]))) == "Läden GmbH <hello@shop.example.com>"
    plain, html = (bytes(p.get_payload(decode=True)).decode() for p in parsed.walk() if not p.is_multipart())
    assert plain.replace("\r\n", "\n") == text and html == "<p>Grüße</p>"  # CRLF: canonical text
    # the bodies go as they are (8bit, RFC 6152): SMTP's limit of 998 octets a line holds
    assert msg.eight_bit and [p["Content-Transfer-Encoding"] for p in parsed.walk()][1:] == ["8bit", "8bit"]
    assert all(len(line) <= 998 for line in msg.as_bytes().split(b"\r\n"))
    assert (msg.sender, msg.recipient) == ("hello@shop.example.com", "zoe@example.com")
    # for a server without 8BITMIME: quoted-printable, short lines, the same text
    quoted = msg.seven_bit()
    again = message_from_bytes(quoted.as_bytes())
    assert not quoted.eight_bit and quoted["Message-ID"] == msg["Message-ID"]
    assert [p["Content-Transfer-Encoding"] for p in again.walk()][1:] == ["quoted-printable"] * 2
    assert all(len(line) <= 78 for line in quoted.as_bytes().split(b"\r\n")[10:])
    plain, html = (bytes(p.get_payload(decode=True)).decode() for p in again.walk() if not p.is_multipart())
    assert plain.replace("\r\n", "\n") == text and html == "<p>Grüße</p>"


def test_a_body_goes_quoted_printable_when_a_line_is_too_long_for_smtp() -> None:
    ascii_text = "Hello\n" + "x" * 1200 + "\n"
    msg = email(text=ascii_text)
    parsed = message_from_bytes(msg.as_bytes())
    part = next(p for p in parsed.walk() if not p.is_multipart())
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert all(len(line) <= 78 for line in msg.as_bytes().split(b"\r\n"))
    assert bytes(part.get_payload(decode=True)).decode().replace("\r\n", "\n") == ascii_text
    # short ASCII lines need no encoding at all, and nothing of SMTP's 8BITMIME
    short = email(text="Hello Ada\n")
    assert not short.eight_bit
    assert "Content-Transfer-Encoding: 7bit" in short.as_bytes().decode()


def test_a_long_unsubscribe_url_stays_on_one_line() -> None:
    url = "https://shop.example.com/u/" + "x" * 300
    raw = email(unsubscribe=url).as_bytes().decode()
    assert f"\r\nList-Unsubscribe: <{url}>\r\n" in raw


# ------------------------------------------------------------------------------------ file://


def test_the_file_channel_writes_one_eml_file_per_message_id(tmp_path: Path) -> None:
    channel = email_channel(f"file://{tmp_path / 'outbox'}")
    assert isinstance(channel, FileEmailChannel)
    channel.send(email())
    channel.send(email())  # a retry of the same send: the same file
    channel.send(email(occurrence=2))
    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no temporary file left behind
    names = {f.stem for f in files}
    assert f"{email()['Message-ID']}".strip("<>") in names
    parsed = message_from_bytes(files[0].read_bytes())
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# ---------------------------------------------------------------------------------- SMTP URLs


def test_email_urls_name_the_smtp_server_and_its_security() -> None:
    plain = email_channel("smtp://mail.example.com:2525")
    assert isinstance(plain, SmtpEmailChannel)
    assert (plain.host, plain.port, plain.user, plain.tls, plain.starttls) == (
        "mail.example.com",
        2525,
        None,
        False,
        False,
    )
    submit = email_channel("smtp://me%40shop.com:p%2Fss@mail.example.com:587?starttls=1")
    assert isinstance(submit, SmtpEmailChannel)
    assert (submit.user, submit.password, submit.starttls) == ("me@shop.com", "p/ss", True)
    implicit = email_channel("smtps://mail.example.com")
    assert isinstance(implicit, SmtpEmailChannel)
    assert (implicit.port, implicit.tls) == (465, True)


def test_an_unknown_email_url_says_which_forms_work() -> None:
    with pytest.raises(ConfigError, match=r"JOURNEY_EMAIL_URL 'http://x'.*smtp://host:port"):
        email_channel("http://x")


# --------------------------------------------------------------------------------- SMTP server


class CountingRecorder(Recorder):
    """Records the connection each message came on; can drop a connection after a message."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[Any] = []
        self.drop_after_next = False
        self.dropped = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        self.sessions.append(session)
        if self.drop_after_next:
            self.drop_after_next = False

            def drop() -> None:
                server.transport.close()
                self.dropped.set()

            server.loop.call_soon(drop)
        return answer

    def connections(self) -> int:
        return len({id(s) for s in self.sessions})


@pytest.fixture
def counting() -> Iterator[tuple[CountingRecorder, int]]:
    with serving(CountingRecorder()) as server:
        yield server


def test_one_smtp_connection_carries_a_whole_batch(counting: tuple[CountingRecorder, int]) -> None:
    recorder, port = counting
    channel = email_channel(f"smtp://127.0.0.1:{port}")
    for n in range(5):
        assert channel.send(email(f"c{n}@example.com", occurrence=n)).startswith("250")
    channel.close()
    channel.send(email("late@example.com"))  # a new batch opens a new connection
    channel.close()
    assert len(recorder.messages) == 6
    assert recorder.connections() == 2


def test_a_dropped_smtp_connection_is_reopened_once(counting: tuple[CountingRecorder, int]) -> None:
    recorder, port = counting
    channel = email_channel(f"smtp://127.0.0.1:{port}")
    recorder.drop_after_next = True
    channel.send(email("a@example.com"))
    assert recorder.dropped.wait(10)
    channel.send(email("b@example.com", occurrence=2))
    channel.close()
    assert [m["To"] for m in recorder.messages] == ["Ada <a@example.com>", "Ada <b@example.com>"]
    assert recorder.connections() == 2


def test_smtp_answers_tell_a_retry_from_a_refusal() -> None:
    with smtp_server() as (recorder, port):
        recorder.answers["busy@example.com"] = ["451 4.7.1 Greylisted, try again later"]
        recorder.answers["gone@example.com"] = ["550 5.1.1 No such user"]
        channel = email_channel(f"smtp://127.0.0.1:{port}")
        with pytest.raises(DeliveryError, match="451 4.7.1 Greylisted") as later:
            channel.send(email("busy@example.com"))
        with pytest.raises(DeliveryError, match="550 5.1.1 No such user") as never:
            channel.send(email("gone@example.com"))
        channel.send(email("ok@example.com"))  # the connection is still good after a refusal
        channel.close()
    assert (later.value.permanent, never.value.permanent) == (False, True)
    assert [m["To"] for m in recorder.messages] == ["Ada <ok@example.com>"]


def test_a_server_offering_pipelining_gets_each_message_in_two_writes_with_the_same_answers() -> None:
    with serving(PipeliningRecorder()) as (recorder, port):
        recorder.answers["busy@example.com"] = ["451 4.7.1 Greylisted, try again later"]
        recorder.answers["gone@example.com"] = ["550 5.1.1 No such user"]
        channel = email_channel(f"smtp://127.0.0.1:{port}")
        assert channel.send(email("a@example.com")).startswith("250")
        assert isinstance(channel, SmtpEmailChannel) and channel._pipelining is True
        with pytest.raises(DeliveryError, match="451 4.7.1 Greylisted") as later:
            channel.send(email("busy@example.com", occurrence=2))
        with pytest.raises(DeliveryError, match="550 5.1.1 No such user") as never:
            channel.send(email("gone@example.com", occurrence=3))
        text = "Hello Ada\n.\n..two dots\n.end"  # lines that start with a dot are stuffed
        dotted = build_email(
            rendered=Rendered(subject="Dots", html=None, text=text),
            mail_from="Shop <hello@shop.example.com>",
            to_email="dots@example.com",
            to_name="Ada",
            key=send_key("cart_abandonment", "0", 7, 4),
            rule_id="cart_abandonment",
            unsubscribe_url=None,
            unsubscribe_mailto=None,
            date=NOW,
        )
        channel.send(dotted)  # the connection is still good after refusals
        channel.close()
    assert (later.value.permanent, never.value.permanent) == (False, True)
    assert [m["To"] for m in recorder.messages] == ["Ada <a@example.com>", "Ada <dots@example.com>"]
    body = recorder.messages[1].get_payload(decode=True)
    assert isinstance(body, bytes) and body.decode().replace("\r\n", "\n").strip() == text


def test_an_unreachable_smtp_server_is_a_transient_error_naming_it() -> None:
    port = free_port()
    channel = email_channel(f"smtp://127.0.0.1:{port}")
    with pytest.raises(DeliveryError, match=f"cannot reach SMTP server 127.0.0.1:{port}") as exc:
        channel.send(email())
    assert exc.value.permanent is False


def test_smtp_auth_logs_in_with_the_user_of_the_url() -> None:
    seen: list[str] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        seen.append(data.login.decode())
        return AuthResult(success=data.password == b"s3cret", handled=False)

    with smtp_server(authenticator=authenticator, auth_require_tls=False) as (recorder, port):
        good = email_channel(f"smtp://shop:s3cret@127.0.0.1:{port}")
        good.send(email())
        good.close()
        with pytest.raises(
            DeliveryError, match="SMTP login refused: 535 .*check the user and password in JOURNEY_EMAIL_URL"
        ):
            email_channel(f"smtp://shop:wrong@127.0.0.1:{port}").send(email())
    assert set(seen) == {"shop"} and len(recorder.messages) == 1


# ------------------------------------------------------------------------------------ webhooks


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    with Hooks() as server:
        yield server


def test_a_webhook_is_signed_and_carries_an_idempotency_key(hooks: Hooks) -> None:
    channel = WebhookChannel("s3cret", timeout=5)
    answer = channel.post(f"{hooks.url}/alerts", {"text": "Detractor"}, key="rule:0:7:1", now=NOW)
    channel.close()
    assert answer.startswith("200")
    ((path, headers, body),) = hooks.requests
    assert path == "/alerts" and json.loads(body) == {"text": "Detractor"}
    assert headers["Idempotency-Key"] == "rule:0:7:1"
    assert headers["Content-Type"] == "application/json"
    stamp = headers["X-Journey-Timestamp"]
    assert stamp == str(int(NOW.timestamp()))
    expected = hmac.new(b"s3cret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Journey-Signature"] == f"sha256={expected}" == signature("s3cret", stamp, body)


def test_webhook_answers_tell_a_retry_from_a_refusal(hooks: Hooks) -> None:
    hooks.statuses = [503, 429, 404]
    channel = WebhookChannel("k", timeout=5)
    outcomes = []
    for _ in range(3):
        with pytest.raises(DeliveryError) as exc:
            channel.post(hooks.url, {}, key="k", now=NOW)
        outcomes.append((str(exc.value).split(" answered ")[1][:3], exc.value.permanent))
    channel.close()
    assert outcomes == [("503", False), ("429", False), ("404", True)]


def test_a_webhook_that_does_not_answer_in_time_is_retried_later(hooks: Hooks) -> None:
    hooks.stall.set()
    channel = WebhookChannel("k", timeout=0.2)
    try:
        with pytest.raises(DeliveryError, match=r"timed out after 0.2 s") as exc:
            channel.post(hooks.url, {}, key="k", now=NOW)
    finally:
        hooks.stall.clear()
        channel.close()
    assert exc.value.permanent is False


def test_the_file_webhook_channel_writes_one_file_per_key(tmp_path: Path) -> None:
    channel = FileWebhookChannel(tmp_path / "hooks")
    channel.post("https://hooks.example.com/x", {"a": 1}, key="r:0:1:1", now=NOW)
    channel.post("https://hooks.example.com/x", {"a": 1}, key="r:0:1:1", now=NOW)
    (written,) = (tmp_path / "hooks").iterdir()
    assert json.loads(written.read_text())["payload"] == {"a": 1}


ALERT_RULE = """
id: detractor_alert
trigger: {event: survey_answered, where: {score: {lte: 6}}}
steps:
  - send: team_alert
    channel: webhook
    url: {url}/alerts
"""


def test_a_webhook_step_posts_its_json_template_once(db: Engine, tmp_path: Path, hooks: Hooks) -> None:
    kit = Kit(db, tmp_path)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "team_alert.json.j2").write_text(
        '{"text": {{ ("Detractor: " ~ customer.first_name ~ " gave " ~ event.properties.score) | tojson }}}'
    )
    kit.rules(ALERT_RULE.replace("{url}", hooks.url))
    settings = Settings(
        database_url=str(db.url), templates_dir=tmp_path / "templates", secret_key="hook-secret"
    )
    kit.tick(NOW - H)
    kit.identify("zoe", NOW - H, first_name="Zoe")
    kit.track("zoe", "survey_answered", NOW - H / 2, score=3)
    kit.tick(NOW)
    deliverer = Deliverer.create(db, settings, kit.ruleset)
    assert dispatch_due(db, settings, now=NOW, deliverer=deliverer).delivered == {"sent": 1}
    assert dispatch_due(db, settings, now=NOW + H, deliverer=deliverer).queued == 0
    ((path, headers, body),) = hooks.requests
    assert (path, json.loads(body)) == ("/alerts", {"text": "Detractor: Zoe gave 3"})
    stamp = headers["X-Journey-Timestamp"]
    assert headers["X-Journey-Signature"] == signature("hook-secret", stamp, body)
    with db.connect() as conn:
        row = conn.execute(select(sends)).one()
        recorded = conn.execute(select(events.c.name).where(events.c.name == "webhook_sent")).scalars()
        assert list(recorded) == ["webhook_sent"]
    assert headers["Idempotency-Key"] == send_key("detractor_alert", "0", row.customer_id, row.occurrence)
    assert (row.status, row.response[:3]) == ("sent", "200")
