"""A send's message, rendered and built: an email (MIME, with its Message-ID and unsubscribe
headers) or a webhook's JSON payload, from the templates and the send's context."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.delivery.mime import Email, build_email
from engine.delivery.policies import Looked
from engine.delivery.render import Templates
from engine.delivery.status import SendRow
from engine.errors import DeliveryError
from engine.rules.model import Rule
from engine.rules.walk import send_overrides, send_step_at
from engine.settings import Settings


@dataclass
class Ready:
    """A message rendered and built, waiting for its group's look."""

    row: SendRow
    rule: Rule
    key: str
    topics: tuple[str, ...]  # Rule.opt_out_topics
    subject: str = ""
    message_id: str = ""
    msg: Email | None = None
    url: str | None = None
    payload: Any = None
    #: the hash of the address an email goes to, for the suppression list
    address: str | None = None

    def looked(self) -> Looked:
        row = self.row
        return Looked(
            row.id, row.attempts, row.customer_id, row.channel, self.topics, row.transactional, self.address
        )


def compose(
    item: Ready,
    templates: Templates,
    settings: Settings,
    webhook_url: str | None,
    customer: Any,
    ctx: dict[str, Any],
    now: datetime,
) -> None:
    """Fill `item` with its message; raises TemplateError, or DeliveryError when it cannot go."""
    row, rule, key = item.row, item.rule, item.key
    if row.channel == "webhook":
        step = send_step_at(rule, row.step)
        item.url = step.url or webhook_url
        if not item.url:
            raise DeliveryError(
                "no webhook url: set url: on the step or webhook_url in settings.yaml", permanent=True
            )
        item.payload = templates.render_json(row.template, ctx, locale=customer.locale)
        item.subject = f"webhook {row.template}"
        item.message_id = key
        return
    rendered = templates.render(
        row.template, ctx, locale=customer.locale, **send_overrides(rule, row.step, row.template)
    )
    item.subject = rendered.subject
    item.msg = build_email(
        rendered=rendered,
        mail_from=settings.mail_from,
        to_email=customer.email,
        to_name=customer.first_name,
        key=key,
        send_id=row.id,
        rule_id=row.rule_id,
        unsubscribe_url=None if rule.transactional else ctx["links"].unsubscribe,
        unsubscribe_mailto=settings.unsubscribe_mailto,
        date=now,
    )
    item.message_id = str(item.msg["Message-ID"])
