"""`POST /feedback/ses`, `/feedback/sendgrid`, `/feedback/postmark`, `/feedback/mailgun`: the email
providers' delivery reports (CONTRACT 10).

A provider whose secret is not configured answers 404. A request that fails its provider's check is
refused (401, or 403 for a replayed Mailgun token or an SNS topic not allowed) and records nothing;
an accepted one, a repeat included, answers 200 with what became of its reports.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import JSONResponse

from engine.feedback.receive import PROVIDERS, ConfirmFailed, Received, Receiver
from engine.feedback.report import BadPayload, Refused
from engine.http.pages import read_limited
from engine.http.service import Service

#: the largest body taken, in bytes (SendGrid posts batches of events)
BODY_LIMIT = 8 * 1024 * 1024


async def _body(request: Request) -> bytes:
    return await read_limited(request, BODY_LIMIT)


def router(service: Service, receiver: Receiver) -> APIRouter:
    r = APIRouter()
    obs = service.observer
    handlers: dict[str, Callable[[bytes, dict[str, str]], Received]] = {
        "ses": receiver.ses,
        "sendgrid": receiver.sendgrid,
        "postmark": receiver.postmark,
        "mailgun": receiver.mailgun,
    }

    def endpoint(provider: str) -> Callable[[Request, bytes], JSONResponse]:
        handle = handlers[provider]

        def post(request: Request, raw: bytes = Depends(_body)) -> JSONResponse:
            """Runs in the thread pool: verifying and recording never hold the event loop."""
            if not receiver.enabled(provider):
                return JSONResponse({"error": f"{provider} feedback is not configured"}, status_code=404)
            try:
                got = handle(raw, dict(request.headers))
            except Refused as exc:
                obs.feedback_refused.labels(provider).inc()
                obs.log.warning("feedback refused", provider=provider, reason=str(exc)[:300])
                headers = {"WWW-Authenticate": 'Basic realm="journey"'} if provider == "postmark" else {}
                return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)
            except ConfirmFailed as exc:
                obs.log.error("feedback", provider=provider, error=str(exc))
                return JSONResponse({"error": str(exc)}, status_code=502)
            except BadPayload as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            for kind, outcome in got.reports:
                obs.feedback.labels(provider, kind, outcome).inc()
            return JSONResponse(got.answer())

        return post

    for name in PROVIDERS:
        r.add_api_route(f"/feedback/{name}", endpoint(name), methods=["POST"])
    return r
