"""Getting printed cards to their holders (توزيع البطاقات): pick-up points, where each card goes, shipments,
the delivery desk, and the return of unclaimed cards.

A printed card is packed in a batch (lot) for one pick-up point, shipped, received at the point — its holder
then gets an SMS — and handed over at the desk against the national ID (CIN). A card nobody claims within
`LABES_CARD_RETURN_DAYS` days goes back to the fund and is packed again in a later batch.

Functions take the session first, flush and never commit; every card move goes through
`labes.cards.service.move` (the card's history and the audit trail), every SMS through the outbox.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from labes.cards import service
from labes.cards.lifecycle import STATE_LABELS
from labes.cards.models import Batch, Card, CardEvent, PickupPoint
from labes.cards.points import _same_place, seat_of
from labes.cards.serials import SerialError, display, normalize_serial
from labes.cards.sms import queue_sms
from labes.errors import InvalidInput, NotFound, RuleViolation
from labes.registry.identifiers import IdentifierError, normalize_cin
from labes.registry.models import AmenMember, Dependant, Member, Person, Professional
from labes.rules import governorate_codes
from labes.security import audit
from labes.security.audit import SYSTEM, Actor

try:
    TUNIS = ZoneInfo("Africa/Tunis")
except ZoneInfoNotFoundError:  # no tz database installed: Tunisia keeps UTC+1 all year
    TUNIS = timezone(timedelta(hours=1))


def return_days() -> int:
    """Days a card waits at its pick-up point before it goes back to the fund (`LABES_CARD_RETURN_DAYS`, 90)."""
    from labes.config import get_settings

    return get_settings().card_return_days


def batch_max_cards() -> int:
    """The most cards one batch (one mail bag) holds (`LABES_BATCH_MAX_CARDS`, 500)."""
    return int(os.environ.get("LABES_BATCH_MAX_CARDS", "500"))


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC


# ---------------------------------------------------------------- where a card goes


def choose_destination(*, card_type: str, delegation: str | None, seat: str | None,
                       points: Sequence[PickupPoint]) -> PickupPoint | None:
    """Choose the pick-up point for a card among `points`, the pick-up points of the card's governorate.

    Professional cards go to the regional health directorate (else the fund's regional centre). Labes and Amen
    cards go to the post office of the holder's delegation, else the governorate's main post office (the one in
    its seat), else the fund's regional centre. Mobile centres hand cards over on the spot and never receive a
    shipment. Among equals the lowest code wins, so the choice is stable. None: nowhere to send it.
    """
    ordered = sorted(points, key=lambda p: p.code)

    def first(kind: str, place: str | None = None) -> PickupPoint | None:
        return next((p for p in ordered if p.kind == kind and (place is None or _same_place(p.delegation, place))), None)

    if card_type == "professional":
        return first("health_directorate") or first("fund_centre")
    return (first("post_office", delegation) if delegation else None) or \
        (first("post_office", seat) if seat else None) or first("fund_centre")


def destination_for(session: Session, card: Card) -> PickupPoint | None:
    """Return where `card` should wait for its holder (see `choose_destination`)."""
    points = list(session.scalars(select(PickupPoint).where(PickupPoint.governorate == card.governorate)))
    delegation = None
    if card.holder_person_id is not None:
        delegation = session.scalar(select(Person.delegation).where(Person.id == card.holder_person_id))
    return choose_destination(card_type=card.card_type, delegation=delegation, seat=seat_of(card.governorate),
                              points=points)


# ---------------------------------------------------------------- batches


@dataclass
class BatchRun:
    batches: list[Batch] = field(default_factory=list)
    unrouted: dict[str, int] = field(default_factory=dict)  # governorate → cards with no pick-up point to go to


def get_batch_or_raise(session: Session, *, number: str, lock: bool = False) -> Batch:
    """Return the batch `number` or raise NotFound; `lock` holds it until commit (one reception at a time)."""
    query = select(Batch).where(Batch.number == number.strip().upper())
    batch = session.scalar(query.with_for_update() if lock else query)
    if batch is None:
        raise NotFound(f"No shipment with the number {number}.", field="number")
    return batch


def _batch_cards(session: Session, batch: Batch) -> list[Card]:
    return list(session.scalars(select(Card).where(Card.batch_id == batch.id).order_by(Card.serial)))


def build_batches(session: Session, *, actor: Actor, governorate: str | None = None, limit: int | None = None,
                  now: datetime | None = None, max_cards: int | None = None) -> BatchRun:
    """Pack the printed and returned cards into batches, one per destination (and mail bag of `max_cards`)."""
    now, max_cards = now or _now(), max_cards or batch_max_cards()
    query = (select(Card, Person.delegation).outerjoin(Person, Person.id == Card.holder_person_id)
             .where(Card.state.in_(("printed", "returned"))).order_by(Card.governorate, Card.serial)
             .with_for_update(of=Card, skip_locked=True))  # two runs at once never pack the same card twice
    if governorate:
        governorate = governorate.upper()
        if governorate not in governorate_codes():
            raise InvalidInput(f"{governorate!r} is not one of the 24 governorate codes.", field="governorate")
        query = query.where(Card.governorate == governorate)
    if limit:
        query = query.limit(limit)
    points: dict[str, list[PickupPoint]] = {}
    groups: dict[str, tuple[PickupPoint, list[Card]]] = {}
    run = BatchRun()
    for card, delegation in session.execute(query):
        if card.governorate not in points:
            points[card.governorate] = list(session.scalars(
                select(PickupPoint).where(PickupPoint.governorate == card.governorate)))
        point = choose_destination(card_type=card.card_type, delegation=delegation, seat=seat_of(card.governorate),
                                   points=points[card.governorate])
        if point is None:
            run.unrouted[card.governorate] = run.unrouted.get(card.governorate, 0) + 1
            continue
        groups.setdefault(point.code, (point, []))[1].append(card)
    sequences: dict[str, int] = {}
    for code in sorted(groups):
        point, cards = groups[code]
        prefix = f"B-{point.governorate}-{now.astimezone(TUNIS):%Y%m%d}-"
        if prefix not in sequences:
            last = session.scalar(select(func.max(Batch.number)).where(Batch.number.like(prefix + "%")))
            sequences[prefix] = int(last[len(prefix):]) if last else 0
        for start in range(0, len(cards), max_cards):
            sequences[prefix] += 1
            batch = Batch(number=f"{prefix}{sequences[prefix]:04d}", point_id=point.id, state="open", created_at=now,
                          cards=len(cards[start:start + max_cards]))
            session.add(batch)
            session.flush()
            for card in cards[start:start + max_cards]:
                card.batch_id = batch.id
                service.move(session, actor=actor, card=card, event="batch", point=point,
                             details={"batch": batch.number}, now=now)
            audit.record(session, actor=actor, action="card:batch:create", entity_type="card_batch",
                         entity_id=batch.number, after={"point": point.code, "cards": batch.cards})
            run.batches.append(batch)
    return run


def ship_batch(session: Session, *, actor: Actor, number: str, now: datetime | None = None) -> Batch:
    """Hand a packed batch to the post: its cards are on their way.

    A card blocked since it was packed stays blocked and is left out of the count (take it out of the bag).
    """
    now = now or _now()
    batch = get_batch_or_raise(session, number=number, lock=True)
    if batch.state != "open":
        when = _aware(batch.shipped_at).astimezone(TUNIS).date().isoformat() if batch.shipped_at else "earlier"
        raise RuleViolation(f"Batch {batch.number} was already shipped ({when}); it is {batch.state}.", field="number")
    shipped = 0
    for card in _batch_cards(session, batch):
        if card.state == "batched":
            service.move(session, actor=actor, card=card, event="ship", details={"batch": batch.number}, now=now)
            shipped += 1
    batch.state, batch.shipped_at, batch.cards = "shipped", now, shipped
    session.flush()
    audit.record(session, actor=actor, action="card:batch:ship", entity_type="card_batch", entity_id=batch.number,
                 before={"state": "open"}, after={"state": "shipped", "cards": shipped})
    return batch


def receive_batch(session: Session, *, actor: Actor, number: str, point_code: str | None = None,
                  now: datetime | None = None) -> Batch:
    """Record a whole shipment as received at its pick-up point and tell each holder their card is ready."""
    now = now or _now()
    batch = get_batch_or_raise(session, number=number, lock=True)
    point = session.get(PickupPoint, batch.point_id)
    if point_code is not None and point_code.strip().upper() != point.code:
        raise RuleViolation(f"Batch {batch.number} is addressed to {point.name_fr} ({point.code}), not to "
                            f"{point_code}; send it on to its destination.", field="point")
    if batch.state == "open":
        raise RuleViolation(f"Batch {batch.number} has not been shipped yet, so it cannot be received; the fund "
                            "ships it first.", field="number")
    if batch.state == "received":
        day = _aware(batch.received_at).astimezone(TUNIS).date().isoformat()
        raise RuleViolation(f"Batch {batch.number} was already received on {day}.", field="number")
    received = [card for card in _batch_cards(session, batch) if card.state == "shipped"]
    for card in received:
        service.move(session, actor=actor, card=card, event="receive", point=point, details={"batch": batch.number},
                     now=now)
    batch.state, batch.received_at = "received", now
    session.flush()
    audit.record(session, actor=actor, action="card:batch:receive", entity_type="card_batch", entity_id=batch.number,
                 before={"state": "shipped"}, after={"state": "received", "point": point.code, "cards": len(received)})
    contacts = contacts_for(session, received)
    for card in received:
        contact = contacts.get(card.id)
        if contact is not None:
            queue_sms(session, number=contact.number, purpose="card_ready",
                      text=ready_text(contact, card_type=card.card_type, point=point))
    return batch


# ---------------------------------------------------------------- SMS to holders

_CARD_NAMES = {"labes": ("لاباس", "Labes"), "amen": ("أمان", "Amen"), "professional": ("المهني", "professionnelle")}


@dataclass(frozen=True)
class Contact:
    """Who hears about a card: its holder, or the family's insured member (or Amen head) for a dependant."""

    number: str
    language: str
    for_first_name: str | None = None  # set when the SMS goes to someone else than the holder


def _guardian_phones(session: Session, person_ids: list[Any]) -> dict[tuple[str, Any], tuple[str, str]]:
    """Return (card type, person id) → (phone, language) of who answers for them: the insured member for a
    Labes card, the household's head for an Amen card."""
    guardian, head = aliased(Person), aliased(AmenMember)
    via_member = (select(Dependant.person_id, guardian.phone, guardian.language)
                  .join(Member, Member.id == Dependant.member_id).join(guardian, guardian.id == Member.person_id)
                  .where(Dependant.person_id.in_(person_ids), guardian.phone.is_not(None)).order_by(Member.social_id))
    via_head = (select(AmenMember.person_id, guardian.phone, guardian.language)
                .join(head, and_(head.household_id == AmenMember.household_id, head.head.is_(True)))
                .join(guardian, guardian.id == head.person_id)
                .where(AmenMember.person_id.in_(person_ids), guardian.phone.is_not(None)))
    phones: dict[tuple[str, Any], tuple[str, str]] = {}
    for card_type, query in (("labes", via_member), ("amen", via_head)):
        for person_id, phone, language in session.execute(query):
            phones.setdefault((card_type, person_id), (phone, language))
    return phones


def contacts_for(session: Session, cards: Sequence[Card]) -> dict[Any, Contact]:
    """Return card id → whom to text; a dependant without a phone is reached through the member's phone."""
    person_ids = list({card.holder_person_id for card in cards if card.holder_person_id is not None})
    people = {p.id: p for p in session.scalars(select(Person).where(Person.id.in_(person_ids)))} if person_ids else {}
    without_phone = [p.id for p in people.values() if not p.phone]
    guardians = _guardian_phones(session, without_phone) if without_phone else {}
    found: dict[Any, Contact] = {}
    for card in cards:
        person = people.get(card.holder_person_id)
        if person is None:
            continue  # a professional: the registry has no phone for them
        if person.phone:
            found[card.id] = Contact(person.phone, person.language)
        elif (route := guardians.get((card.card_type, person.id))) is not None:
            first = person.first_name_lat if route[1] == "fr" else person.first_name_ar
            found[card.id] = Contact(route[0], route[1], first)
    return found


def _where(point: PickupPoint, language: str) -> str:
    if language == "fr":
        return ", ".join(part for part in (point.name_fr, point.address_fr) if part) + \
            (f" ({point.hours_fr})" if point.hours_fr else "")
    return "، ".join(part for part in (point.name_ar, point.address_ar) if part) + \
        (f" ({point.hours_ar})" if point.hours_ar else "")


def ready_text(contact: Contact, *, card_type: str, point: PickupPoint) -> str:
    """The "your card is ready" SMS, in the language of whoever receives it."""
    name_ar, name_fr = _CARD_NAMES.get(card_type, _CARD_NAMES["labes"])
    if contact.language == "fr":
        whose = f"La carte {name_fr} de {contact.for_first_name}" if contact.for_first_name else f"Votre carte {name_fr}"
        return f"CNAM: {whose} est prête. Retrait: {_where(point, 'fr')}. Présentez votre CIN."
    whose = f"بطاقة {name_ar} الخاصة بـ{contact.for_first_name}" if contact.for_first_name else f"بطاقة {name_ar} الخاصة بك"
    return f"الكنام: {whose} جاهزة. السحب من: {_where(point, 'ar')}. يرجى الاستظهار ببطاقة التعريف الوطنية."


def reminder_text(contact: Contact, *, card_type: str, point: PickupPoint, return_on: date) -> str:
    """The reminder SMS sent before an unclaimed card goes back to the fund."""
    name_ar, name_fr = _CARD_NAMES.get(card_type, _CARD_NAMES["labes"])
    day = return_on.strftime("%d/%m/%Y")
    if contact.language == "fr":
        whose = f"la carte {name_fr} de {contact.for_first_name}" if contact.for_first_name else f"votre carte {name_fr}"
        return (f"CNAM: rappel, {whose} vous attend: {_where(point, 'fr')}. Sans retrait avant le {day}, "
                "elle sera renvoyée à la CNAM.")
    whose = f"بطاقة {name_ar} الخاصة بـ{contact.for_first_name}" if contact.for_first_name else f"بطاقة {name_ar} الخاصة بك"
    return f"الكنام: تذكير، {whose} في انتظارك: {_where(point, 'ar')}. إن لم تُسحب قبل {day} تُعاد إلى الصندوق."


# ---------------------------------------------------------------- the delivery desk
#
# A clerk names the point they work at on every call: accounts are not tied to points yet, so a clerk could act
# for another point. Answers carry only what the desk needs: never health data, never a full CIN.


def _received_at():
    """The moment a card last arrived at a pick-up point (a subquery correlated to the card)."""
    return (select(func.max(CardEvent.at)).where(CardEvent.card_id == Card.id, CardEvent.event == "receive")
            .correlate(Card).scalar_subquery())


def _desk_select():
    return (select(Card.serial, Card.card_type, Card.state, Card.holder_name, Card.holder_person_id,
                   Person.first_name_lat, Person.last_name_lat, Person.first_name_ar, Person.last_name_ar, Person.cin,
                   Professional.name_ar.label("professional_name_ar"), Professional.cin.label("professional_cin"),
                   _received_at().label("received_at"))
            .outerjoin(Person, Person.id == Card.holder_person_id)
            .outerjoin(Professional, Professional.id == Card.holder_professional_id))


def _desk_card(row: Any, collect_as: str | None = None) -> dict[str, Any]:
    cin = row.cin or row.professional_cin
    return {
        "serial": row.serial, "serial_display": display(row.serial), "card_type": row.card_type, "state": row.state,
        "first_name": row.first_name_lat, "last_name": row.last_name_lat or row.holder_name,
        "name_ar": row.professional_name_ar or " ".join(n for n in (row.first_name_ar, row.last_name_ar) if n) or None,
        "cin_last3": cin[-3:] if cin else None,
        "waiting_since": _aware(row.received_at).astimezone(TUNIS).date() if row.received_at else None,
        "collect_as": collect_as,
    }


def _cin(text: str, *, field_name: str) -> str:
    try:
        return normalize_cin(text)
    except IdentifierError as exc:
        raise InvalidInput(str(exc), field=field_name) from None


def _point(session: Session, code: str) -> PickupPoint:
    return service.point_by_code(session, code.strip().upper())


def collectable_by(session: Session, person_id: Any) -> tuple[set[Any], set[Any]]:
    """Return whose cards the person may collect as proxy: (their dependants, their Amen household's members).

    The proxy rule: a dependant's Labes card may be handed to the family's insured member, and an Amen card of a
    household member to the household's head, against the proxy's own CIN. Nobody else collects for anyone, and
    a professional card goes to the professional in person.
    """
    dependants = set(session.scalars(select(Dependant.person_id).join(Member, Member.id == Dependant.member_id)
                                     .where(Member.person_id == person_id)))
    headed = select(AmenMember.household_id).where(AmenMember.person_id == person_id, AmenMember.head.is_(True))
    household = set(session.scalars(select(AmenMember.person_id).where(AmenMember.household_id.in_(headed),
                                                                       AmenMember.person_id != person_id)))
    return dependants, household


def find_at_point(session: Session, *, point_code: str, serial: str | None = None,
                  cin: str | None = None) -> list[dict[str, Any]]:
    """Find the cards waiting at a point by serial, or by a CIN (the person's own and those they may collect)."""
    point = _point(session, point_code)
    if (serial is None) == (cin is None):
        raise InvalidInput("Give either the card's serial or the holder's CIN.", field="serial")
    waiting = _desk_select().where(Card.point_id == point.id, Card.state == "at_point").order_by(Card.serial)
    if serial is not None:
        try:
            serial = normalize_serial(serial)
        except SerialError as exc:
            raise InvalidInput(str(exc), field="serial") from None
        return [_desk_card(row) for row in session.execute(waiting.where(Card.serial == serial))]
    cin = _cin(cin, field_name="cin")
    person_id = session.scalar(select(Person.id).where(Person.cin == cin))
    professionals = list(session.scalars(select(Professional.id).where(Professional.cin == cin)))
    dependants, household = collectable_by(session, person_id) if person_id else (set(), set())
    holders = [h for h in (person_id, *dependants, *household) if h is not None]
    conditions = [Card.holder_person_id.in_(holders)] if holders else []
    if professionals:
        conditions.append(Card.holder_professional_id.in_(professionals))
    if not conditions:
        return []
    found = []
    for row in session.execute(waiting.where(or_(*conditions))):
        if row.holder_person_id is None or row.holder_person_id == person_id:
            found.append(_desk_card(row, "holder"))
        elif row.holder_person_id in (dependants if row.card_type == "labes" else household):
            found.append(_desk_card(row, "proxy"))
    return found


def awaiting_pickup(session: Session, *, point_code: str, page: int = 1,
                    page_size: int = 50) -> tuple[list[dict[str, Any]], bool]:
    """Return one page of the cards waiting at a point, by serial, with whether more follow."""
    point = _point(session, point_code)
    query = (_desk_select().where(Card.point_id == point.id, Card.state == "at_point").order_by(Card.serial)
             .offset((page - 1) * page_size).limit(page_size + 1))
    rows = [_desk_card(row) for row in session.execute(query)]
    return rows[:page_size], len(rows) > page_size


def deliver(session: Session, *, actor: Actor, serial: str, point_code: str, presented_cin: str, to: str,
            proxy_name: str | None = None, now: datetime | None = None) -> Card:
    """Hand a waiting card over against the national ID presented: to its holder, or to a proxy the rule allows."""
    point = _point(session, point_code)
    card = service.get_card_or_raise(session, serial=serial)
    session.refresh(card, with_for_update=True)  # two clerks handing over the same card: the second sees it gone
    if card.state != "at_point" or card.point_id != point.id:
        where = "waiting at another pick-up point" if card.state == "at_point" else STATE_LABELS[card.state]
        hint = (" The holder can ask where it is by SMS to 1017: *1017*<CIN>#."
                if card.state in ("batched", "shipped", "at_point") else "")
        raise RuleViolation(f"Card {display(card.serial)} is not waiting at {point.name_fr} ({point.code}): it is "
                            f"{where}.{hint}", field="serial")
    cin = _cin(presented_cin, field_name="presented_cin")
    person = session.get(Person, card.holder_person_id) if card.holder_person_id else None
    if person is not None and person.death_date is not None:
        raise RuleViolation(f"The holder of card {display(card.serial)} is recorded as deceased; the card must be "
                            "blocked, not handed over.", field="serial")
    if to == "holder":
        holder_cin = person.cin if person is not None else session.scalar(
            select(Professional.cin).where(Professional.id == card.holder_professional_id))
        if not holder_cin:
            raise RuleViolation(f"{card.holder_name} has no national ID on record (a child, say): the card is handed "
                                "to the insured member of the family, as proxy.", field="to")
        if cin != holder_cin:
            raise RuleViolation(f"The national ID presented (ending {cin[-3:]}) is not the holder's (ending "
                                f"{holder_cin[-3:]}). Hand a card only to its holder, or a dependant's card to the "
                                "insured member of the family.", field="presented_cin")
        details: dict[str, Any] = {"to": "holder", "point": point.code}
    elif to == "proxy":
        if not (proxy_name or "").strip():
            raise InvalidInput("Give the proxy's full name, as on their national ID.", field="proxy_name")
        if card.card_type == "professional":
            raise RuleViolation("A professional card is handed only to the professional, in person.", field="to")
        presenter = session.scalar(select(Person.id).where(Person.cin == cin))
        dependants, household = collectable_by(session, presenter) if presenter else (set(), set())
        if card.holder_person_id not in (dependants if card.card_type == "labes" else household):
            who = "insured member of the holder's family" if card.card_type == "labes" else "head of the holder's Amen household"
            raise RuleViolation(f"Only the {who} may collect this card for a dependant; the national ID presented "
                                f"(ending {cin[-3:]}) is not theirs, or the holder is not a dependant. The holder "
                                "collects it in person.", field="presented_cin")
        details = {"to": "proxy", "proxy_name": proxy_name.strip(), "proxy_cin": cin, "point": point.code}
    else:
        raise InvalidInput(f"'to' is holder or proxy, not {to!r}.", field="to")
    return service.move(session, actor=actor, card=card, event="deliver", point=point, details=details, now=now)


# ---------------------------------------------------------------- unclaimed cards


def return_overdue(session: Session, *, actor: Actor, now: datetime | None = None,
                   days: int | None = None) -> list[str]:
    """Send back to the fund every card waiting longer than `days` (default LABES_CARD_RETURN_DAYS); return serials."""
    now, days = now or _now(), days if days is not None else return_days()
    received = _received_at()
    cards = session.scalars(select(Card).where(Card.state == "at_point", received < now - timedelta(days=days))
                            .order_by(Card.serial).with_for_update(of=Card, skip_locked=True)).all()
    for card in cards:
        service.move(session, actor=actor, card=card, event="return_undelivered", details={"after_days": days}, now=now)
    return [card.serial for card in cards]


@dataclass
class ReminderRun:
    sent: int = 0
    no_phone: int = 0


def remind_before_return(session: Session, *, now: datetime | None = None, days: int | None = None,
                         days_before: int = 15, actor: Actor = SYSTEM) -> ReminderRun:
    """Text each holder whose card will go back within `days_before` days; once per stay at a point.

    The reminder is kept in the card's history (event `remind_pickup`), which is what stops a second one.
    """
    now, days = now or _now(), days if days is not None else return_days()
    received, earlier = _received_at(), aliased(CardEvent)
    reminded = exists().where(earlier.card_id == Card.id, earlier.event == "remind_pickup", earlier.at >= received)
    rows = session.execute(
        select(Card, received.label("received_at"))
        .where(Card.state == "at_point", received <= now - timedelta(days=days - days_before),
               received >= now - timedelta(days=days), ~reminded)
        .order_by(Card.serial)).all()
    cards = [card for card, _ in rows]
    contacts = contacts_for(session, cards)
    points = {p.id: p for p in session.scalars(select(PickupPoint).where(
        PickupPoint.id.in_({card.point_id for card in cards})))} if cards else {}
    run = ReminderRun()
    for card, received_at in rows:
        contact = contacts.get(card.id)
        if contact is None:
            run.no_phone += 1
            continue
        return_on = (_aware(received_at) + timedelta(days=days)).astimezone(TUNIS).date()
        queue_sms(session, number=contact.number, purpose="card_reminder",
                  text=reminder_text(contact, card_type=card.card_type, point=points[card.point_id], return_on=return_on))
        session.add(CardEvent(card_id=card.id, at=now, event="remind_pickup", from_state=card.state,
                              to_state=card.state, actor=actor.label, point_id=card.point_id,
                              details={"return_on": return_on.isoformat()}))
        audit.record(session, actor=actor, action="card:notice:remind", entity_type="card", entity_id=card.serial,
                     after={"return_on": return_on.isoformat()})
        run.sent += 1
    session.flush()
    return run
