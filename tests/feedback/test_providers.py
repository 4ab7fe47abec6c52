"""Each provider's verification and normalisation on its documented sample payloads, signed with
keys generated here; SNS's string to sign against AWS's own example, SendGrid's verifier against
SendGrid's own published test vector."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from engine.errors import ConfigError
from engine.feedback import mailgun, postmark, sendgrid, ses
from engine.feedback.report import BadPayload, Kind, Refused, Report
from tests.support.feedback import (
    CERT_URL,
    TOPIC,
    Keys,
    basic,
    certificate,
    load,
    mailgun_sign,
    sendgrid_headers,
    sns_sign,
)
from tests.support.feedback import PAYLOADS as DOCS

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def provider_keys() -> Keys:
    return Keys()


def certs(keys: Keys) -> ses.Certificates:
    def get(url: str) -> bytes:
        assert url == CERT_URL, url
        return keys.cert_pem

    return ses.Certificates(get)


def at_now(env: dict[str, Any]) -> dict[str, Any]:
    return env | {"Timestamp": "2026-11-01T11:59:00.000Z"}


# ---------------------------------------------------------------------------------------- SNS


def test_the_sns_string_to_sign_is_the_one_aws_documents() -> None:
    env = {
        "Type": "Notification",
        "MessageId": "4d4dc071-ddbf-465d-bba8-08f81c89da64",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Subject": "My subject",
        "Message": "My Test Message",
        "Timestamp": "2019-01-31T04:37:04.321Z",
    }
    assert ses.string_to_sign(env) == (
        b"Message\nMy Test Message\nMessageId\n4d4dc071-ddbf-465d-bba8-08f81c89da64\n"
        b"Subject\nMy subject\nTimestamp\n2019-01-31T04:37:04.321Z\n"
        b"TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\nType\nNotification\n"
    )


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize(
    "doc",
    ["sns_notification.json", "sns_subscription_confirmation.json", "sns_unsubscribe_confirmation.json"],
)
def test_the_documented_sns_messages_verify_once_signed(provider_keys: Keys, doc: str, version: str) -> None:
    env = sns_sign(at_now(load(doc)), provider_keys.sns, version)
    got = ses.verify(
        json.dumps(env).encode(), {"x-amz-sns-message-type": env["Type"]}, certs(provider_keys), now=NOW
    )
    assert got["MessageId"] == env["MessageId"]


@pytest.mark.parametrize(
    "change",
    [
        {"Message": "Hello world! "},
        {"Subject": "Another subject"},
        {"MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf325"},
        {"TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic2"},
        {"SignatureVersion": "2"},  # signed as 1
        {"SignatureVersion": "3"},
        {"Signature": "not base64!!"},
        {"Type": "Unknown"},
    ],
)
def test_an_altered_sns_message_is_refused(provider_keys: Keys, change: dict[str, str]) -> None:
    env = sns_sign(at_now(load("sns_notification.json")), provider_keys.sns, "1") | change
    with pytest.raises(Refused):
        ses.verify(json.dumps(env).encode(), {}, certs(provider_keys), now=NOW)


def test_an_sns_message_signed_by_another_key_or_too_old_or_with_a_stale_certificate_is_refused(
    provider_keys: Keys,
) -> None:
    other = rsa.generate_private_key(65537, 2048)
    env = sns_sign(at_now(load("sns_notification.json")), other)
    with pytest.raises(Refused, match="signature"):
        ses.verify(json.dumps(env).encode(), {}, certs(provider_keys), now=NOW)
    old = sns_sign(load("sns_notification.json"), provider_keys.sns)  # the documented 2012 Timestamp
    with pytest.raises(Refused, match="outside"):
        ses.verify(json.dumps(old).encode(), {}, certs(provider_keys), now=NOW)
    env = sns_sign(at_now(load("sns_notification.json")), provider_keys.sns)
    with pytest.raises(Refused, match="not valid now"):
        ses.verify(json.dumps(env).encode(), {}, certs(provider_keys), now=datetime(2100, 1, 2, tzinfo=UTC))
    with pytest.raises(Refused, match="does not match"):
        ses.verify(
            json.dumps(env).encode(),
            {"X-Amz-Sns-Message-Type": "SubscriptionConfirmation"},
            certs(provider_keys),
            now=NOW,
        )
    with pytest.raises(Refused, match="JOURNEY_SES_TOPIC_ARNS"):
        ses.verify(
            json.dumps(env).encode(), {}, certs(provider_keys), now=NOW, topics=["arn:aws:sns:x:1:Other"]
        )
    assert ses.verify(json.dumps(env).encode(), {}, certs(provider_keys), now=NOW, topics=[TOPIC])


def test_sns_certificates_come_only_from_sns_hosts_and_are_fetched_once() -> None:
    assert ses.check_sns_url(
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem", "u", pem=True
    )
    for url in (
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "https://s3.amazonaws.com/x.pem",
        42,
    ):
        with pytest.raises(Refused):
            ses.check_sns_url(url, "SigningCertURL", pem=True)
    calls: list[str] = []
    pem = certificate(rsa.generate_private_key(65537, 2048))

    def get(url: str) -> bytes:
        calls.append(url)
        return pem

    cache = ses.Certificates(get)
    assert cache(CERT_URL) is cache(CERT_URL) and calls == [CERT_URL]
    broken = ses.Certificates(lambda url: b"not a certificate")
    with pytest.raises(Refused, match="cannot load"):
        broken(CERT_URL)


def test_a_subscription_is_confirmed_only_on_an_sns_host() -> None:
    got: list[str] = []

    def get(url: str) -> bytes:
        got.append(url)
        return b""

    env = load("sns_subscription_confirmation.json")
    ses.confirm(env, get)
    assert got == [env["SubscribeURL"]]
    with pytest.raises(Refused):
        ses.confirm(env | {"SubscribeURL": "https://169.254.169.254/latest/meta-data/"}, get)
    assert len(got) == 1


def notification(doc: Any) -> dict[str, Any]:
    return at_now(load("sns_notification.json")) | {
        "Message": doc if isinstance(doc, str) else json.dumps(doc)
    }


SES_EXPECT = {
    "ses_hard_bounce.json": (
        Kind.BOUNCED,
        "hard",
        "jane@example.com",
        "smtp; 550 5.1.1 <jane@example.com>... User",
    ),
    "ses_event_hard_bounce.json": (
        Kind.BOUNCED,
        "hard",
        "recipient@example.com",
        "smtp; 550 5.1.1 user unknown",
    ),
    "ses_soft_bounce.json": (Kind.BOUNCED, "soft", "recipient@example.com", "smtp; 550 5.1.1 user unknown"),
    "ses_complaint.json": (Kind.COMPLAINED, None, "richard@example.com", "abuse"),
    "ses_delivered.json": (Kind.DELIVERED, None, "jane@example.com", "250 ok:  Message 64111812 accepted"),
    "ses_event_delivered.json": (Kind.DELIVERED, None, "recipient@example.com", "250 2.6.0 Message received"),
    "ses_open.json": (Kind.OPENED, None, "recipient@example.com", None),
    "ses_click.json": (Kind.CLICKED, None, "recipient@example.com", None),
}


@pytest.mark.parametrize("name", sorted(SES_EXPECT))
def test_each_documented_ses_notification_becomes_its_report(name: str) -> None:
    [r] = ses.reports(notification(load(name)))
    assert (r.kind, r.bounce_type, r.recipient, r.reason) == SES_EXPECT[name]
    assert r.provider == "ses" and r.occurred_at.tzinfo is not None and r.event_id.endswith(str(r.recipient))


def test_ses_reports_carry_the_message_id_and_the_send_tag() -> None:
    [bounce] = ses.reports(notification(load("ses_hard_bounce.json")))
    assert bounce.message_id == "custom-message-ID" and bounce.send_token is None
    assert bounce.occurred_at == datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=UTC)
    doc = load("ses_event_delivered.json")
    doc["mail"]["tags"]["journey_send_key"] = ["7-0123456789abcdef"]
    assert ses.reports(notification(doc))[0].send_token == "7-0123456789abcdef"
    doc = load("ses_open.json")
    doc["mail"].pop("tags")
    doc["mail"]["headers"][1]["value"] = "myCustomTag1=myCustomValue1, journey_send_key=8-0123456789abcdef"
    assert ses.reports(notification(doc))[0].send_token == "8-0123456789abcdef"
    [click] = ses.reports(notification(load("ses_click.json")))
    assert click.url == "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html"


def test_ses_notifications_that_are_not_about_a_message_s_fate_give_no_report() -> None:
    assert ses.reports(notification(load("ses_event_delivery_delay.json"))) == []
    assert (
        ses.reports(notification("Successfully validated SNS topic for Amazon SES event publishing.")) == []
    )
    not_spam = load("ses_complaint.json")
    not_spam["complaint"]["complaintFeedbackType"] = "not-spam"
    assert ses.reports(notification(not_spam)) == []
    with pytest.raises(BadPayload):
        ses.reports(notification("Hello world!"))


# ----------------------------------------------------------------------------------- SendGrid

#: SendGrid's own test vector (sendgrid-python, test/unit/test_eventwebhook.py)
VECTOR_KEY = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
VECTOR_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
)
VECTOR_TIMESTAMP = "1600112502"
VECTOR_BODY = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
)


def test_sendgrid_s_published_test_vector_verifies_byte_for_byte() -> None:
    key = sendgrid.load_key(VECTOR_KEY)
    headers = {sendgrid.SIGNATURE_HEADER: VECTOR_SIGNATURE, sendgrid.TIMESTAMP_HEADER: VECTOR_TIMESTAMP}
    signed_at = datetime.fromtimestamp(1600112502, UTC)
    [event] = sendgrid.verify(VECTOR_BODY.encode(), headers, key, now=signed_at)
    assert sendgrid.report(event) is None  # a dropped message is not a report
    with pytest.raises(Refused):  # the trailing CRLF is part of what was signed
        sendgrid.verify(VECTOR_BODY.rstrip().encode(), headers, key, now=signed_at)
    with pytest.raises(Refused, match="outside"):
        sendgrid.verify(VECTOR_BODY.encode(), headers, key, now=signed_at + timedelta(days=2))


SG_EXPECT = {
    "sendgrid_delivered.json": (Kind.DELIVERED, None, None, "250 OK"),
    "sendgrid_hard_bounce.json": (Kind.BOUNCED, "hard", None, "500 unknown recipient"),
    "sendgrid_soft_bounce.json": (Kind.BOUNCED, "soft", None, "500 unknown recipient"),
    "sendgrid_complaint.json": (Kind.COMPLAINED, None, None, None),
    "sendgrid_open.json": (Kind.OPENED, None, None, None),
    "sendgrid_click.json": (Kind.CLICKED, None, "http://www.sendgrid.com/", None),
}


@pytest.mark.parametrize("name", sorted(SG_EXPECT))
def test_each_documented_sendgrid_event_becomes_its_report(provider_keys: Keys, name: str) -> None:
    body = (DOCS / name).read_bytes()  # the raw bytes, whitespace and all
    signed_at = datetime.fromtimestamp(1513299569, UTC)
    key = sendgrid.load_key(provider_keys.sendgrid_public)
    [event] = sendgrid.verify(
        body, sendgrid_headers(provider_keys.sendgrid, body, signed_at), key, now=signed_at
    )
    r = sendgrid.report(event)
    assert r is not None and (r.kind, r.bounce_type, r.url, r.reason) == SG_EXPECT[name]
    assert (r.recipient, r.message_id) == ("example@test.com", "14c5d75ce93.dfd.64b469@ismtpd-555")
    assert r.occurred_at == signed_at and r.event_id == event["sg_event_id"]


def test_sendgrid_events_that_are_not_reports_and_events_with_milliseconds() -> None:
    assert sendgrid.report(load("sendgrid_deferred.json")[0]) is None
    assert sendgrid.report(load("sendgrid_dropped.json")[0]) is None
    r = sendgrid.report({"event": "open", "email": "a@b.example", "timestamp": 1591726752372})
    assert r is not None and r.occurred_at.year == 2020 and r.event_id.startswith("sha256:")
    with pytest.raises(BadPayload):
        sendgrid.report({"event": "open"})


def test_a_sendgrid_key_that_is_not_a_p256_public_key_is_a_configuration_error() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = p384.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ConfigError, match="P-256"):
        sendgrid.load_key(base64.b64encode(der).decode())
    with pytest.raises(ConfigError, match="base64 DER"):
        sendgrid.load_key("not a key")


# ----------------------------------------------------------------------------------- Postmark

PM_EXPECT = {
    "postmark_delivered.json": (
        Kind.DELIVERED,
        None,
        "john@example.com",
        None,
        "Test delivery webhook details",
    ),
    "postmark_hard_bounce.json": (
        Kind.BOUNCED,
        "hard",
        "john@example.com",
        None,
        "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    ),
    "postmark_soft_bounce.json": (
        Kind.BOUNCED,
        "soft",
        "john@example.com",
        None,
        "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    ),
    "postmark_complaint.json": (
        Kind.COMPLAINED,
        None,
        "john@example.com",
        None,
        "Test spam complaint details",
    ),
    "postmark_open.json": (Kind.OPENED, None, "john@example.com", None, None),
    "postmark_click.json": (Kind.CLICKED, None, "john@example.com", "https://yourdomain.com/pricing", None),
}


@pytest.mark.parametrize("name", sorted(PM_EXPECT))
def test_each_documented_postmark_record_becomes_its_report(name: str) -> None:
    record = postmark.verify((DOCS / name).read_bytes(), basic("pm:pw"), "pm:pw")
    r = postmark.report(record)
    assert r is not None and (r.kind, r.bounce_type, r.recipient, r.url, r.reason) == PM_EXPECT[name]


def test_postmark_credentials_and_records_that_are_not_reports() -> None:
    body = (DOCS / "postmark_delivered.json").read_bytes()
    for headers in (
        basic("pm:wrong"),
        basic("other:pw"),
        {},
        {"Authorization": "Bearer pw"},
        {"Authorization": "Basic %%"},
    ):
        with pytest.raises(Refused):
            postmark.verify(body, headers, "pm:pw")
    assert postmark.report(load("postmark_subscription_change.json")) is None
    assert postmark.report(load("postmark_hard_bounce.json") | {"Type": "AutoResponder"}) is None
    first: Report | None = postmark.report(load("postmark_delivered.json"))
    again = postmark.report(load("postmark_delivered.json"))
    assert first is not None and again is not None and first.event_id == again.event_id  # a stable id
    bounce = postmark.report(load("postmark_hard_bounce.json"))
    assert bounce is not None and bounce.event_id == "Bounce:42"


# ------------------------------------------------------------------------------------ Mailgun

MG_EXPECT = {
    "mailgun_delivered.json": (
        Kind.DELIVERED,
        None,
        "john@example.com",
        "20180622182958.1.48906CB188F1A454@exmple.org",
        "OK",
    ),
    "mailgun_hard_bounce.json": (
        Kind.BOUNCED,
        "hard",
        "christest123@test.com",
        "20221019211537.93011d31ea99c5a8@test.com",
        "smtp; 550-5.1.1 The email account that you tried to reach does not exist.",
    ),
    "mailgun_hard_bounce_suppressed.json": (
        Kind.BOUNCED,
        "hard",
        "slava@mailgun.com",
        "20180622211249.1.2A6098970A380E12@example.org",
        "Not delivering to previously bounced address",
    ),
    "mailgun_soft_bounce.json": (
        Kind.BOUNCED,
        "soft",
        "test@test.com",
        "20221006142837.1618e01bf42da9fa@test.com",
        "4.7.652 The mail server [xxx.xxx.xxx.xxx] has exceeded the maximum number of connections.",
    ),
    "mailgun_complaint.json": (
        Kind.COMPLAINED,
        None,
        "foo@example.com",
        "20130718032413.263EE2E0926@example.com",
        None,
    ),
    "mailgun_open.json": (
        Kind.OPENED,
        None,
        "recipient@example.com",
        "20130821005614.19826.35976@samples.mailgun.org",
        None,
    ),
    "mailgun_click.json": (
        Kind.CLICKED,
        None,
        "recipient@example.com",
        "20130821085807.30688.67706@samples.mailgun.org",
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(MG_EXPECT))
def test_each_documented_mailgun_event_becomes_its_report(provider_keys: Keys, name: str) -> None:
    body = json.dumps(mailgun_sign(load(name), provider_keys.mailgun, NOW)).encode()
    token, data = mailgun.verify(body, provider_keys.mailgun, now=NOW)
    r = mailgun.report(data)
    assert len(token) == 50 and r is not None
    assert (r.kind, r.bounce_type, r.recipient, r.message_id, r.reason) == MG_EXPECT[name]
    assert r.event_id.startswith(data["id"] + "@")


def test_mailgun_signatures_and_the_limit_of_what_they_cover(provider_keys: Keys) -> None:
    good = mailgun_sign(load("mailgun_delivered.json"), provider_keys.mailgun, NOW)
    for change in (
        {"signature": "0" * 64},
        {"token": good["signature"]["token"][:-1] + "x"},
        {"timestamp": str(int(good["signature"]["timestamp"]) + 1)},
    ):
        bad = good | {"signature": good["signature"] | change}
        with pytest.raises(Refused):
            mailgun.verify(json.dumps(bad).encode(), provider_keys.mailgun, now=NOW)
    with pytest.raises(Refused):  # the documented sample's own signature, made with Mailgun's key
        mailgun.verify((DOCS / "mailgun_delivered.json").read_bytes(), provider_keys.mailgun, now=NOW)
    with pytest.raises(Refused, match="outside"):
        mailgun.verify(json.dumps(good).encode(), provider_keys.mailgun, now=NOW + timedelta(hours=10))
    # Mailgun signs the timestamp and the token, not the event: only taking each token once (the
    # receiver does, with the report) stops a captured signature from carrying another event
    swapped = good | {"event-data": load("mailgun_complaint.json")["event-data"]}
    assert (
        mailgun.verify(json.dumps(swapped).encode(), provider_keys.mailgun, now=NOW)[1]["event"]
        == "complained"
    )
    assert mailgun.report(load("mailgun_unsubscribed.json")["event-data"]) is None
