"""The HTTP service (`journey serve`): event intake, unsubscribe and preference pages, the NPS
survey, referral and tracking links, health and metrics. `create_app` builds it; nothing is
created on import."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine, text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.feedback.receive import Receiver
from engine.feedback.ses import Get, https_get
from engine.http import events, feedback, links, optout, survey, tracking
from engine.http.events import BODY_LIMIT, ITEM_LIMIT, ApiError, api_error_response
from engine.http.observe import AccessMiddleware, Observer, QueueLagCollector
from engine.http.pages import BodyTooLarge, Pages
from engine.http.service import Service
from engine.metrics import render_latest
from engine.settings import Settings


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    now: Callable[[], datetime] | None = None,
    sns_get: Get | None = None,
) -> FastAPI:
    """The service's ASGI app. Without `engine`, one is made from settings and disposed of at
    shutdown; `now` stamps recorded events (default: the wall clock); `sns_get` fetches SNS
    certificates and confirms subscriptions (default: HTTPS)."""
    from engine.db import make_engine

    owned = engine is None
    db = engine if engine is not None else make_engine(settings.database_url, create=False)
    observer = Observer()
    service = Service(settings=settings, engine=db, now=now or _wall_clock, observer=observer)
    pages = Pages(settings)
    receiver = Receiver(
        db,
        settings,
        service.now,
        signer=service.signer,
        soft_bounce=lambda: service.ruleset().settings.soft_bounce,
        sns_get=sns_get or https_get,
        write_lock=service.write_lock,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            db.dispose()

    app = FastAPI(
        title="Journey",
        summary="Event intake, unsubscribe, survey, referral and tracking links, delivery feedback",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return api_error_response(exc)

    @app.exception_handler(tracking.TrackingError)
    async def _tracking_error(_request: Request, exc: tracking.TrackingError) -> Response:
        return tracking.tracking_error_response(exc)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> Response:
        if request.url.path.startswith("/v1/"):
            return api_error_response(
                ApiError(
                    413,
                    f"the body is larger than {BODY_LIMIT:,} bytes: the limit is {BODY_LIMIT:,} bytes "
                    f"and {ITEM_LIMIT:,} events per request; send them in several requests",
                )
            )
        return pages.problem(413, "That was too much", f"A form here sends at most {exc.limit:,} bytes.")

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """200 when the database answers a SELECT 1, 503 (with the reason) when it does not."""
        try:
            with db.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means unhealthy; say which
            reason = str(exc).splitlines()[0][:200] if str(exc) else ""
            return JSONResponse(
                {"status": "unavailable", "database": f"{type(exc).__name__}: {reason}"},
                status_code=503,
                headers={"Cache-Control": "no-store"},
            )
        return JSONResponse({"status": "ok", "database": "ok"}, headers={"Cache-Control": "no-store"})

    lag = CollectorRegistry(auto_describe=False)
    lag.register(QueueLagCollector(db, now or _wall_clock))

    @app.get("/metrics")
    def metrics() -> Response:
        """This service's series and the queue lag read from the database at scrape time. With
        PROMETHEUS_MULTIPROC_DIR set, the series every process wrote there (this one's, the
        workers' sends) merged instead of this process's alone, so none is printed twice."""
        body = render_latest(observer.registry, settings.prometheus_multiproc_dir)
        return Response(body + generate_latest(lag), media_type=CONTENT_TYPE_LATEST)

    app.include_router(events.router(service))
    app.include_router(tracking.router(service))
    app.include_router(optout.router(service, pages))
    app.include_router(survey.router(service, pages))
    app.include_router(links.router(service, pages))
    app.include_router(feedback.router(service, receiver))
    app.add_middleware(AccessMiddleware, observer=observer)
    return app
