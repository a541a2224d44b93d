"""The card-signed guard of point-of-care routes: the professional's card is the credential, not a password."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeVar

import pydantic_core
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session
from sqlalchemy.util import greenlet_spawn
from starlette.routing import Route

from labes.cards.crypto import KeysMissing
from labes.care import protocol, transactions
from labes.care.transactions import Verified, VerifiedInsured
from labes.db import ReadingSessions, session_scope
from labes.errors import LabesError
from labes.security.deps import run_unit_of_work

M = TypeVar("M", bound=BaseModel)
refused_log = logging.getLogger("labes.care.refused")


class KeysNotReady(LabesError):
    status, code, title = 503, "keys-not-initialised", "The fund's keys are not initialised"


class SignedRequest(BaseModel):
    """Every point-of-care action: the transaction the cards signed, and the content whose digest it carries.

    Read as plain JSON (no whitespace stripping or coercion), so the digest is computed over exactly what was sent.
    """

    model_config = ConfigDict(extra="forbid")

    transaction: dict[str, Any] = Field(description="JWS General JSON Serialization (RFC 7515 §7.2.1), ES256, one signature per card")
    content: dict[str, Any] = Field(description="The action's content; its RFC 8785 SHA-256 digest is in the signed transaction")


def challenge_secret(request: Request) -> bytes:
    try:
        return transactions.challenge_secret(request.app.state.settings.keys_dir)
    except KeysMissing as exc:
        raise KeysNotReady(str(exc)) from None


@dataclass(frozen=True)
class SignedAction:
    """A signed request, read but not yet checked: `accept(session)` checks it inside the handler's transaction.

    The checks read the database and write (the challenge's use, a card's first use), so they run in the
    same thread and transaction as the action itself: a dependency would run in its own thread, and a
    transaction holding row locks while it waits for the next free thread can stall every other one.
    """

    body: dict[str, Any]
    action: str
    secret: bytes
    patient: str
    freshness: str
    patient_file: bool = False  # read the patient's file with the cards (transactions.accept(patient_file=True))

    def accept(self, session, *, reading: bool = False) -> Verified | VerifiedInsured:
        with self._refusals_logged():
            if self.action in protocol.INSURED_ACTIONS:  # signed by the insured's own card, with no professional
                return transactions.accept_insured(session, body=self.body, action=self.action, secret=self.secret,
                                                   reading=reading)
            return transactions.accept(session, body=self.body, action=self.action, secret=self.secret,
                                       patient=self.patient, freshness=self.freshness, reading=reading,
                                       patient_file=self.patient_file and reading)

    def spend(self, session, verified: Verified | VerifiedInsured) -> None:
        """End a reading request: spend its challenge with its audit event (`transactions.spend_with_audit`)."""
        with self._refusals_logged():
            transactions.spend_with_audit(session, verified)

    @contextmanager
    def _refusals_logged(self) -> Iterator[None]:
        try:
            yield
        except LabesError as exc:
            # Nothing is written for a refused transaction (it rolls back), so the log keeps the trace that
            # forged signatures, replays and blocked cards leave: who claimed to sign, where, and why no.
            payload = self.body.get("transaction", {}).get("payload") if isinstance(self.body, dict) else None
            claims = _peek(payload)
            refused_log.warning("transaction refused", extra={"fields": {
                "action": self.action, "problem": exc.code, "reason": exc.message,
                "professional_card": claims.get("professional_card"), "patient_card": claims.get("patient_card"),
                "facility": claims.get("facility")}})
            raise


def _peek(payload: Any) -> dict[str, Any]:
    """Read the claimed transaction for the log, trusting nothing and failing on nothing."""
    try:
        value = json.loads(protocol.b64url_decode(payload))
        return {k: str(v)[:40] for k, v in value.items()} if isinstance(value, dict) else {}
    except Exception:  # noqa: BLE001 - a log line must never fail the request
        return {}


class CardSigned:
    """The base of a dependency that reads a signed request for `action` (the FHIR facade's); its handler calls
    `accept(session)` first. The REST API's point-of-care routes read theirs in `signed_route`."""

    def __init__(self, action: str, *, patient: Literal["required", "optional", "none"] = "required",
                 freshness: Literal["challenge", "challenge-or-client-key"] = "challenge") -> None:
        self.action, self.patient, self.freshness = action, patient, freshness

    def action_for(self, request: Request, body: SignedRequest) -> SignedAction:
        return SignedAction(_as_sent(body), self.action, challenge_secret(request), self.patient, self.freshness)


def _as_sent(envelope: SignedRequest) -> dict[str, Any]:
    # The validated values as they are (a model_dump() would copy every nested value of the content).
    return {"transaction": envelope.transaction, "content": envelope.content}


def content_as(model: type[M], verified: Verified | VerifiedInsured) -> M:
    """Validate the signed content against `model`, reporting errors under `content.` like any malformed body."""
    try:
        return model.model_validate(verified.content)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", "content", *error["loc"])} for error in exc.errors()]) from None


# ------------------------------------------------------------------------------------------- card-signed routes
# A point-of-care route is one function from the signed request to its answer: the body is read, the unit of
# work begun, the transaction checked, the action done and committed, the answer encoded, and nothing else.
# FastAPI's dependencies (a generator and its exit stack), body model and answer validation cost ≈ 0.1 ms of a
# rights check's ≈ 2.3 ms of server CPU; what they gave (the 422 of a malformed envelope, the problem answers,
# the OpenAPI description) is kept here.

Answer = dict[str, Any] | tuple[dict[str, Any], int]
Handler = Callable[..., Answer]


def signed_route(router: APIRouter, path: str, *, action: str, content: type[BaseModel], status_code: int = 200,
                 patient: Literal["required", "optional", "none"] = "required",
                 freshness: Literal["challenge", "challenge-or-client-key"] = "challenge",
                 reading: bool = False, patient_file: bool = False) -> Callable[[Handler], Handler]:
    """Register `handler(session, verified, content, **path_values)` as the card-signed `POST path` for `action`.

    The handler gets the checked transaction (`transactions.accept`) and its content validated as `content`
    (a 422 naming the field otherwise); it returns its answer, or `(answer, status)` to answer other than
    `status_code` (200 for a care sheet sent again under its client key). It is committed when it returns;
    whatever it raises rolls everything back.

    `reading`: the handler only reads and records one audit event at most (a rights check). Its challenge is
    then spent with that event, by the request's last statement (`transactions.spend_with_audit`); on
    PostgreSQL the request needs no transaction around its statements, which saves BEGIN and COMMIT. A
    reading handler that tried to write would be stopped at its flush.

    `patient_file` (with `reading`): the handler reads the patient's file on the day of care; it is read with the
    cards, in the gate's one statement, as `verified.patient_file`.
    """
    def register(handler: Handler) -> Handler:
        path_values = [parameter for name, parameter in inspect.signature(handler, eval_str=True).parameters.items()
                       if name not in ("session", "verified", "content")]

        async def endpoint(request: Request, **values: Any) -> Response:
            signed = SignedAction(await _envelope(request), action, challenge_secret(request), patient, freshness,
                                  patient_file)
            work = (request, signed, handler, content, values)
            readers = getattr(request.state, "reading_sessions", None) if reading else None  # the lifespan's (app.py)
            if readers is not None:
                answer = await _serve_reading_awaited(readers, *work)
            else:
                answer = await run_unit_of_work(request, partial(_serve_reading if reading else _serve, *work))
            answer, status = answer if isinstance(answer, tuple) else (answer, status_code)
            return Response(pydantic_core.to_json(answer), status, media_type="application/json")

        endpoint.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request), *path_values])
        endpoint.__name__, endpoint.__doc__ = handler.__name__, handler.__doc__
        endpoint.card_signed = action  # type: ignore[attr-defined]  # what tests/security/test_permissions.py looks for
        router.add_api_route(path, endpoint, methods=["POST"], status_code=status_code,
                             openapi_extra={"x-permission": "card-signed", "requestBody": _documented(content)})
        return handler
    return register


def dispatched_first(router: APIRouter) -> list[Route]:
    """Return plain routes serving the card-signed endpoints of `router`, for the app to try before all others.

    FastAPI's route (kept: it describes the request in OpenAPI, with its permission) would call the same endpoint
    after its own request handling: dependencies (none here), parameter validation (the path's values are plain
    strings) and answer encoding (the endpoint returns its Response): ≈ 0.25 M instructions of a rights check's
    4.7 M, 5 %. The plain route keeps what the app does for every request (its middleware, the error answers of
    `labes.errors`), and answers a path's other methods 405 as FastAPI's would."""
    signed = [route for route in router.routes if isinstance(route, APIRoute) and hasattr(route.endpoint, "card_signed")]
    for route in signed:
        if route.dependant.dependencies:  # a router's or route's own: the plain route would skip them
            raise ValueError(f"{route.path} has dependencies; a card-signed route is dispatched without them.")
    return [Route(route.path, partial(_direct, route.endpoint), methods=["POST"], name=route.name,
                  include_in_schema=False) for route in signed]


async def _direct(endpoint: Callable[..., Any], request: Request) -> Response:
    return await endpoint(request, **request.path_params)


def _documented(content: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a signed request whose content is `content` (its schema written out in full)."""
    envelope = SignedRequest.model_json_schema()
    envelope["properties"]["content"] = {**_inlined(content.model_json_schema()),
                                         "description": envelope["properties"]["content"]["description"]}
    return {"required": True, "content": {"application/json": {"schema": envelope}}}


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """Return `schema` with its `$defs` written where they are referenced (the content models are not recursive)."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        own = {key: resolve(value) for key, value in node.items() if key != "$ref"}
        if "$ref" in node:
            return {**resolve(definitions[node["$ref"].rsplit("/", 1)[1]]), **own}
        return own

    return resolve(schema)


def _serve(request: Request, signed: SignedAction, handler: Handler, content: type[BaseModel],
           values: dict[str, Any]) -> Answer:
    with session_scope(request.app.state.sessionmaker) as session:
        session.info["request_id"] = getattr(request.state, "request_id", None)
        verified = signed.accept(session)
        return handler(session, verified, content_as(content, verified), **values)


_READING = "labes_reading"  # Session.info key: this unit of work may not flush a change
# What a reading request may raise and leave its kept session fit for the next: refusals and malformed content
# (nothing reached the database, or only statements that succeeded), and a card's first use handed over.
_SESSION_UNHARMED = (LabesError, RequestValidationError, transactions.NeedsTransaction)


def _serve_reading(request: Request, signed: SignedAction, handler: Handler, content: type[BaseModel],
                   values: dict[str, Any]) -> Answer:
    try:
        with request.app.state.sessionmaker() as session:  # closed at the end; committed only if it holds a transaction
            bind = session.get_bind()
            # On PostgreSQL each statement is its own transaction: the reads need none, and the one write is one
            # statement; there is nothing to commit.
            autocommit = isinstance(bind, Engine) and bind.dialect.name == "postgresql"
            if autocommit:
                session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            answer = _read_only(session, request, signed, handler, content, values)
            if not autocommit:
                session.commit()
            return answer
    except transactions.NeedsTransaction:
        return _serve(request, signed, handler, content, values)  # a card's first use: as a writing request


async def _serve_reading_awaited(readers: ReadingSessions, request: Request, signed: SignedAction,
                                 handler: Handler, content: type[BaseModel], values: dict[str, Any]) -> Answer:
    """A reading request on the event loop, its statements awaited (PostgreSQL's asynchronous driver, on a session
    of `readers`, whose connections commit each statement): the process serves other requests while this one
    waits on the database. A card's first use is then served as a writing request, where the server runs those."""
    try:
        async with readers.session(keep_on=_SESSION_UNHARMED) as session:
            return await greenlet_spawn(_read_only, session, request, signed, handler, content, values)
    except transactions.NeedsTransaction:
        return await run_unit_of_work(request, partial(_serve, request, signed, handler, content, values))


def _read_only(session: Session, request: Request, signed: SignedAction, handler: Handler,
               content: type[BaseModel], values: dict[str, Any]) -> Answer:
    session.info["request_id"] = getattr(request.state, "request_id", None)
    session.info[_READING] = True
    verified = signed.accept(session, reading=True)
    answer = handler(session, verified, content_as(content, verified), **values)
    signed.spend(session, verified)
    return answer


@event.listens_for(Session, "before_flush")
def _refuse_writes_while_reading(session: Session, _context, _instances) -> None:
    if session.info.get(_READING) and (session.new or session.dirty or session.deleted):
        raise RuntimeError("A reading request (signed_route(reading=True)) tried to write: declare it writing.")


async def _envelope(request: Request) -> dict[str, Any]:
    """Read the body as the signed envelope, or raise the 422 of a malformed request (what FastAPI would say)."""
    media_type = request.headers.get("content-type", "application/json").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise RequestValidationError([{"type": "model_attributes_type", "loc": ("body",), "input": None,
                                       "msg": f"Send the signed request as application/json, not {media_type}"}])
    body = await request.body()
    try:
        value = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", getattr(exc, "pos", 0)), "input": {},
                                       "msg": "JSON decode error", "ctx": {"error": str(exc)}}]) from None
    try:
        return _as_sent(SignedRequest.model_validate(value))
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]) from None
