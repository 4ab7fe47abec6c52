"""Tracking and redirect links: the open pixel, click redirects and referral links.

The click redirect goes only to the URL inside its signed token (no open redirect). The open
pixel answers the same GIF whatever the token, so it reveals nothing about tokens; only a genuine
one is recorded.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from engine.events import InternalEvent
from engine.http.pages import Pages
from engine.http.service import Service
from engine.ingest.links import click_message_id, credit_referral_click, record_if_customer

#: a transparent 1x1 GIF
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def with_ref(landing: str, code: str) -> str:
    """The landing URL with `ref=CODE` in its query (replacing any ref already there)."""
    parts = urlsplit(landing)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ref"]
    query.append(("ref", code))
    return urlunsplit(parts._replace(query=urlencode(query)))


def router(service: Service, pages: Pages) -> APIRouter:
    r = APIRouter()

    @r.get("/o/{token}.gif")
    def open_pixel(token: str) -> Response:
        payload = service.verify("open", token, ("s", "c"))
        if payload is not None and not service.is_preview(payload):
            send_id = payload["s"]
            record_if_customer(
                service.engine,
                InternalEvent(
                    payload["c"],
                    "email_opened",
                    service.now(),
                    {"send_id": send_id},
                    f"email_opened:{send_id}",
                ),
            )
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    @r.get("/c/{token}")
    def click(token: str) -> Response:
        """Redirect to the URL the template signed; a `?url=` or anything else is ignored."""
        payload = service.verify("click", token, ("s", "c", "u"))
        if payload is None:
            return pages.invalid_link()
        url = payload["u"]
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            return pages.invalid_link()
        send_id = payload["s"]
        if service.is_preview(payload):
            return RedirectResponse(url, status_code=302, headers=NO_STORE)
        record_if_customer(
            service.engine,
            InternalEvent(
                payload["c"],
                "email_clicked",
                service.now(),
                {"url": url, "send_id": send_id},
                click_message_id(send_id, url),
            ),
        )
        return RedirectResponse(url, status_code=302, headers=NO_STORE)

    @r.get("/r/{code}")
    def referral(code: str, request: Request) -> Response:
        """Credit the referrer with a click (once per visitor per link per day) and land on the
        shop with ?ref=CODE; an unknown code lands there too, crediting no one."""
        landing = service.ruleset().settings.referral_landing_url
        host = request.client.host if request.client else ""
        agent = request.headers.get("user-agent", "")
        # keyed: an unkeyed hash of an address and a browser could be reversed by trying them
        visitor = service.signer().digest("referral_visitor", f"{host}|{agent}")
        owned = credit_referral_click(service.engine, code.strip(), service.now(), visitor)
        target = with_ref(landing, owned) if owned is not None else landing
        return RedirectResponse(target, status_code=302, headers=NO_STORE)

    return r
