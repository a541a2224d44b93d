"""HTTP for card distribution: pick-up points (the fund) and the delivery desk (the clerk at a pick-up point).

The desk answers only what a clerk needs to hand a card over — serial, name, type, state, the last three
digits of the CIN — never anything from the registry's health or family records.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from pydantic import Field

from labes.cards import distribution, points, sms
from labes.cards.schemas import PickupPointRead
from labes.schemas import Page, Schema
from labes.security.deps import DbSession, UnitOfWorkRoute, permitted

router = APIRouter(prefix="/api/v1", tags=["card distribution"], route_class=UnitOfWorkRoute)

PageNo = Annotated[int, Query(ge=1, le=10_000)]
PointKind = Literal["post_office", "fund_centre", "health_directorate", "mobile_centre"]


class PickupPointCreate(Schema):
    code: str = Field(min_length=2, max_length=16, description="Letters, digits and '-': PKAS11, CKAS01")
    kind: PointKind
    name_ar: str = Field(min_length=1, max_length=200)
    name_fr: str = Field(min_length=1, max_length=200)
    governorate: str = Field(min_length=3, max_length=3)
    delegation: str | None = Field(default=None, max_length=80)
    address_ar: str | None = Field(default=None, max_length=200)
    address_fr: str | None = Field(default=None, max_length=200)
    hours_ar: str | None = Field(default=None, max_length=120)
    hours_fr: str | None = Field(default=None, max_length=120)


class PickupPointUpdate(Schema):
    kind: PointKind | None = None
    name_ar: str | None = Field(default=None, min_length=1, max_length=200)
    name_fr: str | None = Field(default=None, min_length=1, max_length=200)
    governorate: str | None = Field(default=None, min_length=3, max_length=3)
    delegation: str | None = Field(default=None, max_length=80)
    address_ar: str | None = Field(default=None, max_length=200)
    address_fr: str | None = Field(default=None, max_length=200)
    hours_ar: str | None = Field(default=None, max_length=120)
    hours_fr: str | None = Field(default=None, max_length=120)


class DeskCard(Schema):
    serial: str
    serial_display: str = Field(description="As printed: 1000 0000 0016")
    card_type: str
    state: str
    first_name: str | None
    last_name: str
    name_ar: str | None
    cin_last3: str | None = Field(description="Last three digits of the holder's CIN, to match the ID presented")
    waiting_since: date | None
    collect_as: Literal["holder", "proxy"] | None = Field(
        default=None, description="In a search by CIN: whether that person collects the card as its holder or as proxy")


class Delivery(Schema):
    point: str = Field(min_length=2, max_length=16, description="Code of the pick-up point the clerk works at")
    presented_cin: str = Field(min_length=8, max_length=12, description="The CIN on the national ID shown at the desk")
    to: Literal["holder", "proxy"]
    proxy_name: str | None = Field(default=None, max_length=200,
                                   description="Proxy's full name as on their ID (to=proxy; the CIN is presented_cin)")


class DeliveredCard(Schema):
    model_config = Schema.model_config | {"extra": "ignore"}
    serial: str
    state: str
    delivered_on: date | None


class Reception(Schema):
    point: str = Field(min_length=2, max_length=16, description="Code of the pick-up point receiving the shipment")


class BatchRead(Schema):
    model_config = Schema.model_config | {"extra": "ignore"}
    number: str
    state: str
    cards: int
    created_at: datetime
    shipped_at: datetime | None
    received_at: datetime | None


# ---------------------------------------------------------------- pick-up points


@router.get("/pickup-points", response_model=Page[PickupPointRead])
def list_pickup_points(session: DbSession, actor: permitted("cards:read"), governorate: str | None = None,
                       kind: PointKind | None = None, page: PageNo = 1,
                       page_size: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    """Pick-up points, by code; filter by governorate and kind."""
    items, has_more = points.list_points(session, governorate=governorate, kind=kind, page=page,
                                               page_size=page_size)
    return {"items": items, "page": page, "page_size": page_size, "has_more": has_more}


@router.post("/pickup-points", response_model=PickupPointRead, status_code=status.HTTP_201_CREATED)
def create_pickup_point(body: PickupPointCreate, session: DbSession, actor: permitted("cards:issue")):
    """Add a post office, fund centre, regional health directorate or mobile centre."""
    return points.create_point(session, actor=actor, data=body.model_dump())


@router.patch("/pickup-points/{code}", response_model=PickupPointRead)
def update_pickup_point(code: str, body: PickupPointUpdate, session: DbSession, actor: permitted("cards:issue")):
    """Change a pick-up point's names, address, hours or place."""
    return points.update_point(session, actor=actor, code=code, changes=body.model_dump(exclude_unset=True))


# ---------------------------------------------------------------- the delivery desk


@router.get("/desk/points/{code}/cards", response_model=list[DeskCard])
def find_waiting_cards(code: str, session: DbSession, actor: permitted("desk:deliver"), serial: str | None = None,
                       cin: str | None = None) -> list[dict[str, Any]]:
    """Cards waiting at this point, by serial or by CIN (with the cards that person may collect for dependants)."""
    return distribution.find_at_point(session, point_code=code, serial=serial, cin=cin)


@router.get("/desk/points/{code}/awaiting", response_model=Page[DeskCard])
def awaiting_pickup(code: str, session: DbSession, actor: permitted("desk:deliver"), page: PageNo = 1,
                    page_size: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    """Every card waiting at this point, by serial."""
    items, has_more = distribution.awaiting_pickup(session, point_code=code, page=page, page_size=page_size)
    return {"items": items, "page": page, "page_size": page_size, "has_more": has_more}


@router.post("/desk/cards/{serial}/deliver", response_model=DeliveredCard)
def deliver_card(serial: str, body: Delivery, session: DbSession, actor: permitted("desk:deliver")):
    """Hand a card over against the national ID presented, to its holder or to an allowed proxy."""
    return distribution.deliver(session, actor=actor, serial=serial, point_code=body.point,
                                presented_cin=body.presented_cin, to=body.to, proxy_name=body.proxy_name)


@router.post("/desk/batches/{number}/receive", response_model=BatchRead)
def receive_shipment(number: str, body: Reception, request: Request, session: DbSession,
                     actor: permitted("desk:deliver")):
    """Record a whole shipment as received at this point; each holder is told by SMS (sent after commit)."""
    batch = distribution.receive_batch(session, actor=actor, number=number, point_code=body.point)
    sender = getattr(request.app.state, "sms_sender", None) or sms.sender_from_settings()
    sms.send_after_commit(session, sender=sender, factory=request.app.state.sessionmaker)
    return batch
