"""Tables of the cards domain: cards, their history, pick-up points, shipment batches, SMS."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, Date, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from labes.db import Base

CARD_TYPES = ("labes", "amen", "professional")
POINT_KINDS = ("post_office", "fund_centre", "health_directorate", "mobile_centre")


class CardCounter(Base):
    """The next serial number per card type; blocks of numbers are taken with one UPDATE … RETURNING."""

    __tablename__ = "card_counter"

    card_type: Mapped[str] = mapped_column(String(12), primary_key=True)
    next_number: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class PickupPoint(Base):
    """Where a card waits for its holder: a post office, a fund centre, a regional health directorate."""

    __tablename__ = "pickup_point"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    name_ar: Mapped[str] = mapped_column(String(200))
    name_fr: Mapped[str] = mapped_column(String(200))
    governorate: Mapped[str] = mapped_column(String(3), index=True)
    delegation: Mapped[str | None] = mapped_column(String(80))
    address_ar: Mapped[str | None] = mapped_column(String(200))
    address_fr: Mapped[str | None] = mapped_column(String(200))
    hours_ar: Mapped[str | None] = mapped_column(String(120))
    hours_fr: Mapped[str | None] = mapped_column(String(120))


class Batch(Base):
    """A shipment of printed cards to one pick-up point."""

    __tablename__ = "card_batch"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    number: Mapped[str] = mapped_column(String(24), unique=True)
    point_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pickup_point.id"), index=True)
    state: Mapped[str] = mapped_column(String(12))  # open, shipped, received
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cards: Mapped[int] = mapped_column(Integer, default=0)


class Card(Base):
    """A smart card: Labes (insured or dependant), Amen (safety net) or professional.

    The private key lives only on the card; the server keeps the public key and the certificate the
    fund's card-issuing authority signed for it.
    """

    __tablename__ = "card"
    __table_args__ = (
        Index("ix_card_holder_person", "holder_person_id"),
        Index("ix_card_holder_professional", "holder_professional_id"),
        Index("ix_card_state_point", "state", "point_id"),
        # Room on each page for the card's next version: noting its last use (an unindexed column) is then a
        # heap-only update, not a new entry in each of the seven indexes (migration 0009).
        {"postgresql_with": {"fillfactor": 80}},
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    serial: Mapped[str] = mapped_column(String(12), unique=True)
    card_type: Mapped[str] = mapped_column(String(12))
    holder_person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("person.id"))
    holder_professional_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("professional.id"))
    holder_name: Mapped[str] = mapped_column(String(200))
    governorate: Mapped[str] = mapped_column(String(3), index=True)
    state: Mapped[str] = mapped_column(String(12))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    printed_on: Mapped[date] = mapped_column(Date)
    delivered_on: Mapped[date | None] = mapped_column(Date)
    first_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    point_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("pickup_point.id"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("card_batch.id"), index=True)
    block_reason: Mapped[str | None] = mapped_column(String(20))
    replaces_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("card.id"))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # SubjectPublicKeyInfo, DER
    certificate: Mapped[bytes] = mapped_column(LargeBinary)  # X.509, DER
    printed_code: Mapped[str] = mapped_column(Text)  # the signed 2D code printed on the card


class CardEvent(Base):
    """One step in a card's life: who moved it from which state to which, where, and why."""

    __tablename__ = "card_event"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("card.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event: Mapped[str] = mapped_column(String(24))
    from_state: Mapped[str | None] = mapped_column(String(12))
    to_state: Mapped[str] = mapped_column(String(12))
    actor: Mapped[str] = mapped_column(String(160))
    point_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("pickup_point.id"))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SmsMessage(Base):
    """An SMS received or sent (the development gateway's outbox is this table)."""

    __tablename__ = "sms_message"
    __table_args__ = (Index("ix_sms_message_number_at", "number", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    direction: Mapped[str] = mapped_column(String(3))  # in, out
    number: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(12))  # received, queued, sent, failed, limited
    purpose: Mapped[str | None] = mapped_column(String(32))
