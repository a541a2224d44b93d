"""Card issuance, lifecycle moves, blocking, replacement and signature checks.

Plain functions taking a session first; they flush, never commit, and every move is audited
(`card:status:<event>`) and kept in the card's own history (`card_event`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labes.cards import lifecycle
from labes.cards.crypto import (
    Authority, CertificateRefused, card_certificate, check_card_certificate, printed_code, verify_raw,
)
from labes.cards.models import Card, CardCounter, CardEvent, PickupPoint
from labes.cards.serials import SerialError, make_serial, normalize_serial
from labes.cards.tokens import card_file
from labes.errors import Conflict, InvalidInput, LabesError, NotFound, RuleViolation
from labes.registry.models import AmenHousehold, AmenMember, Dependant, Member, Person, Professional
from labes.security import audit
from labes.security.audit import Actor


class CardRefused(LabesError):
    """A card that may not authenticate: blocked, replaced, not yet delivered, or a forged signature."""

    status, code, title = 403, "card-refused", "Card refused"


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- serials and look-ups


def allocate_serials(session: Session, *, card_type: str, count: int) -> list[str]:
    """Reserve `count` consecutive serials of `card_type` (one UPDATE … RETURNING, safe under concurrency)."""
    if session.get(CardCounter, card_type) is None:
        session.add(CardCounter(card_type=card_type, next_number=1))
        session.flush()
    end = session.execute(update(CardCounter).where(CardCounter.card_type == card_type)
                          .values(next_number=CardCounter.next_number + count)
                          .returning(CardCounter.next_number)).scalar_one()
    return [make_serial(card_type, number) for number in range(end - count, end)]


def get_card_or_raise(session: Session, *, serial: str) -> Card:
    """Return the card with `serial` (any spelling the serial parser accepts) or raise NotFound."""
    try:
        serial = normalize_serial(serial)
    except SerialError as exc:
        raise InvalidInput(str(exc), field="serial") from None
    card = session.scalar(select(Card).where(Card.serial == serial))
    if card is None:
        raise NotFound(f"No card with the serial {serial}.", field="serial")
    return card


def state_of(session: Session, *, serial: str) -> str | None:
    """Return the state of the card `serial`, or None if the fund has no such card."""
    return session.scalar(select(Card.state).where(Card.serial == serial))


def history(session: Session, card: Card) -> list[CardEvent]:
    """Return the card's moves, oldest first."""
    return list(session.scalars(select(CardEvent).where(CardEvent.card_id == card.id).order_by(CardEvent.id)))


# ---------------------------------------------------------------- holders


@dataclass(frozen=True)
class Holder:
    """Who a card is for, and what its printed code shows."""

    card_type: str
    person_id: uuid.UUID | None
    professional_id: uuid.UUID | None
    name: str
    social_id: str
    cin_last3: str
    governorate: str
    delegation: str | None


def _family_social_id(session: Session, person_id: uuid.UUID) -> str | None:
    social_id = session.scalar(select(Member.social_id).where(Member.person_id == person_id))
    if social_id is None:
        social_id = session.scalar(select(Member.social_id).join(Dependant, Dependant.member_id == Member.id)
                                   .where(Dependant.person_id == person_id).limit(1))
    return social_id


def resolve_holder(session: Session, *, card_type: str, cin: str | None = None, person_id: uuid.UUID | None = None,
                   licence: str | None = None) -> Holder:
    """Find the holder of a new card and check they may have one of this type."""
    if card_type == "professional":
        professional = session.scalar(select(Professional).where(Professional.licence == (licence or "")))
        if professional is None:
            raise NotFound(f"No professional with the licence {licence}.", field="licence")
        return Holder("professional", None, professional.id, professional.name_lat, professional.licence,
                      (professional.cin or "000")[-3:], professional.governorate, professional.delegation)
    if card_type not in ("labes", "amen"):
        raise InvalidInput(f"Unknown card type {card_type!r}; expected labes, amen or professional.", field="card_type")
    query = select(Person).where(Person.id == person_id) if person_id else select(Person).where(Person.cin == cin)
    person = session.scalar(query)
    if person is None:
        raise NotFound(f"No registered person with the {'id ' + str(person_id) if person_id else 'CIN ' + str(cin)}.",
                       field="cin")
    if card_type == "labes":
        social_id = _family_social_id(session, person.id)
        if social_id is None:
            raise RuleViolation("A Labes card is for an insured member or a dependant; this person is in no family.",
                                field="cin")
    else:
        social_id = session.scalar(select(AmenHousehold.number).join(AmenMember, AmenMember.household_id == AmenHousehold.id)
                                   .where(AmenMember.person_id == person.id).limit(1))
        if social_id is None:
            raise RuleViolation("An Amen card is for a member of an Amen household; this person is in none.", field="cin")
    name = f"{person.first_name_lat} {person.last_name_lat}"
    return Holder(card_type, person.id, None, name, social_id, (person.cin or "000")[-3:], person.governorate,
                  person.delegation)


def live_card(session: Session, holder: Holder) -> Card | None:
    """Return the holder's card of that type that is not blocked, if any."""
    column = Card.holder_professional_id if holder.card_type == "professional" else Card.holder_person_id
    holder_id = holder.professional_id if holder.card_type == "professional" else holder.person_id
    return session.scalar(select(Card).where(column == holder_id, Card.card_type == holder.card_type,
                                             Card.state != "blocked").limit(1))


# ---------------------------------------------------------------- issuance


@dataclass(frozen=True)
class IssuedCard:
    card: Card
    card_file: bytes  # the personalisation output: the only place the private key ever exists


def _check_pin(holder: Holder, pin: str | None) -> None:
    if holder.card_type == "professional":
        if not pin or not pin.isdigit() or not 4 <= len(pin) <= 8:
            raise InvalidInput("A professional card needs a PIN of 4 to 8 digits.", field="pin")
    elif pin:
        raise InvalidInput("Only professional cards have a PIN.", field="pin")


def issue_card(session: Session, *, actor: Actor, authority: Authority, holder: Holder, pin: str | None = None,
               on_the_spot_at: PickupPoint | None = None, replaces: Card | None = None,
               now: datetime | None = None) -> IssuedCard:
    """Issue a card: a fresh key pair, a certificate signed by the fund, a signed printed code.

    Issued on the spot (at a fund centre or a mobile service centre) it is handed over at once.
    """
    now = now or _now()
    _check_pin(holder, pin)
    existing = live_card(session, holder)
    if existing is not None and replaces is None:
        raise Conflict(f"{holder.name} already has a live {holder.card_type} card ({existing.serial}, "
                       f"{lifecycle.STATE_LABELS[existing.state]}); block it and issue a replacement instead.",
                       field="holder")
    [serial] = allocate_serials(session, card_type=holder.card_type, count=1)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = card_certificate(authority, public_key=key.public_key(), serial=serial, card_type=holder.card_type,
                                   holder_name=holder.name, now=now)
    state = "delivered" if on_the_spot_at is not None else "printed"
    card = Card(
        id=uuid.uuid4(), serial=serial, card_type=holder.card_type, holder_person_id=holder.person_id,
        holder_professional_id=holder.professional_id, holder_name=holder.name, governorate=holder.governorate,
        state=state, issued_at=now, printed_on=now.date(),
        delivered_on=now.date() if on_the_spot_at is not None else None,
        point_id=on_the_spot_at.id if on_the_spot_at is not None else None,
        replaces_id=replaces.id if replaces is not None else None,
        public_key=key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo),
        certificate=certificate.public_bytes(serialization.Encoding.DER),
        printed_code=printed_code(authority, serial=serial, holder_name=holder.name, social_id=holder.social_id,
                                  cin_last3=holder.cin_last3),
    )
    session.add(card)
    session.flush()
    event = "issue_on_the_spot" if on_the_spot_at is not None else "issue"
    _record(session, actor, card, event, None, state, point=on_the_spot_at,
            details={"replaces": replaces.serial} if replaces is not None else None, now=now)
    return IssuedCard(card, card_file(serial=serial, card_type=holder.card_type, holder_name=holder.name,
                                      certificate=certificate, key=key, pin=pin))


def _record(session: Session, actor: Actor, card: Card, event: str, from_state: str | None, to_state: str, *,
            point: PickupPoint | None = None, details: dict[str, Any] | None = None, now: datetime | None = None) -> None:
    session.add(CardEvent(card_id=card.id, at=now or _now(), event=event, from_state=from_state, to_state=to_state,
                          actor=actor.label, point_id=point.id if point is not None else card.point_id, details=details))
    audit.record(session, actor=actor, action=f"card:status:{event}", entity_type="card", entity_id=card.serial,
                 before={"state": from_state} if from_state else None,
                 after={"state": to_state, **({"point": point.code} if point is not None else {}), **(details or {})})


# ---------------------------------------------------------------- lifecycle


def move(session: Session, *, actor: Actor, card: Card, event: str, point: PickupPoint | None = None,
         details: dict[str, Any] | None = None, now: datetime | None = None) -> Card:
    """Apply one lifecycle event to `card`, or raise RuleViolation saying what is possible instead."""
    now = now or _now()
    try:
        step = lifecycle.next_state(card.state, event)
    except lifecycle.IllegalTransition as exc:
        raise RuleViolation(f"Card {card.serial}: {exc}", field="state") from None
    card.state = step.to_state
    if point is not None:
        card.point_id = point.id
    if event == "deliver":
        card.delivered_on = now.date()
    elif event == "first_use":
        card.first_used_at = now
    elif event == "block":
        card.block_reason = (details or {}).get("reason")
    session.flush()
    _record(session, actor, card, event, step.from_state, step.to_state, point=point, details=details, now=now)
    return card


def first_use(session: Session, *, actor: Actor, card_id: uuid.UUID, now: datetime) -> bool:
    """Put a delivered card in use at its first successful signature; say whether this call did it.

    A guarded UPDATE: when a new card signs several transactions at once, one of them moves it, once.
    """
    moved = session.execute(update(Card).where(Card.id == card_id, Card.state == "delivered")
                            .values(state="in_use", first_used_at=now).execution_options(synchronize_session=False))
    if moved.rowcount != 1:
        return False
    card = session.get(Card, card_id, populate_existing=True)
    _record(session, actor, card, "first_use", "delivered", "in_use", now=now)
    return True


def block(session: Session, *, actor: Actor, serial: str, reason: str, now: datetime | None = None) -> Card:
    """Block a card (lost, stolen, damaged, holder deceased, rights ended): it can never sign again."""
    if reason not in lifecycle.BLOCK_REASONS:
        raise InvalidInput(f"Unknown reason {reason!r}; reasons are {', '.join(lifecycle.BLOCK_REASONS)}.", field="reason")
    card = get_card_or_raise(session, serial=serial)
    return move(session, actor=actor, card=card, event="block", details={"reason": reason}, now=now)


def replace(session: Session, *, actor: Actor, authority: Authority, serial: str, reason: str | None = None,
            pin: str | None = None, on_the_spot_at: PickupPoint | None = None, now: datetime | None = None) -> IssuedCard:
    """Issue a replacement card (new serial, new key) for a card, blocking the old one if it is still live."""
    old = get_card_or_raise(session, serial=serial)
    if old.state != "blocked":
        if reason is None:
            raise InvalidInput("Say why the card is replaced (lost, stolen, damaged…); it will be blocked.", field="reason")
        block(session, actor=actor, serial=old.serial, reason=reason, now=now)
    already = session.scalar(select(Card.serial).where(Card.replaces_id == old.id))
    if already:
        raise Conflict(f"Card {old.serial} was already replaced by {already}.", field="serial")
    holder = holder_of(session, old)
    return issue_card(session, actor=actor, authority=authority, holder=holder, pin=pin,
                      on_the_spot_at=on_the_spot_at, replaces=old, now=now)


def holder_of(session: Session, card: Card) -> Holder:
    """Return the holder of an existing card."""
    if card.card_type == "professional":
        licence = session.scalar(select(Professional.licence).where(Professional.id == card.holder_professional_id))
        return resolve_holder(session, card_type="professional", licence=licence)
    return resolve_holder(session, card_type=card.card_type, person_id=card.holder_person_id)


# ---------------------------------------------------------------- authentication


def refusal(session: Session, card: Card) -> str:
    """Say why `card` may not sign, and what the holder can do."""
    if card.state == "blocked":
        when = session.scalar(select(CardEvent.at).where(CardEvent.card_id == card.id, CardEvent.event == "block")
                              .order_by(CardEvent.id.desc()).limit(1))
        day = when.date().isoformat() if when else "an earlier date"
        replacement = session.scalar(select(Card.serial).where(Card.replaces_id == card.id))
        then = f"Ask for the replacement card ({replacement})." if replacement else "Ask the holder for their replacement card."
        return f"This card was blocked on {day} (reported {card.block_reason or 'blocked'}). {then}"
    return (f"This card is {lifecycle.STATE_LABELS[card.state]}; it can sign only once it has been handed to its "
            "holder.")


def authenticate(session: Session, *, actor: Actor, authority_cert: x509.Certificate, serial: str, data: bytes,
                 signature: bytes, now: datetime | None = None) -> Card:
    """Check that the card `serial` signed `data`: its state, its certificate, its signature.

    The first successful signature of a delivered card puts it in use.
    """
    now = now or _now()
    card = get_card_or_raise(session, serial=serial)
    if card.state not in lifecycle.CAN_AUTHENTICATE:
        raise CardRefused(refusal(session, card), field="serial")
    certificate = x509.load_der_x509_certificate(card.certificate)
    try:
        named = check_card_certificate(authority_cert, certificate, now=now)
    except CertificateRefused as exc:
        raise CardRefused(str(exc), field="serial") from None
    if named != card.serial:
        raise CardRefused("The card's certificate names another card.", field="serial")
    if not verify_raw(certificate.public_key(), signature, data):
        raise CardRefused(f"The signature is not card {card.serial}'s: the data was altered or another card signed it.",
                          field="signature")
    if card.state == "delivered":
        move(session, actor=actor, card=card, event="first_use", now=now)
    card.last_used_at = now
    return card


def point_by_code(session: Session, code: str) -> PickupPoint:
    """Return the pick-up point `code` or raise NotFound."""
    point = session.scalar(select(PickupPoint).where(PickupPoint.code == code))
    if point is None:
        raise NotFound(f"No post office or fund centre with the code {code}.", field="point")
    return point

