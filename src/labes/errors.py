"""One error hierarchy, rendered as RFC 9457 problem+json by the API.

Each error class has a stable `type` URI; clients branch on it, never on the message.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_BASE = "https://labes.tn/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

log = logging.getLogger("labes.errors")


class LabesError(Exception):
    """An error the user can act on: a message in their words and an HTTP status."""

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """Return the problem+json body for this error."""
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.message,
        }
        if instance:
            body["instance"] = instance
        if self.field:
            body["errors"] = [{"field": self.field, "message": self.message}]
        body.update(self.extra)
        return body


class InvalidInput(LabesError):
    status, code, title = 400, "invalid-input", "Invalid input"


class NotAuthenticated(LabesError):
    status, code, title = 401, "not-authenticated", "Authentication required"


class NotPermitted(LabesError):
    status, code, title = 403, "not-permitted", "Not permitted"


class NotFound(LabesError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(LabesError):
    status, code, title = 409, "conflict", "Conflict"


class RuleViolation(LabesError):
    """The request is well formed but the fund's rules forbid it (e.g. a child past the age limit)."""

    status, code, title = 422, "rule-violation", "Refused by the fund's rules"


def _problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_handlers(app: FastAPI) -> None:
    """Render every error as problem+json with a stable type."""

    @app.exception_handler(LabesError)
    async def _labes(request: Request, exc: LabesError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
        return _problem_response(exc.problem(request.url.path), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field_name(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return _problem_response(
            {
                "type": PROBLEM_BASE + "malformed-request",
                "title": "Malformed request",
                "status": 422,
                "detail": detail,
                "instance": request.url.path,
                "errors": errors,
            }
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, f"http-{exc.status_code}")
        return _problem_response(
            {
                "type": PROBLEM_BASE + code,
                "title": str(exc.detail) if exc.status_code != 404 else "Not found",
                "status": exc.status_code,
                "detail": f"{request.method} {request.url.path}: {exc.detail}",
                "instance": request.url.path,
            },
            headers=exc.headers,  # a 405's Allow (RFC 9110 §15.5.6), a 401's WWW-Authenticate
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # Two requests racing past the same uniqueness check: the loser gets a conflict, never a 500.
        log.warning("integrity error on %s %s: %s", request.method, request.url.path, str(exc.orig).splitlines()[0])
        return _problem_response(
            Conflict("The record changed or was created by another request at the same moment; nothing was saved. "
                     "Reload it and try again.").problem(request.url.path)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        request_id = getattr(request.state, "request_id", None)
        # This handler answers outside the request middleware, which therefore cannot add the header itself.
        return _problem_response(
            {
                "type": PROBLEM_BASE + "internal-error",
                "title": "Internal error",
                "status": 500,
                "detail": "Something went wrong on our side; nothing was saved. Quote the request id to support.",
                "instance": request.url.path,
                "request_id": request_id,
            },
            {"x-request-id": request_id} if request_id else None,
        )
