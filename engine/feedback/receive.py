"""What the `/feedback/<provider>` routes call: verify a request as its provider documents it, read
its reports, record them in one transaction, and say what became of each.

A request that fails its check raises `Refused` and records nothing; a body that cannot be read
raises `BadPayload`. Inside an authentic batch, an item that cannot be read fails alone (`bad`)
and one that matches no send is counted (`unmatched`); the others are recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete

from engine.db import insert_ignore, write_tx
from engine.db.schema import feedback_tokens
from engine.delivery.tokens import Signer, TokenError
from engine.feedback import mailgun, postmark, sendgrid, ses
from engine.feedback.record import Outcome, Recorded, record
from engine.feedback.report import BadPayload, Refused, Report
from engine.rules.model import SoftBounce
from engine.settings import Settings

PROVIDERS = ("ses", "sendgrid", "postmark", "mailgun")


class ConfirmFailed(BadPayload):
    """The SubscribeURL could not be fetched: answered 502, so that SNS tries again."""


@dataclass
class Received:
    """What became of a request's reports, for the answer and the metrics."""

    provider: str
    #: (kind, outcome) of each report
    reports: list[tuple[str, str]] = field(default_factory=list)
    #: items of the batch that could not be read, or that are not about a message's fate
    bad: int = 0
    ignored: int = 0
    #: a SubscriptionConfirmation that was confirmed
    confirmed: bool = False

    def add(self, recorded: Recorded) -> None:
        self.reports += [(r.kind.value, outcome) for r, outcome in recorded.outcomes]

    def answer(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            o: sum(1 for _, got in self.reports if got == o)
            for o in (Outcome.RECORDED, Outcome.DUPLICATE, Outcome.UNMATCHED, Outcome.ERASED)
        }
        out.update(ignored=self.ignored, bad=self.bad)
        if self.confirmed:
            out["confirmed"] = True
        return out


@dataclass
class Receiver:
    """The webhooks' state, made once per service: the configured keys, SNS certificates by URL,
    the clock and the link signer."""

    engine: Engine
    settings: Settings
    now: Callable[[], datetime]
    signer: Callable[[], Signer]
    soft_bounce: Callable[[], SoftBounce]
    #: GETs SNS URLs (certificates, SubscribeURL); tests pass a stand-in
    sns_get: ses.Get = ses.https_get
    #: serialises this process's writes on SQLite (the HTTP service's lock)
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    sendgrid_key: Any = None
    certificates: ses.Certificates | None = None

    def __post_init__(self) -> None:
        if self.settings.sendgrid_verification_key:
            self.sendgrid_key = sendgrid.load_key(self.settings.sendgrid_verification_key)
        self.certificates = ses.Certificates(self.sns_get)

    def enabled(self, provider: str) -> bool:
        """SES is always on (SNS signs with Amazon's key); the others once their secret is set."""
        return {
            "ses": True,
            "sendgrid": self.sendgrid_key is not None,
            "postmark": self.settings.postmark_webhook_auth is not None,
            "mailgun": self.settings.mailgun_signing_key is not None,
        }.get(provider, False)

    # ------------------------------------------------------------------------------ providers

    def ses(self, body: bytes, headers: Mapping[str, str]) -> Received:
        assert self.certificates is not None
        now = self.now()
        envelope = ses.verify(body, headers, self.certificates, now=now, topics=self.settings.ses_topic_arns)
        got = Received(ses.PROVIDER)
        if envelope["Type"] == "SubscriptionConfirmation":
            try:
                ses.confirm(envelope, self.sns_get)
            except Refused:
                raise
            except Exception as exc:  # SNS sends the confirmation again on a failed answer
                raise ConfirmFailed(f"could not confirm the SNS subscription: {exc}"[:300]) from None
            got.confirmed = True
            return got
        if envelope["Type"] == "Notification":
            self._store(got, ses.reports(envelope), now)
        return got

    def sendgrid(self, body: bytes, headers: Mapping[str, str]) -> Received:
        now = self.now()
        events = sendgrid.verify(body, headers, self.sendgrid_key, now=now)
        got = Received(sendgrid.PROVIDER)
        reports: list[Report] = []
        for event in events:
            try:
                found = sendgrid.report(event)
            except BadPayload:
                got.bad += 1
                continue
            if found is None:
                got.ignored += 1
            else:
                reports.append(found)
        self._store(got, reports, now)
        return got

    def postmark(self, body: bytes, headers: Mapping[str, str]) -> Received:
        assert self.settings.postmark_webhook_auth is not None
        now = self.now()
        found = postmark.report(postmark.verify(body, headers, self.settings.postmark_webhook_auth))
        got = Received(postmark.PROVIDER, ignored=0 if found else 1)
        self._store(got, [found] if found else [], now)
        return got

    def mailgun(self, body: bytes, headers: Mapping[str, str]) -> Received:
        assert self.settings.mailgun_signing_key is not None
        now = self.now()
        token, data = mailgun.verify(body, self.settings.mailgun_signing_key, now=now)
        found = mailgun.report(data)
        got = Received(mailgun.PROVIDER, ignored=0 if found else 1)
        self._store(got, [found] if found else [], now, token=token)
        return got

    # ------------------------------------------------------------------------------ storing

    def click_target(self, url: str, send_id: int) -> str:
        """The URL behind one of Journey's click links for this send; any other URL as it is."""
        prefix = f"{self.settings.base_url}/c/"
        if not url.startswith(prefix):
            return url
        try:
            payload = self.signer().verify("click", url[len(prefix) :].split("?", 1)[0])
        except TokenError:
            return url
        target = payload.get("u") if isinstance(payload, dict) and payload.get("s") == send_id else None
        return target if isinstance(target, str) else url

    def _store(
        self, got: Received, reports: list[Report], now: datetime, *, token: str | None = None
    ) -> None:
        """Record the reports in one transaction; a Mailgun token is taken in the same one, so a
        token seen before refuses the request (and one whose reports failed is not spent)."""
        if not reports and token is None:
            return
        serial = self.write_lock if self.engine.dialect.name == "sqlite" else nullcontext()
        with serial, write_tx(self.engine) as conn:
            if token is not None:
                taken = conn.execute(
                    insert_ignore(conn, feedback_tokens, ["provider", "token"]).values(
                        provider=got.provider, token=token[:255], seen_at=now
                    )
                ).rowcount
                if not taken:
                    raise Refused("this Mailgun signature token was used before (a replay)", 403)
                conn.execute(
                    delete(feedback_tokens).where(feedback_tokens.c.seen_at < now - 2 * mailgun.MAX_AGE)
                )
            if reports:
                got.add(
                    record(
                        conn,
                        reports,
                        now=now,
                        soft_bounce=self.soft_bounce(),
                        click_target=self.click_target,
                    )
                )
