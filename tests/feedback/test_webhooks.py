"""Each provider's reports through the HTTP service: verified, matched to the send, recorded once
as events on the customer and as suppressions that stop the next send; refused when forged,
altered or replayed, with nothing recorded."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from engine.feedback import mailgun, sendgrid, ses
from engine.http.app import create_app
from engine.settings import Settings
from tests.support.feedback import (
    PROVIDERS,
    Sent,
    basic,
    filled,
    mailgun_sign,
    request,
    sendgrid_headers,
    ses_notification,
)
from tests.support.feedback_shop import T0, Hooks
from tests.support.kit import H

BOUNCED_AT = T0 + 2 * H + 5 * H / 60


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_delivery_report_lands_on_the_customer_with_the_provider_s_time(
    hooks: Hooks, provider: str
) -> None:
    sent = hooks.cart_reminder("ada")
    r = hooks.post(provider, "delivered", sent, BOUNCED_AT)
    assert (r.status_code, r.json()["recorded"]) == (200, 1)
    [event] = hooks.events("email_delivered")
    assert event.external_id == "ada" and event.ts == BOUNCED_AT
    assert event.properties["provider"] == provider and event.properties["rule"] == "cart_abandonment"
    assert hooks.suppressions() == {}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_hard_bounce_suppresses_every_later_message_to_the_address(hooks: Hooks, provider: str) -> None:
    sent = hooks.cart_reminder("ada")
    r = hooks.post(provider, "hard_bounce", sent, BOUNCED_AT)
    assert r.status_code == 200 and r.json()["recorded"] == 1
    [event] = hooks.events("email_bounced")
    assert event.external_id == "ada" and event.ts == BOUNCED_AT
    assert event.properties["type"] == "hard" and event.properties["provider"] == provider
    assert event.properties["reason"]
    assert hooks.suppressions() == {"ada@example.com": ("hard_bounce", provider)}
    # the journey's next step, and even a receipt, are not sent to the address
    hooks.dispatch(T0 + 25 * H)
    hooks.kit.track("ada", "order_placed", T0 + 25 * H)
    hooks.dispatch(T0 + 26 * H)
    assert hooks.statuses("ada") == [
        ("cart_reminder", "sent", None),
        ("cart_last_chance", "suppressed", "hard_bounce"),
        ("receipt", "suppressed", "hard_bounce"),
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_complaint_stops_marketing_but_not_a_receipt(hooks: Hooks, provider: str) -> None:
    sent = hooks.cart_reminder("bea")
    r = hooks.post(provider, "complaint", sent, BOUNCED_AT)
    assert r.status_code == 200 and r.json()["recorded"] == 1
    [event] = hooks.events("email_complained")
    assert (event.external_id, event.ts, event.properties["provider"]) == ("bea", BOUNCED_AT, provider)
    assert hooks.suppressions() == {"bea@example.com": ("complaint", provider)}
    hooks.dispatch(T0 + 25 * H)
    hooks.kit.track("bea", "order_placed", T0 + 25 * H)
    hooks.dispatch(T0 + 26 * H)
    assert hooks.statuses("bea") == [
        ("cart_reminder", "sent", None),
        ("cart_last_chance", "suppressed", "complaint"),
        ("receipt", "sent", None),
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_forged_report_is_refused_and_records_nothing(hooks: Hooks, provider: str) -> None:
    sent = hooks.cart_reminder("ada")
    before = hooks.recorded()
    r = hooks.post_forged(provider, "hard_bounce", sent, BOUNCED_AT)
    assert r.status_code == 401, r.text
    assert hooks.recorded() == before
    if provider == "postmark":  # Postmark retries a 401 (a 403 would stop its retries for good)
        assert r.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_altered_report_is_refused_and_records_nothing(hooks: Hooks, provider: str) -> None:
    sent = hooks.cart_reminder("ada")
    body, headers = request(
        provider, filled(provider, "delivered", sent, BOUNCED_AT), hooks.keys, hooks.clock.now
    )
    if provider == "ses":  # the SES document inside the signed SNS message
        env = json.loads(body)
        env["Message"] = env["Message"].replace('"Delivery"', '"Bounce"')
        body = json.dumps(env).encode()
    elif provider == "sendgrid":  # any byte of the signed body
        body = body.replace(b'"delivered"', b'"bounce"')
    elif provider == "mailgun":  # Mailgun signs the timestamp and the token only
        payload = json.loads(body)
        payload["signature"]["timestamp"] = str(int(payload["signature"]["timestamp"]) - 1)
        body = json.dumps(payload).encode()
    else:  # Postmark signs nothing: its credentials are all there is to alter
        headers.update(basic(hooks.keys.postmark + "x"))
    before = hooks.recorded()
    assert hooks.post_raw(provider, body, headers).status_code == 401
    assert hooks.recorded() == before


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_same_report_twice_is_recorded_once(hooks: Hooks, provider: str) -> None:
    sent = hooks.cart_reminder("ada")
    body, headers = request(
        provider, filled(provider, "hard_bounce", sent, BOUNCED_AT), hooks.keys, hooks.clock.now
    )
    assert hooks.post_raw(provider, body, headers).json()["recorded"] == 1
    recorded = hooks.recorded()
    again = hooks.post_raw(provider, body, headers)
    if provider == "mailgun":  # a Mailgun token is taken once: the same signature again is a replay
        assert again.status_code == 403
    else:  # the same report, from a retry: answered 200 (or the provider retries it), recorded once
        assert (again.status_code, again.json()["duplicate"]) == (200, 1)
    assert hooks.recorded() == recorded
    assert len(hooks.events("email_bounced")) == 1


@pytest.mark.parametrize(
    ("provider", "max_age"),
    [("ses", ses.MAX_AGE), ("sendgrid", sendgrid.MAX_AGE), ("mailgun", mailgun.MAX_AGE)],
)
def test_a_report_replayed_after_its_window_is_refused(
    hooks: Hooks, provider: str, max_age: timedelta
) -> None:
    sent = hooks.cart_reminder("ada")
    signed_at = hooks.clock.now - max_age - H
    body, headers = request(
        provider, filled(provider, "hard_bounce", sent, BOUNCED_AT), hooks.keys, signed_at
    )
    before = hooks.recorded()
    assert hooks.post_raw(provider, body, headers).status_code == 401
    assert hooks.recorded() == before


def test_a_batch_with_an_item_journey_did_not_send_records_the_others(hooks: Hooks) -> None:
    ada, bea = hooks.cart_reminders("ada", "bea")
    stranger = Sent(
        token="999999-0123456789abcdef", message_id="nobody@example.com", recipient="x@example.com"
    )
    batch = (
        filled("sendgrid", "delivered", ada, BOUNCED_AT)
        + filled("sendgrid", "delivered", stranger, BOUNCED_AT)
        + filled("sendgrid", "hard_bounce", bea, BOUNCED_AT)
        + [{"event": "processed", "email": "ada@example.com", "timestamp": 1}, {"event": "open"}]
    )
    body = json.dumps(batch).encode()
    r = hooks.post_raw("sendgrid", body, sendgrid_headers(hooks.keys.sendgrid, body, hooks.clock.now))
    assert r.json() == {"recorded": 2, "duplicate": 0, "unmatched": 1, "erased": 0, "ignored": 1, "bad": 1}
    assert [e.external_id for e in hooks.events("email_delivered")] == ["ada"]
    assert hooks.suppressions() == {"bea@example.com": ("hard_bounce", "sendgrid")}


def test_a_report_is_matched_by_the_message_id_when_the_metadata_is_lost(hooks: Hooks) -> None:
    # asynchronous bounces can come back without the metadata: the original Message-ID is enough
    sent = hooks.cart_reminder("ada")
    payload = filled("mailgun", "hard_bounce", sent, BOUNCED_AT)
    payload["event-data"]["user-variables"] = {}
    r = hooks.post_raw(
        "mailgun", json.dumps(mailgun_sign(payload, hooks.keys.mailgun, hooks.clock.now)).encode(), {}
    )
    assert r.json()["recorded"] == 1
    assert hooks.suppressions() == {"ada@example.com": ("hard_bounce", "mailgun")}


def test_a_token_that_names_a_send_with_another_key_matches_nothing(hooks: Hooks) -> None:
    # another database's send 1, reporting to the same provider account: its digest differs
    sent = hooks.cart_reminder("ada")
    other = Sent(
        token=sent.token.split("-")[0] + "-" + "0" * 16, message_id="x@y.example", recipient=sent.recipient
    )
    r = hooks.post("postmark", "hard_bounce", other, BOUNCED_AT)
    assert r.json()["unmatched"] == 1 and hooks.suppressions() == {}


@pytest.mark.parametrize("provider", ["sendgrid", "postmark", "mailgun"])
def test_a_provider_without_its_setting_answers_404(db: Engine, provider: str) -> None:
    client = TestClient(
        create_app(Settings(database_url=str(db.url), secret_key="s", api_key="k"), engine=db)
    )
    r = client.post(f"/feedback/{provider}", content=b"[]")
    assert r.status_code == 404 and "not configured" in r.json()["error"]


def test_soft_bounces_suppress_after_three_within_seven_days(hooks: Hooks) -> None:
    sent = hooks.cart_reminder("ada")
    for day in (0, 8):  # two, then a third eight days later: never three within seven days
        for _ in range(1 if day else 2):
            assert (
                hooks.post("mailgun", "soft_bounce", sent, BOUNCED_AT + day * 24 * H).json()["recorded"] == 1
            )
    assert hooks.suppressions() == {}
    assert [e.properties["type"] for e in hooks.events("email_bounced")] == ["soft"] * 3
    hooks.post("mailgun", "soft_bounce", sent, BOUNCED_AT + 9 * 24 * H)
    hooks.post("mailgun", "soft_bounce", sent, BOUNCED_AT + 10 * 24 * H)
    assert hooks.suppressions() == {"ada@example.com": ("hard_bounce", "mailgun")}


def test_a_provider_s_open_and_click_count_once_beside_journey_s_own(hooks: Hooks) -> None:
    sent = hooks.cart_reminder("ada")
    [row] = hooks.kit.send_rows()
    from engine.delivery.context import Links, signer_for

    links = Links(
        hooks.settings.base_url, signer_for(hooks.settings, hooks.engine), row.customer_id, row.id, "x", None
    )
    # Journey's pixel saw the open first; the provider reports it too
    hooks.client.get(links.open_pixel.replace(hooks.settings.base_url, ""))
    hooks.post("sendgrid", "open", sent, BOUNCED_AT)
    hooks.post("ses", "open", sent, BOUNCED_AT)
    assert len(hooks.events("email_opened")) == 1
    # the provider saw a click on Journey's tracked link first; Journey's redirect then counts nothing more
    tracked = links.track("https://shop.example.com/p/1")
    assert hooks.post("postmark", "click", sent, BOUNCED_AT, url=tracked).json()["recorded"] == 1
    hooks.client.get(tracked.replace(hooks.settings.base_url, ""), follow_redirects=False)
    [click] = hooks.events("email_clicked")
    assert (
        click.properties["url"] == "https://shop.example.com/p/1"
        and click.properties["provider"] == "postmark"
    )


def test_metrics_count_reports_by_provider_kind_and_outcome(hooks: Hooks) -> None:
    sent = hooks.cart_reminder("ada")
    hooks.post("mailgun", "delivered", sent, BOUNCED_AT)
    hooks.post("postmark", "hard_bounce", sent, BOUNCED_AT)
    stranger = Sent(token="999999-0123456789abcdef", message_id="n@x.example", recipient="x@example.com")
    hooks.post("postmark", "complaint", stranger, BOUNCED_AT)
    hooks.post_forged("sendgrid", "delivered", sent, BOUNCED_AT)
    body = hooks.client.get("/metrics").text
    for line in (
        'journey_feedback_reports_total{kind="delivered",outcome="recorded",provider="mailgun"} 1.0',
        'journey_feedback_reports_total{kind="bounced",outcome="recorded",provider="postmark"} 1.0',
        'journey_feedback_reports_total{kind="complained",outcome="unmatched",provider="postmark"} 1.0',
        'journey_feedback_refused_total{provider="sendgrid"} 1.0',
    ):
        assert line in body


# ----------------------------------------------------------------------------------------- SNS


def test_an_sns_subscription_is_confirmed_by_its_subscribe_url(hooks: Hooks) -> None:
    from tests.support.feedback import load, sns_sign

    env = sns_sign(
        load("sns_subscription_confirmation.json") | {"Timestamp": "2026-11-01T12:59:00.000Z"},
        hooks.keys.sns,
        "2",
    )
    r = hooks.post_raw(
        "ses", json.dumps(env).encode(), {"x-amz-sns-message-type": "SubscriptionConfirmation"}
    )
    assert r.json()["confirmed"] is True
    assert hooks.fetched[-1] == env["SubscribeURL"]


def test_an_sns_certificate_is_fetched_only_from_an_sns_host(hooks: Hooks) -> None:
    from tests.support.feedback import load, sns_sign

    for url in (
        "http://sns.us-west-2.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-west-2.amazonaws.com.evil.example/SimpleNotificationService-x.pem",
        "https://evil-bucket.s3.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-x.txt",
        "https://user@sns.us-west-2.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-west-2.amazonaws.com:8443/SimpleNotificationService-x.pem",
    ):
        env = sns_sign(load("sns_notification.json") | {"SigningCertURL": url}, hooks.keys.sns)
        assert hooks.post_raw("ses", json.dumps(env).encode(), {}).status_code == 401
    assert hooks.fetched == []


def test_sns_messages_of_a_topic_not_allowed_are_refused(hooks: Hooks, keys: object) -> None:
    settings = hooks.settings.with_(ses_topic_arns=("arn:aws:sns:us-west-2:123456789012:Other",))
    from tests.support.feedback_shop import sns_stand_in

    app = create_app(
        settings, engine=hooks.engine, now=lambda: hooks.clock.now, sns_get=sns_stand_in(hooks.keys, [])
    )
    sent = hooks.cart_reminder("ada")
    env = ses_notification(filled("ses", "hard_bounce", sent, BOUNCED_AT), hooks.clock.now, hooks.keys)
    assert TestClient(app).post("/feedback/ses", content=json.dumps(env).encode()).status_code == 403
    assert hooks.suppressions() == {}


def test_a_sendgrid_key_that_is_not_one_stops_the_service_at_start(db: Engine) -> None:
    from engine.errors import ConfigError

    settings = Settings(database_url=str(db.url), secret_key="s", sendgrid_verification_key="c2VjcmV0")
    with pytest.raises(ConfigError, match="JOURNEY_SENDGRID_VERIFICATION_KEY"):
        create_app(settings, engine=db)
    with pytest.raises(ConfigError, match="user:password"):
        Settings.from_env({"JOURNEY_POSTMARK_WEBHOOK_AUTH": "no-colon"})
    assert Settings.from_env({"JOURNEY_SES_TOPIC_ARNS": " arn:a , arn:b,"}).ses_topic_arns == (
        "arn:a",
        "arn:b",
    )
