"""What a message template sees: the customer, the trigger event, the rule, signed links, and
recent events (CONTRACT section 6)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, select

from engine.db import get_or_create_secret
from engine.db.schema import events
from engine.delivery.tokens import Signer
from engine.errors import TemplateError
from engine.settings import Settings


def signer_for(settings: Settings, engine: Engine) -> Signer:
    """The link signer: JOURNEY_SECRET_KEY, or the key generated and stored on first run."""
    secret = settings.secret_key or get_or_create_secret(engine, "secret_key")
    return Signer.from_setting(secret)


class Links:
    """Signed links for one message (the HTTP service verifies exactly these payloads).

    Each link is signed once per message, however often the subject, the bodies and the headers
    use it. Templates see the links only: the signer and the ids are private (the sandbox refuses
    names starting with an underscore), so a template cannot sign a token of its own."""

    #: every public name is a link: the sandbox reads them without its per-attribute checks
    template_safe = True

    __slots__ = ("_base_url", "_customer_id", "_memo", "_referral_code", "_rule_id", "_send_id", "_signer")

    def __init__(
        self,
        base_url: str,
        signer: Signer,
        customer_id: int,
        send_id: int,
        rule_id: str,
        referral_code: str | None,
    ) -> None:
        self._base_url = base_url
        self._signer = signer
        self._customer_id = customer_id
        self._send_id = send_id
        self._rule_id = rule_id
        self._referral_code = referral_code
        self._memo: dict[Any, str] = {}

    def _signed(self, key: Any, purpose: str, payload: dict[str, Any]) -> str:
        token = self._memo.get(key)
        if token is None:
            token = self._memo[key] = self._signer.sign(purpose, payload)
        return token

    @property
    def unsubscribe(self) -> str:
        payload = {"c": self._customer_id, "s": self._send_id, "r": self._rule_id}
        return f"{self._base_url}/u/{self._signed('unsubscribe', 'unsubscribe', payload)}"

    @property
    def preferences(self) -> str:
        token = self._signed("preferences", "preferences", {"c": self._customer_id})
        return f"{self._base_url}/preferences/{token}"

    def survey(self, score: Any) -> str:
        if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
            raise TemplateError(f"links.survey(score) takes a whole number from 0 to 10, not {score!r}")
        payload = {"c": self._customer_id, "s": self._send_id, "v": self._rule_id}
        return f"{self._base_url}/s/{self._signed('survey', 'survey', payload)}?score={score}"

    @property
    def referral(self) -> str:
        return f"{self._base_url}/r/{self._referral_code or ''}"

    def track(self, url: Any) -> str:
        url = str(url)
        if urlsplit(url).scheme not in ("http", "https"):
            raise TemplateError(f"links.track() takes an http(s) URL, not {url!r}")
        token = self._signed(("click", url), "click", {"s": self._send_id, "c": self._customer_id, "u": url})
        return f"{self._base_url}/c/{token}"

    @property
    def open_pixel(self) -> str:
        token = self._signed("open", "open", {"s": self._send_id, "c": self._customer_id})
        return f"{self._base_url}/o/{token}.gif"


class SampleLinks:
    """Links for check time and previews without a database."""

    unsubscribe = "https://example.com/u/sample"
    preferences = "https://example.com/preferences/sample"
    referral = "https://example.com/r/SAMPLE"
    open_pixel = "https://example.com/o/sample.gif"

    def survey(self, score: Any) -> str:
        if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
            raise TemplateError(f"links.survey(score) takes a whole number from 0 to 10, not {score!r}")
        return f"https://example.com/s/sample?score={score}"

    def track(self, url: Any) -> str:
        if urlsplit(str(url)).scheme not in ("http", "https"):
            raise TemplateError(f"links.track() takes an http(s) URL, not {url!r}")
        return "https://example.com/c/sample"


class Attributes(dict[str, Any]):
    """Customer attributes and event properties: `customer.attributes.plan`; a missing one is an
    error, never a blank (and `properties.items` is the key 'items', not the dict method)."""

    keys_only = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            from jinja2.exceptions import UndefinedError

            raise UndefinedError(f"customer has no attribute '{name}'") from None


def _event_dict(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "timestamp": row.ts.isoformat().replace("+00:00", "Z"),
        "properties": Attributes(row.properties or {}),
    }


def _customer_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.external_id,
        "email": row.email,
        "first_name": row.first_name,
        "phone": row.phone,
        "timezone": row.timezone,
        "locale": row.locale,
        "stage": row.stage,
        "referral_code": row.referral_code,
        "attributes": Attributes(row.attributes or {}),
    }


def _recent(conn: Connection, customer_id: int, now: datetime) -> Any:
    def recent_events(name: str, n: int = 3) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(events.c.name, events.c.ts, events.c.properties)
            .where(events.c.customer_id == customer_id, events.c.name == name, events.c.ts <= now)
            .order_by(events.c.ts.desc())
            .limit(max(0, min(int(n), 50)))
        ).all()
        return [_event_dict(r) for r in rows]

    return recent_events


def _base(
    settings: Settings, customer: Any, links: Any, rule: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "customer": _customer_dict(customer),
        "rule": dict(rule),
        "links": links,
        "brand": {
            "name": settings.brand,
            "postal_address": settings.postal_address,
            "from": settings.mail_from,
        },
        "now": now,
    }


def context_for(
    conn: Connection,
    settings: Settings,
    signer: Signer,
    *,
    send_id: int,
    rule_id: str,
    customer: Any,
    event: Any,
    description: str,
    now: datetime,
) -> dict[str, Any]:
    """The context of one ledger row's message, from rows already loaded (the batch path)."""
    links = Links(settings.base_url, signer, customer.id, send_id, rule_id, customer.referral_code)
    ctx = _base(settings, customer, links, {"id": rule_id, "description": description}, now)
    ctx["event"] = _event_dict(event) if event is not None else None
    ctx["recent_events"] = _recent(conn, customer.id, now)
    return ctx


def preview_context(
    conn: Connection | None,
    settings: Settings,
    signer: Signer | None,
    *,
    customer: Any,
    event: Any,
    rule: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """A context for `journey preview` and `journey send-test`: no send. `customer` is a customers
    row (or a sample with the same fields and no database: `conn` and `signer` None), `event` the
    event chosen for the trigger (name, ts, properties) or None. Links are signed with send 0: they
    work, and record nothing (engine.http.service.PREVIEW_SEND)."""
    links: Any
    if conn is None or signer is None:
        links = SampleLinks()
    else:
        links = Links(settings.base_url, signer, customer.id, 0, str(rule["id"]), customer.referral_code)
    ctx = _base(settings, customer, links, rule, now)
    ctx["event"] = _event_dict(event) if event is not None else None
    if conn is None:
        ctx["recent_events"] = lambda name, n=3: []
    else:
        ctx["recent_events"] = _recent(conn, customer.id, now)
    return ctx
