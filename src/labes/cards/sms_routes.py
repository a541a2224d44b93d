"""HTTP for SMS: the operator's gateway delivers messages sent to 1017; agents read what was sent to a number."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ConfigDict, Field, ValidationError

from labes.cards import sms
from labes.errors import LabesError
from labes.schemas import Schema
from labes.security.deps import DbSession, UnitOfWorkRoute, permitted

router = APIRouter(prefix="/api/v1/sms", tags=["sms"], route_class=UnitOfWorkRoute)


class SmsInbound(Schema):
    """A message the gateway received for 1017 (extra fields gateways add are ignored)."""

    model_config = Schema.model_config | ConfigDict(extra="ignore", populate_by_name=True)
    sender: str = Field(alias="from", min_length=1, max_length=32, description="The sender's phone number")
    text: str = Field(default="", max_length=1600, description="The message as typed, e.g. *1017*12345678#")


class SmsReply(Schema):
    reply: str | None = Field(description="The answer queued to the sender; null when the sender is over the "
                                          "hourly limit and was already told so")


class SmsRead(Schema):
    model_config = Schema.model_config | ConfigDict(extra="ignore")
    id: int
    number: str
    text: str
    at: datetime
    status: str
    purpose: str | None


class UnsupportedMediaType(LabesError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


async def inbound_message(request: Request) -> SmsInbound:
    """Read the gateway's message from a form (application/x-www-form-urlencoded) or a JSON body."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    data: Any
    if media_type == "application/x-www-form-urlencoded":
        data = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    elif media_type in ("", "application/json") or media_type.endswith("+json"):
        try:
            data = json.loads(raw) if raw else None
        except ValueError as exc:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": f"Invalid JSON: {exc}",
                                           "input": None}]) from None
    else:
        raise UnsupportedMediaType(f"Send the message as JSON or as an url-encoded form, not {media_type}.")
    try:
        return SmsInbound.model_validate(data)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _sender(request: Request) -> sms.SmsSender:
    # Tests and embedders may put a sender on the app; otherwise the configured gateway.
    return getattr(request.app.state, "sms_sender", None) or sms.sender_from_settings()


@router.post("/inbound", response_model=SmsReply)
def receive(actor: permitted("sms:gateway"), message: Annotated[SmsInbound, Depends(inbound_message)],
            request: Request, session: DbSession) -> SmsReply:
    """A message to 1017 (`*1017*<CIN>#`): answer where the family's cards are; the reply goes out after commit."""
    reply = sms.handle_inbound(session, number=message.sender, text=message.text, now=datetime.now(UTC))
    sms.send_after_commit(session, sender=_sender(request), factory=request.app.state.sessionmaker)
    return SmsReply(reply=reply)


@router.get("/outbox", response_model=list[SmsRead])
def read_outbox(actor: permitted("cards:read"), session: DbSession,
                number: Annotated[str, Query(min_length=3, max_length=32, description="The recipient's number")],
                limit: Annotated[int, Query(ge=1, le=200)] = 50):
    """The messages sent to a number, newest first (with the development gateway, the only place they are)."""
    return sms.outbox(session, number=number, limit=limit)
