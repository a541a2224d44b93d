"""The ASGI application: wiring only."""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager
import re
import time
import uuid
from functools import partial

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from labes import __version__
from labes.config import Settings, get_settings
from labes.db import ReadingSessions, get_sessionmaker, make_reading_engine
from labes.errors import install_handlers
from labes.logging import configure as configure_logging
from labes.migrate import current_revision, head_revision
from labes.cards.desk_routes import router as distribution_router
from labes.cards.routes import router as cards_router
from labes.cards.sms_routes import router as sms_router
from labes.care.deps import dispatched_first
from labes.care.routes import router as care_router
from labes.claims.routes import router as claims_router
from labes.fhir.routes import router as fhir_router
from labes.registry.routes import router as registry_router
from labes.security import audit
from labes.security.routes import router as security_router
from labes.stats.routes import router as stats_router

access_log = logging.getLogger("labes.access")
# A caller's request id is echoed and stored in the audit trail (64 characters), so only a short, plain one is kept.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestLog:
    """One JSON log line per request (request id, route, status, duration) and the `x-request-id` header.

    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` runs each request through an extra task and
    memory streams, a cost every point-of-care request would pay.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((value for key, value in scope["headers"] if key == b"x-request-id"), b"").decode("latin-1")
        request_id = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id  # read as request.state.request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            access_log.info("request", extra={"fields": {
                "request_id": request_id, "method": scope["method"],
                "route": getattr(route, "path", scope["path"]), "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            }})


def server_app() -> FastAPI:
    """The app as `labes serve` runs it, in each worker process: `create_app` with its start-up heap frozen."""
    return create_app(freeze_heap=True)


def create_app(settings: Settings | None = None, factory: sessionmaker[Session] | None = None, *,
               freeze_heap: bool = False) -> FastAPI:
    """Build the Labes API for `settings` and the session `factory` (defaults: the environment's).

    `freeze_heap`: once started, move every object the process holds out of the cyclic garbage collector's
    reach (`gc.freeze`). They live as long as the process (modules, routes, schemas, the engine), and a full
    collection would otherwise walk them all, a few hundred thousand objects, stopping the worker for ≈ 90 ms every
    few thousand requests; the requests queued behind it wait as long. For servers, not for the tests' many apps."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Handlers are synchronous (SQLAlchemy sessions) and run on AnyIO's worker threads, each request's
        # transaction begun and ended in one of them (security/deps.py). On PostgreSQL a few threads per process
        # keep the database busy; many only queue on the GIL. SQLite has one writer at a time, and the default
        # (AnyIO's 40) lets requests queue for its lock in threads rather than in the event loop.
        # With 0 the handlers run on the loop itself (security/deps.py: run_unit_of_work); a thread is still
        # there for what FastAPI runs in one (a synchronous dependency or a handler without a unit of work).
        anyio.to_thread.current_default_thread_limiter().total_tokens = max(settings.worker_threads, 1)
        if freeze_heap:
            gc.collect()  # what is garbage now is not frozen with the rest
            gc.freeze()
        # On PostgreSQL the requests that only read await their statements on this loop (care/deps.py): their
        # engine's connections belong to the loop that serves them, so each server (each lifespan) has its own,
        # its sessions kept open between requests and lent to them as `request.state.reading_sessions`.
        bind = app.state.sessionmaker.kw.get("bind")
        reading = (make_reading_engine(bind, pool_size=settings.db_pool_size)
                   if settings.async_reads and isinstance(bind, Engine) and bind.dialect.name == "postgresql" else None)
        sessions = (ReadingSessions(sessionmaker(bind=reading.sync_engine, expire_on_commit=False),
                                    size=settings.db_pool_size) if reading else None)
        state = {"reading_sessions": sessions}
        try:
            async with anyio.create_task_group() as tasks:
                if settings.audit_seal_interval:
                    # Every process may seal: one at a time holds the chain, the others skip their turn.
                    sealer = partial(audit.run_sealer, app.state.sessionmaker, interval=settings.audit_seal_interval)
                    tasks.start_soon(sealer)
                yield state
                tasks.cancel_scope.cancel()
        finally:
            if reading is not None:
                await sessions.close()
                await reading.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="Labes",
        version=__version__,
        summary="Electronic data interchange for a national health-insurance fund.",
        # Off unless asked for: with no OpenTelemetry SDK set up, FastAPI still looks its three providers up on every
        # request (environment look-ups among them), ≈ 1 % of a rights check's instructions.
        telemetry={"tracing": settings.telemetry, "metrics": settings.telemetry, "logs": settings.telemetry},
    )
    app.state.settings = settings
    app.state.sessionmaker = factory or get_sessionmaker()
    install_handlers(app)

    app.add_middleware(RequestLog)

    @app.get("/healthz", tags=["operations"], openapi_extra={"x-permission": "public"})
    async def healthz() -> dict[str, str]:
        """The process answers (on its event loop: no worker thread needed, so a busy pool does not fail it)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], openapi_extra={"x-permission": "public"})
    def readyz(request: Request) -> JSONResponse:
        """The database answers and its schema is at the latest migration."""
        try:
            with request.app.state.sessionmaker() as session:
                session.execute(text("SELECT 1"))
                current = current_revision(session.connection())
        except Exception as exc:  # any failure to reach the database means "not ready"
            return JSONResponse({"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}, 503)
        head = head_revision()
        if current != head:
            return JSONResponse({"status": "unavailable", "database": "reachable", "migration": current,
                                 "expected": head, "detail": "run `labes db upgrade`"}, 503)
        return JSONResponse({"status": "ok", "database": "reachable", "migration": current})

    # Routes are matched in order, one by one: the point of care's, thousands a second, are tried first.
    app.include_router(care_router)
    app.include_router(fhir_router)
    app.include_router(security_router)
    app.include_router(registry_router)
    app.include_router(cards_router)
    app.include_router(distribution_router)
    app.include_router(sms_router)
    app.include_router(stats_router)
    app.include_router(claims_router)
    # The card-signed ones, the busiest, are dispatched by plain routes tried before every other (their OpenAPI
    # description stays with the routes above).
    app.router.routes[0:0] = dispatched_first(care_router)
    return app
