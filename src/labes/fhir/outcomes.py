"""Errors on the FHIR facade: every refusal is an OperationOutcome with the right HTTP status.

The application's handlers already turn each `LabesError` (and validation, HTTP and integrity errors)
into RFC 9457 problem+json, after the request's transaction has rolled back. `FhirRoute` rewrites those
answers as OperationOutcome on the way out, so the FHIR routes keep the one error hierarchy and the
one unit of work of the rest of the API. An unexpected error is logged and answered as an
OperationOutcome too.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi.responses import Response
from fhir.resources.R4B.operationoutcome import OperationOutcome
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from labes.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, LabesError
from labes.security.deps import UnitOfWorkRoute

FHIR_JSON = "application/fhir+json"
PROBLEM_SYSTEM = PROBLEM_BASE.rstrip("/")  # the problem types, as a code system: clients branch on the code

log = logging.getLogger("labes.fhir")

# Problem type → FHIR issue type (http://hl7.org/fhir/issue-type); by status when the type is not listed.
_ISSUE_BY_PROBLEM = {
    "malformed-request": "invalid", "invalid-input": "invalid", "invalid-resource": "invalid",
    "not-authenticated": "login", "not-permitted": "forbidden", "invalid-transaction": "security",
    "card-refused": "security", "not-found": "not-found", "method-not-allowed": "not-supported",
    "not-supported": "not-supported", "conflict": "conflict", "rule-violation": "business-rule",
    "keys-not-initialised": "transient", "internal-error": "exception",
}
_ISSUE_BY_STATUS = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                    409: "conflict", 422: "business-rule", 503: "transient"}


class InvalidResource(LabesError):
    """A FHIR resource that does not parse, or that `fhir.resources` (or our mapping) refuses."""

    status, code, title = 400, "invalid-resource", "Invalid FHIR resource"

    def __init__(self, message: str, *, errors: list[dict[str, str]] | None = None, field: str | None = None) -> None:
        super().__init__(message, field=field)
        if errors:
            self.extra["errors"] = errors


class NotSupported(LabesError):
    """An interaction this server does not offer (see its CapabilityStatement at /fhir/metadata)."""

    status, code, title = 405, "not-supported", "Not supported by this FHIR server"


class FhirResponse(Response):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        if hasattr(content, "model_dump_json"):  # a fhir.resources model, validated when built
            return content.model_dump_json().encode("utf-8")
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def outcome_of(problem: dict[str, Any]) -> tuple[int, OperationOutcome]:
    """Return the FHIR status and OperationOutcome for a problem+json body."""
    status = int(problem.get("status") or 500)
    code = str(problem.get("type", "")).removeprefix(PROBLEM_BASE) or f"http-{status}"
    if code == "malformed-request":
        status = 400  # FHIR: a body that does not parse or validate is a 400; 422 is a business rule
    issue_type = _ISSUE_BY_PROBLEM.get(code) or _ISSUE_BY_STATUS.get(status, "processing" if status < 500 else "exception")
    details = {"coding": [{"system": PROBLEM_SYSTEM, "code": code}], "text": problem.get("title") or "Error"}
    errors = [e for e in problem.get("errors") or [] if isinstance(e, dict) and e.get("message")]
    if errors:
        issues = [{"severity": "error", "code": issue_type, "details": details, "diagnostics": str(e["message"]),
                   **({"expression": [str(e["field"])]} if e.get("field") else {})} for e in errors]
        if len(errors) > 1 and problem.get("detail"):
            issues.insert(0, {"severity": "error", "code": issue_type, "details": details,
                              "diagnostics": str(problem["detail"])})
    else:
        issues = [{"severity": "error", "code": issue_type, "details": details,
                   "diagnostics": str(problem.get("detail") or problem.get("title") or "Error")}]
    if problem.get("request_id"):
        issues[0]["diagnostics"] += f" (request id {problem['request_id']})"
    return status, OperationOutcome.model_validate({"resourceType": "OperationOutcome", "issue": issues})


def _headers(message: Message, body: bytes) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in (b"content-type", b"content-length")]
    return [*kept, (b"content-type", FHIR_JSON.encode()), (b"content-length", str(len(body)).encode())]


class FhirRoute(UnitOfWorkRoute):
    """A route whose errors leave as OperationOutcome (rewritten from the app's problem+json); it commits like every route."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: Message | None = None
        chunks: list[bytes] = []
        started = False

        async def rewrite(message: Message) -> None:
            nonlocal held, started
            if message["type"] == "http.response.start":
                started = True
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if content_type.startswith(PROBLEM_MEDIA_TYPE.encode()):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                try:
                    problem = json.loads(b"".join(chunks))
                except ValueError:
                    problem = {"status": held["status"], "detail": "The server could not describe the error."}
                status, outcome = outcome_of(problem)
                body = outcome.model_dump_json().encode("utf-8")
                await send({**held, "status": status, "headers": _headers(held, body)})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        try:
            await super().handle(scope, receive, rewrite)
        except Exception as exc:
            if started:
                raise
            if isinstance(exc, StarletteHTTPException):
                code = "method-not-allowed" if exc.status_code == 405 else f"http-{exc.status_code}"
                problem = {"type": PROBLEM_BASE + code,
                           "title": str(exc.detail), "status": exc.status_code,
                           "detail": f"{scope.get('method')} {scope.get('path')}: {exc.detail}"}
            else:
                log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
                problem = {"type": PROBLEM_BASE + "internal-error", "title": "Internal error", "status": 500,
                           "detail": "Something went wrong on our side; nothing was saved. Quote the request id to support.",
                           "request_id": scope.get("state", {}).get("request_id")}
            status, outcome = outcome_of(problem)
            await FhirResponse(outcome, status_code=status)(scope, receive, send)
