"""API shapes of the cards domain."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field

from labes.schemas import Schema


class CardIssue(Schema):
    card_type: Literal["labes", "amen", "professional"]
    cin: str | None = Field(default=None, description="The holder's CIN (Labes and Amen cards)")
    licence: str | None = Field(default=None, description="The professional's licence (professional cards)")
    pin: str | None = Field(default=None, description="Professional cards: the PIN that protects the key")
    on_the_spot_at: str | None = Field(default=None, description="Code of the fund or mobile centre handing it over now")


class CardRead(Schema):
    model_config = Schema.model_config | {"extra": "ignore"}
    serial: str
    card_type: str
    holder_name: str
    governorate: str
    state: str
    issued_at: datetime
    printed_on: date
    delivered_on: date | None
    first_used_at: datetime | None
    last_used_at: datetime | None
    block_reason: str | None
    printed_code: str


class CardIssued(CardRead):
    card_file: dict[str, Any] = Field(description="Personalisation output: the virtual card (key + certificate). "
                                                  "Shown once; the fund keeps only the public key.")


class CardEventRead(Schema):
    model_config = Schema.model_config | {"extra": "ignore"}
    at: datetime
    event: str
    from_state: str | None
    to_state: str
    actor: str
    details: dict[str, Any] | None


class CardBlock(Schema):
    reason: Literal["lost", "stolen", "damaged", "deceased", "rights_ended"]


class CardReplace(Schema):
    reason: Literal["lost", "stolen", "damaged"] | None = None
    pin: str | None = None
    on_the_spot_at: str | None = None


class PrintedCodeCheck(Schema):
    code: str = Field(min_length=10, max_length=400)


class PrintedCodeRead(Schema):
    genuine: bool
    serial: str | None = None
    holder_name: str | None = None
    social_id: str | None = None
    cin_last3: str | None = None
    card_state: str | None = None
    reason: str | None = None


class PickupPointRead(Schema):
    model_config = Schema.model_config | {"extra": "ignore"}
    id: uuid.UUID
    code: str
    kind: str
    name_ar: str
    name_fr: str
    governorate: str
    delegation: str | None
    address_ar: str | None
    address_fr: str | None
    hours_ar: str | None
    hours_fr: str | None
