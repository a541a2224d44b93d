"""HTTP for card issuance, look-up, blocking, replacement and the printed-code check."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, status

from labes.cards import service
from labes.cards.crypto import Authority, KeysMissing, load_authority, verify_printed_code
from labes.cards.schemas import (
    CardBlock, CardEventRead, CardIssue, CardIssued, CardRead, CardReplace, PrintedCodeCheck, PrintedCodeRead,
)
from labes.errors import LabesError
from labes.security.deps import DbSession, UnitOfWorkRoute, permitted

router = APIRouter(prefix="/api/v1", tags=["cards"], route_class=UnitOfWorkRoute)


class KeysNotReady(LabesError):
    status, code, title = 503, "keys-not-initialised", "The fund's keys are not initialised"


def authority(request: Request) -> Authority:
    """Return the card-issuing authority from the configured keys directory."""
    try:
        return load_authority(request.app.state.settings.keys_dir.resolve())
    except KeysMissing as exc:
        raise KeysNotReady(str(exc)) from None


def _issued(result: service.IssuedCard) -> dict[str, Any]:
    return {**CardRead.model_validate(result.card).model_dump(), "card_file": json.loads(result.card_file)}


@router.post("/cards", response_model=CardIssued, status_code=status.HTTP_201_CREATED)
def issue_card(body: CardIssue, request: Request, session: DbSession, actor: permitted("cards:issue")) -> dict[str, Any]:
    """Issue a Labes, Amen or professional card; the response carries the card file once."""
    holder = service.resolve_holder(session, card_type=body.card_type, cin=body.cin, licence=body.licence)
    point = service.point_by_code(session, body.on_the_spot_at) if body.on_the_spot_at else None
    result = service.issue_card(session, actor=actor, authority=authority(request), holder=holder, pin=body.pin,
                                on_the_spot_at=point)
    return _issued(result)


@router.get("/cards/{serial}", response_model=CardRead)
def read_card(serial: str, session: DbSession, actor: permitted("cards:read")):
    """Read a card."""
    return service.get_card_or_raise(session, serial=serial)


@router.get("/cards/{serial}/history", response_model=list[CardEventRead])
def card_history(serial: str, session: DbSession, actor: permitted("cards:read")):
    """Every move of a card, oldest first."""
    return service.history(session, service.get_card_or_raise(session, serial=serial))


@router.post("/cards/{serial}/block", response_model=CardRead)
def block_card(serial: str, body: CardBlock, session: DbSession, actor: permitted("cards:issue")):
    """Block a card; it can never sign again."""
    return service.block(session, actor=actor, serial=serial, reason=body.reason)


@router.post("/cards/{serial}/replace", response_model=CardIssued, status_code=status.HTTP_201_CREATED)
def replace_card(serial: str, body: CardReplace, request: Request, session: DbSession,
                 actor: permitted("cards:issue")) -> dict[str, Any]:
    """Issue a replacement (new serial, new key), blocking the old card if it is still live."""
    point = service.point_by_code(session, body.on_the_spot_at) if body.on_the_spot_at else None
    return _issued(service.replace(session, actor=actor, authority=authority(request), serial=serial,
                                   reason=body.reason, pin=body.pin, on_the_spot_at=point))


@router.post("/cards/verify-code", response_model=PrintedCodeRead, openapi_extra={"x-permission": "public"})
def verify_code(body: PrintedCodeCheck, request: Request, session: DbSession) -> PrintedCodeRead:
    """Check a card's printed 2D code (anyone may: it is printed on the card)."""
    try:
        code = verify_printed_code(authority(request).public_key, body.code)
    except ValueError as exc:
        return PrintedCodeRead(genuine=False, reason=str(exc))
    return PrintedCodeRead(genuine=True, serial=code.serial, holder_name=code.holder_name, social_id=code.social_id,
                           cin_last3=code.cin_last3, card_state=service.state_of(session, serial=code.serial))
