"""`journey send-test`: one real message through the configured channel, to an address of the
marketer's choosing, rendered as `journey preview` renders it.

It is marked as a test (subject prefixed `[test] `, an `X-Journey-Test: yes` header, a send key
and Message-ID of its own) and kept out of everything that counts: no ledger row, no
`email_sent` event, so no frequency cap, report or rule sees it. Its links are preview links:
they work, and record nothing.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine

from engine.db import get_or_create_secret
from engine.delivery.channels.email import email_channel
from engine.delivery.channels.webhook import WebhookChannel
from engine.delivery.mime import Email, build_email
from engine.delivery.preview import Preview, preview
from engine.errors import DeliveryError, JourneyError
from engine.rules.loader import RuleSet
from engine.settings import Settings

SUBJECT_PREFIX = "[test] "
TEST_HEADER = ("X-Journey-Test", "yes")


@dataclass(frozen=True)
class SendTestResult:
    preview: Preview
    #: where it went: an address or a URL
    to: str
    #: the subject as sent (prefixed), or the webhook's URL
    subject: str
    #: the channel's answer
    response: str
    key: str


def _marked(msg: Email) -> Email:
    """The message with the test header added (the headers are written out already)."""
    name, value = TEST_HEADER
    return dataclasses.replace(
        msg,
        headers=(*msg.headers, TEST_HEADER),
        raw=f"{name}: {value}\r\n".encode() + msg.raw,
        quoted=(lambda: _marked(msg.seven_bit())) if msg.eight_bit else None,
    )


def send_test(
    settings: Settings,
    engine: Engine,
    template: str,
    to: str,
    *,
    now: datetime,
    ruleset: RuleSet | None,
    customer_id: str | None = None,
    event: str | None = None,
    sample: bool = False,
    locale: str | None = None,
    rule_id: str | None = None,
    channels: dict[str, Any] | None = None,
) -> SendTestResult:
    """Render `template` as preview does and send it to `to` (an address; a URL for a webhook
    template). Without a customer, sample data is used. DeliveryError becomes a JourneyError."""
    shown = preview(
        settings,
        engine,
        template,
        customer_id,
        now=now,
        ruleset=ruleset,
        event=event,
        sample=sample or customer_id is None,
        locale=locale,
        rule_id=rule_id,
    )
    key = f"test:{template}:{uuid.uuid4().hex[:16]}"
    given = channels or {}
    try:
        if shown.channel == "webhook":
            if urlsplit(to).scheme not in ("http", "https"):
                raise JourneyError(f"'{template}' is a webhook: --to takes the URL to post to, not {to!r}")
            secret = settings.secret_key or get_or_create_secret(engine, "secret_key")
            hook = given.get("webhook") or WebhookChannel(secret.split(",")[0], settings.webhook_timeout)
            try:
                response = hook.post(to, shown.payload, key=key, now=now)
            finally:
                hook.close()
            return SendTestResult(shown, to, to, response, key)
        if "@" not in to or any(c.isspace() for c in to.strip()):
            raise JourneyError(f"--to {to!r} is not an email address")
        assert shown.rendered is not None
        rendered = dataclasses.replace(shown.rendered, subject=SUBJECT_PREFIX + shown.rendered.subject)
        transactional = shown.rule is not None and shown.rule.transactional
        msg = _marked(
            build_email(
                rendered=rendered,
                mail_from=settings.mail_from,
                to_email=to.strip(),
                to_name=None,
                key=key,
                rule_id=shown.rule.id if shown.rule is not None else "test",
                unsubscribe_url=None if transactional else shown.context["links"].unsubscribe,
                unsubscribe_mailto=settings.unsubscribe_mailto,
                date=now,
            )
        )
        mail = given.get("email") or email_channel(settings.email_url)
        try:
            response = mail.send(msg)
        finally:
            mail.close()
        return SendTestResult(shown, to, rendered.subject, response, key)
    except DeliveryError as exc:
        raise JourneyError(f"the test message was not sent: {exc}") from None
