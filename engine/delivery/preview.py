"""`journey preview`: a template rendered for one customer as a rule would send it, saying which
event it used. `journey send-test` (engine.delivery.sendtest) sends what this renders.

The event is the one a real send would carry: the rule that sends the template is found, and its
trigger says which kind of event (an `event` trigger's, with its `where:`; an `inactivity`
trigger's event); the customer's latest such event is used. Stage, schedule and anniversary
triggers carry no event, so neither does their preview. `--event MESSAGE_ID` picks one event,
`--sample` uses sample data instead of the database's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Engine, select

from engine.db.schema import customers, events
from engine.delivery.context import Attributes, preview_context, signer_for
from engine.delivery.locales import variants
from engine.delivery.render import Rendered, Templates
from engine.errors import JourneyError
from engine.events import RESERVED_EVENTS
from engine.rules.conditions import Compare
from engine.rules.describe import describe_trigger
from engine.rules.loader import RuleSet
from engine.rules.model import Rule, SendStep
from engine.rules.triggers import EventTrigger, InactivityTrigger
from engine.rules.walk import iter_sends
from engine.settings import Settings

#: what `--sample` shows: a customer and an event with the properties the shipped templates read
SAMPLE_ITEM = {
    "product_id": "p-001",
    "name": "Trail runner",
    "price": 89.0,
    "qty": 1,
    "url": "https://shop.example.com/products/p-001",
}
SAMPLE_PROPERTIES: dict[str, Any] = {
    "items": [SAMPLE_ITEM],
    "cart_value": 89.0,
    "value": 89.0,
    "order_id": "o-1001",
    "score": 4,
    "comment": "Delivery took two weeks.",
    **{k: SAMPLE_ITEM[k] for k in ("product_id", "name", "price", "url")},
}


@dataclass(frozen=True)
class Preview:
    template: str
    #: "email" or "webhook"
    channel: str
    #: the rule whose send this is (None when no rule sends the template)
    rule: Rule | None
    #: the template's context: customer, event, links, …
    context: dict[str, Any]
    #: which event the preview used, and why, in a sentence
    event_note: str
    rendered: Rendered | None = None
    #: a webhook's JSON body and where it would be posted
    payload: Any = None
    url: str | None = None
    #: the template's locale variants, as their files name them (`fr`, `fr-CA`)
    variants: tuple[str, ...] = ()

    @property
    def to(self) -> str:
        """The To: line, or a note that the customer has no address."""
        customer = self.context["customer"]
        if not customer["email"]:
            return "(no email address)"
        return (
            f"{customer['first_name']} <{customer['email']}>" if customer["first_name"] else customer["email"]
        )

    @property
    def locale(self) -> str | None:
        """The locale variant rendered (`fr`), or None for the default template."""
        return self.rendered.locale if self.rendered is not None else None


def _sample_customer() -> Any:
    return SimpleNamespace(
        id=0,
        external_id="sample",
        email="ada@example.com",
        first_name="Ada",
        phone=None,
        timezone="Europe/Paris",
        locale=None,
        stage="decision",
        referral_code="ADA2345678",
        attributes={"plan": "gold"},
    )


def _holds(value: Any, compare: Compare) -> bool:
    """A `where:` comparison on one property value, as the SQL form decides it."""
    op, target = compare.op, compare.value
    if op == "exists":
        return (value is not None) == bool(target)
    if value is None:
        return op in ("ne", "not_in")
    try:
        if op == "eq":
            return bool(value in target) if isinstance(target, list) else bool(value == target)
        if op == "ne":
            return bool(value != target)
        if op == "in":
            return value in target
        if op == "not_in":
            return value not in target
        if op == "contains":
            return str(target) in value if isinstance(value, list) else str(target) in str(value)
        return bool(
            {"gt": value > target, "gte": value >= target, "lt": value < target, "lte": value <= target}[op]
        )
    except TypeError:
        return False


def _rules_sending(ruleset: RuleSet | None, template: str) -> list[tuple[Rule, SendStep]]:
    if ruleset is None:
        return []
    return [(r, s) for r in ruleset.rules for s in iter_sends(list(r.steps)) if s.send == template]


def _trigger_event(rule: Rule) -> tuple[str | None, dict[str, Compare]]:
    """The event a send of this rule carries (name and `where:`), or None for triggers without one."""
    t = rule.trigger
    if isinstance(t, EventTrigger):
        return t.event, dict(t.where or {})
    if isinstance(t, InactivityTrigger):
        return t.inactivity.event, {}
    return None, {}


def _describe(row: Any, customer: str) -> str:
    mid = f", message_id {row.message_id}" if getattr(row, "message_id", None) else ""
    return f"{row.name} at {row.ts.isoformat().replace('+00:00', 'Z')}{mid} of {customer}"


def _choose_event(
    conn: Connection, customer: Any, rule: Rule | None, chosen: str | None, now: datetime
) -> tuple[Any, str]:
    """(event row or None, the sentence saying which and why)."""
    who = customer.external_id
    if chosen is not None:
        row = conn.execute(
            select(events).where(events.c.customer_id == customer.id, events.c.message_id == chosen)
        ).first()
        if row is not None:
            return row, f"{_describe(row, who)}, as asked (--event)"
        row = conn.execute(
            select(events)
            .where(events.c.customer_id == customer.id, events.c.name == chosen, events.c.ts <= now)
            .order_by(events.c.ts.desc(), events.c.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            return row, f"{_describe(row, who)}, their latest {chosen} (--event)"
        raise JourneyError(
            f"customer '{who}' has no event with message_id '{chosen}', nor any named so "
            "(journey events export --customer ID lists them)"
        )
    if rule is None:
        row = conn.execute(
            select(events)
            .where(
                events.c.customer_id == customer.id, events.c.ts <= now, events.c.name.not_in(RESERVED_EVENTS)
            )
            .order_by(events.c.ts.desc(), events.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None, f"none: no rule sends this template, and {who} has no event yet"
        return row, f"{_describe(row, who)}, their latest event (no rule sends this template)"
    name, where = _trigger_event(rule)
    if name is None:
        return None, f"none: rule {rule.id} is triggered by {describe_trigger(rule)}, which carries no event"
    rows = conn.execute(
        select(events)
        .where(events.c.customer_id == customer.id, events.c.name == name, events.c.ts <= now)
        .order_by(events.c.ts.desc(), events.c.id.desc())
        .limit(200)
    ).all()
    for row in rows:
        props = row.properties or {}
        if all(_holds(props.get(key), compare) for key, compare in where.items()):
            which = "matching" if where else "latest"
            return row, f"{_describe(row, who)}, their {which} {name}: the event that triggers rule {rule.id}"
    return None, (
        f"none: {who} has no {name}{' that matches the trigger' if where else ''} yet, so the template "
        f"sees no event (rule {rule.id} is triggered by {name}); --sample shows sample data"
    )


def preview(
    settings: Settings,
    engine: Engine,
    template: str,
    customer_id: str | None,
    *,
    now: datetime,
    ruleset: RuleSet | None = None,
    event: str | None = None,
    sample: bool = False,
    locale: str | None = None,
    rule_id: str | None = None,
    templates: Templates | None = None,
) -> Preview:
    """Render `template` for the customer with external id `customer_id` (None with `sample`:
    a sample customer), as `rule_id` (default: the first rule that sends it) would send it."""
    templates = templates or Templates(
        settings.templates_dir, currency=ruleset.settings.currency if ruleset is not None else None
    )
    if not templates.exists(template):
        names = ", ".join(templates.names()) or "none"
        raise JourneyError(f"no template '{template}' in {settings.templates_dir} (have: {names})")
    if event is not None and sample:
        raise JourneyError("--event and --sample exclude each other: pick an event, or sample data")
    sending = _rules_sending(ruleset, template)
    if rule_id is not None:
        sending = [(r, s) for r, s in sending if r.id == rule_id]
        if not sending:
            raise JourneyError(f"rule '{rule_id}' does not send '{template}'")
    rule, step = sending[0] if sending else (None, None)
    channel = (
        step.channel
        if step is not None
        else ("webhook" if templates._has(f"{template}.json.j2") else "email")
    )
    rule_ctx = (
        {"id": rule.id, "description": rule.description}
        if rule is not None
        else {"id": "preview", "description": f"preview of {template}"}
    )
    if customer_id is None:
        if not sample:
            raise JourneyError("say whose message to preview: --customer ID (or --sample for sample data)")
        if event is not None:
            raise JourneyError("--event needs --customer: it is one of that customer's events")
        customer = _sample_customer()
        ctx = preview_context(None, settings, None, customer=customer, event=None, rule=rule_ctx, now=now)
    else:
        signer = signer_for(settings, engine)
        with engine.connect() as conn:
            customer = conn.execute(select(customers).where(customers.c.external_id == customer_id)).first()
            if customer is None:
                raise JourneyError(
                    f"no customer '{customer_id}': check the id (journey explain lists what we know)"
                )
            row, note = (None, "") if sample else _choose_event(conn, customer, rule, event, now)
            ctx = preview_context(
                conn, settings, signer, customer=customer, event=row, rule=rule_ctx, now=now
            )
    if sample:
        name = (_trigger_event(rule)[0] if rule is not None else None) or "sample_event"
        sample_event = SimpleNamespace(
            name=name, ts=now.astimezone(UTC), properties=Attributes(SAMPLE_PROPERTIES)
        )
        ctx["event"] = {
            "name": sample_event.name,
            "timestamp": sample_event.ts.isoformat().replace("+00:00", "Z"),
            "properties": sample_event.properties,
        }
        note = f"a sample {name} (--sample), with properties {', '.join(sorted(SAMPLE_PROPERTIES))}"
    chosen_locale = locale if locale is not None else customer.locale
    found = tuple(
        sorted(v.split(".", 1)[1] for v in variants(templates.filenames()).get(template, {}).values())
    )
    if channel == "webhook":
        url = (step.url if step is not None else None) or (ruleset.settings.webhook_url if ruleset else None)
        payload = templates.render_json(template, ctx, locale=chosen_locale)
        return Preview(template, channel, rule, ctx, note, payload=payload, url=url, variants=found)
    rendered = templates.render(template, ctx, locale=chosen_locale)
    return Preview(template, channel, rule, ctx, note, rendered=rendered, variants=found)
