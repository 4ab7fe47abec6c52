"""Server-rendered HTML pages: autoescaped Jinja2, no JavaScript, no cookies, readable on a phone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from engine.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"
#: the most a form on these pages may post, in bytes
FORM_LIMIT = 64 * 1024

#: the pages carry tokens in their URL: keep them out of caches, indexes and Referer headers
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the request body is larger than {limit:,} bytes")


class Pages:
    def __init__(self, settings: Settings) -> None:
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"], default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.brand = settings.brand

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(brand=self.brand, **context)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def problem(self, status: int, title: str, message: str) -> HTMLResponse:
        return self.render("message.html", status, title=title, message=message)

    def preview(self) -> HTMLResponse:
        """What a link from `journey preview` (send 0) answers instead of acting."""
        return self.problem(
            200,
            "This is a preview",
            "This link comes from a preview of the email: it works, and changes nothing.",
        )

    def invalid_link(self) -> HTMLResponse:
        """The one answer for a forged, altered, expired or misrouted link: nothing is revealed."""
        return self.problem(
            404,
            "This link is not valid",
            "It may have expired or been cut short when it was copied. "
            "Please use the link from your most recent email.",
        )


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused past `limit` bytes (by Content-Length, and as it streams in)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return bytes(body)
