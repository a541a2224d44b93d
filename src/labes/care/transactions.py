"""The gate every point-of-care action passes: challenge, signatures, card states, the right to act here.

`accept()` turns a request body (signed transaction + content) into a `Verified` context or raises an
error that says what was wrong. It writes only the challenge's nonce (so the same signed transaction can
never be played twice) and a card's first use, in the request's transaction: a refused request rolls back,
so nothing of it stays.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import bindparam, case, delete, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from labes.cards import lifecycle
from labes.cards import service as cards
from labes.cards.crypto import load_authority
from labes.cards.distribution import TUNIS
from labes.cards.models import Card
from labes.care import patients, protocol
from labes.care.models import NumberCounter, UsedChallenge
from labes.care.protocol import InvalidTransaction, Signed, Transaction
from labes.db import columns_by_prefix, read, union_read
from labes.errors import InvalidInput, NotFound
from labes.registry.models import Facility, Person, Practice, Professional
from labes.security import audit
from labes.security.audit import Actor

# Which professions may sign which action; dispensing is a pharmacist's act, prescribing a doctor's.
PRESCRIBERS = ("general_practitioner", "specialist", "dentist")
ACTORS_BY_ACTION: dict[str, tuple[str, ...]] = {
    "rights-check": ("general_practitioner", "specialist", "dentist", "pharmacist", "biologist", "radiologist",
                     "physiotherapist"),
    "prescribe": PRESCRIBERS,
    "prescription-cancel": PRESCRIBERS,
    "prescription-open": ("pharmacist", "biologist", "radiologist"),
    "dispense": ("pharmacist", "biologist", "radiologist"),
    "care-sheet": ("general_practitioner", "specialist", "dentist", "pharmacist", "biologist", "radiologist",
                   "physiotherapist"),
    "care-sheet-correction": ("general_practitioner", "specialist", "dentist", "pharmacist", "biologist",
                              "radiologist", "physiotherapist"),
    "care-sheet-status": ("general_practitioner", "specialist", "dentist", "pharmacist", "biologist", "radiologist",
                          "physiotherapist"),
    "approval-request": PRESCRIBERS,
}
_LAST_USED_EVERY = timedelta(hours=1)  # a card's last use is kept to the hour: one write per hour, not per signature


def _labelled(prefix: str, columns) -> list:
    return [column.label(f"{prefix}__{column.key}") for column in columns]


# The columns the gate hands on (what the actions, their answers and their audit read): a rights check's
# cost grows with every column returned, and addresses or search keys are never needed at the counter.
PERSON_COLUMNS = (Person.id, Person.cin, Person.first_name_ar, Person.last_name_ar, Person.first_name_lat,
                  Person.last_name_lat, Person.birth_date, Person.sex, Person.language, Person.death_date)
PROFESSIONAL_COLUMNS = (Professional.id, Professional.licence, Professional.kind, Professional.specialty,
                        Professional.family_doctor, Professional.name_ar, Professional.name_lat, Professional.tax_regime,
                        Professional.sector, Professional.contract_start, Professional.contract_end,
                        Professional.contract_status)
FACILITY_COLUMNS = (Facility.id, Facility.code, Facility.kind, Facility.name_ar, Facility.name_lat, Facility.governorate,
                    Facility.sector, Facility.contract_start, Facility.contract_end, Facility.contract_status)


# Built once, read as plain rows: the gate runs on every point-of-care request, and ORM objects cost more
# than the round trips. One read brings each card with its holder (a person or a professional), the
# facility named in the transaction, and whether the professional practises there.
def _cards_read(*, lateral: bool):
    """The cards read. `lateral` (PostgreSQL): the holding professional is a LATERAL lookup of one row, so the plan
    probes its index whatever the registry's size; joined as a table, PostgreSQL's generic plan hashes the whole
    table while it holds a few hundred rows (a region's, or the benchmark's registry): ≈ 0.1 ms of its CPU a request
    instead of a few µs. SQLite has no LATERAL, and always probes. The practice is a correlated lookup on both, for a
    professional's card only: a patient's card has none, and a small register (a few hundred rows) is scanned rather
    than probed, ≈ 180,000 of PostgreSQL's instructions a read for nothing (BENCHMARKS.md, thirteenth session)."""
    holder = select(*PROFESSIONAL_COLUMNS)
    holder = (holder.where(Professional.id == Card.holder_professional_id).limit(1).lateral("holder_professional")
              if lateral else holder.subquery("holder_professional"))
    practice = case((Card.holder_professional_id.is_not(None),
                     select(Practice.id).where(Practice.facility_id == Facility.id,
                                               Practice.professional_id == Card.holder_professional_id)
                     .limit(1).scalar_subquery()))
    return (select(*_labelled("card", (Card.id, Card.serial, Card.card_type, Card.state, Card.public_key,
                                       Card.last_used_at)),
                   *_labelled("person", PERSON_COLUMNS), *_labelled("professional", holder.c),
                   *_labelled("facility", FACILITY_COLUMNS), practice.label("practice__id"))
            .select_from(Card)
            .outerjoin(Person, Person.id == Card.holder_person_id)
            .outerjoin(holder, holder.c.id == Card.holder_professional_id)
            .outerjoin(Facility, Facility.code == bindparam("facility"))
            .where(Card.serial.in_([bindparam("card"), bindparam("other_card")])))  # one card: the same serial twice


_CARDS = {"postgresql": _cards_read(lateral=True), "sqlite": _cards_read(lateral=False)}


Layout = tuple[list[tuple[str, int]], list[tuple[str, int, list[tuple[str, int]]]]]


def _layout(keys: Sequence[str]) -> Layout:
    """Group the `prefix__column` keys of a result's columns: the card's own columns, then (table, id position,
    columns)."""
    groups = columns_by_prefix(keys)
    own = groups.pop("card", [])
    return own, [(table, dict(columns)["id"], columns) for table, columns in groups.items()]


_LAYOUT = _layout(tuple(column.name for column in _CARDS["sqlite"].selected_columns))

# A rights check's one read: the cards, and the patient's file on the day of care (`patients.file_parts`), the
# patient found by their card's serial: a round trip fewer, and the file handed on only once the checks pass.
# The patient is looked up once, as a common table expression that every part reads: as a subquery in each, the
# card would be looked up again for each (six times).
_PATIENT = select(Card.holder_person_id.label("person_id")).where(Card.serial == bindparam("patient_card")).cte("patient")
_PATIENT_OF_CARD = select(_PATIENT.c.person_id).scalar_subquery()
_CARDS_AND_FILE = {name: union_read(cards=statement,
                                     **patients.file_parts(_PATIENT_OF_CARD, lateral=name == "postgresql"))
                   for name, statement in _CARDS.items()}


def _signers(session: Session, *, serials: list[str], facility: str, challenge: protocol.Challenge | None,
             patient_file_of: tuple[str, date] | None = None) -> tuple[list[SimpleNamespace], bool, dict | None]:
    """Return the cards of `serials` (one or two) as namespaces with their holder, the facility and the practice
    (`card.person.cin`), whether `challenge` was spent now (False: it was used before; True if none), and, if
    `patient_file_of` names a (patient card, day), the rows of that patient's file on that day by part.

    The caller checks the cards and signatures before it acts on a replay; if it refuses, the transaction
    rolls back and the challenge stays unspent.
    """
    connection = session.connection()
    parameters = {"card": serials[0], "other_card": serials[-1], "facility": facility}
    fresh, file = True, None
    if patient_file_of is not None:
        if challenge is not None:
            raise ValueError("The patient's file is read with the cards by reading requests, whose challenge is "
                             "spent last (spend_with_audit).")
        serial, on = patient_file_of
        union = _CARDS_AND_FILE[connection.dialect.name]
        parts = union.rows(connection, {**parameters, "patient_card": serial, "on": on, "year": on.year})
        cards_ = parts.pop("cards")  # as the cards read's own rows
        return _cards_of(cards_, _LAYOUT), fresh, union.namespaces(parts)
    if challenge is not None and connection.dialect.name == "postgresql":
        rows = read(connection, _CARDS_SPENDING, {**parameters, "nonce": challenge.nonce,
                                                  "expires_at": challenge.expires_at})
        fresh = bool(rows[0][_FRESH_AT]) if rows else True  # no card: refused before the challenge matters
    else:
        rows = read(connection, _CARDS[connection.dialect.name], parameters)
        if challenge is not None:
            fresh = _spend(connection, challenge)
    return _cards_of(rows, _LAYOUT), fresh, file


def _cards_of(rows: Sequence[Sequence[Any]], layout: Layout) -> list[SimpleNamespace]:
    own, tables = layout
    out = []
    for row in rows:
        card = {column: row[index] for column, index in own}
        for table, id_at, columns in tables:
            card[table] = SimpleNamespace(**{column: row[index] for column, index in columns}) if row[id_at] is not None else None
        card["practice_id"] = card.pop("practice").id if card["practice"] else None
        out.append(SimpleNamespace(**card))
    return out


@lru_cache
def challenge_secret(keys_dir: Path) -> bytes:
    """Derive the challenges' MAC key from the fund's seal key, so every app process shares it without a new secret.

    Cached by the path as given (every request asks; resolving the path each time would cost more than the rest).
    """
    seal = load_authority(keys_dir.resolve(), "seal")
    private = seal.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"labes point-of-care challenge v1").derive(private)


@dataclass
class Verified:
    """A transaction whose signatures, challenge, cards and practice all check out."""

    transaction: Transaction
    signed: dict[str, Any]  # the JWS as received, kept as proof
    content: Any
    # Read-only views (namespaces of the rows' columns), not ORM objects: load the ORM object to change one.
    professional: SimpleNamespace  # PROFESSIONAL_COLUMNS
    professional_card: SimpleNamespace  # id, serial, card_type, state, public_key, last_used_at
    facility: SimpleNamespace  # FACILITY_COLUMNS
    patient_card: SimpleNamespace | None
    patient: SimpleNamespace | None  # PERSON_COLUMNS
    now: datetime
    unspent: protocol.Challenge | None = None  # a reading request's challenge, spent by spend_with_audit()
    stale: tuple[uuid.UUID, ...] = ()  # a reading request's cards whose last use spend_with_audit() notes
    patient_file: patients.PatientFile | None = None  # on the day of care, if asked for (accept(patient_file=True))

    @property
    def actor(self) -> Actor:
        return Actor("professional", f"{self.professional.licence}@{self.facility.code}")

    @cached_property
    def care_day(self) -> date:  # read a dozen times a request; a time-zone conversion each time would show
        return local_day(self.transaction.time)


def local_day(moment: datetime) -> date:
    """Return the Tunisian date of `moment`: dates of care are local, and 00:30 in Tunis is 23:30 UTC the day before."""
    return moment.astimezone(TUNIS).date()


def utc(moment: datetime | None) -> datetime | None:
    """Return `moment` as an aware UTC time (SQLite hands back naive UTC), so an answer reads the same every time."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _insert_ignore(session: Session):
    return (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)


# Built once per dialect: the gate runs on every point-of-care request, and the ORM's insert and update
# paths cost more than the statements themselves.
_USE_CHALLENGE = {name: (insert(UsedChallenge).values(nonce=bindparam("nonce"), expires_at=bindparam("expires_at"))
                         .on_conflict_do_nothing().returning(UsedChallenge.nonce))
                  for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}
# On PostgreSQL the challenge is spent by the statement that reads the cards (a data-modifying WITH runs
# once, whatever the query reads of it): one round trip fewer on every signed request. `fresh` is 0 for a replay.
_CARDS_SPENDING = _CARDS["postgresql"].add_columns(select(func.count()).select_from(_USE_CHALLENGE["postgresql"].cte("spent"))
                                     .scalar_subquery().label("challenge__fresh"))
_FRESH_AT = len(_CARDS["postgresql"].selected_columns)
# A busy card signs many transactions at once: whichever finds the row free notes the use; the others
# skip it (PostgreSQL's SKIP LOCKED) rather than queue behind a lock for a figure kept to the hour.
_NOTE_USE = {name: update(Card).where(Card.id.in_(
                 select(Card.id).where(Card.id.in_(bindparam("ids", expanding=True)))
                 .with_for_update(skip_locked=True) if name == "postgresql" else bindparam("ids", expanding=True)))
             .values(last_used_at=bindparam("now"))
             for name in ("postgresql", "sqlite")}


def _spend(connection, challenge: protocol.Challenge) -> bool:
    """Record `challenge` as used; return False if it already was."""
    inserted = connection.execute(_USE_CHALLENGE[connection.dialect.name],
                                  {"nonce": challenge.nonce, "expires_at": challenge.expires_at}).first()
    return inserted is not None


def _refuse_replay(fresh: bool) -> None:
    if not fresh:
        raise InvalidTransaction("This challenge has already been used: a signed transaction is accepted once. "
                                 "Ask for a new challenge and sign again.", field="challenge")


def purge_used_challenges(session: Session, *, now: datetime) -> int:
    """Forget used challenges that have expired (they can no longer be replayed anyway); return how many."""
    return session.execute(delete(UsedChallenge).where(UsedChallenge.expires_at < now)).rowcount


def _read(body: Any, action: str, now: datetime, *, freshness: str) -> Signed:
    """Parse a signed request for `action` and check what needs no database: action, digest, challenge, clock."""
    if not isinstance(body, dict) or "transaction" not in body or "content" not in body:
        raise InvalidInput("The body must be {\"transaction\": <JWS General JSON>, \"content\": {…}}.", field="body")
    signed: Signed = protocol.parse(body["transaction"])
    tx = signed.transaction
    if tx.action != action:
        raise InvalidTransaction(f"This transaction was signed for '{tx.action}', not for '{action}'.",
                                 field="transaction.payload.action")
    if protocol.content_digest(body["content"]) != tx.content_digest:
        raise InvalidTransaction("The content is not what the cards signed (its digest differs): it was altered "
                                 "after signing.", field="content")
    if tx.challenge is None and (freshness == "challenge" or tx.client_key is None):
        raise InvalidInput("This transaction needs a challenge from POST /api/v1/care/challenges.",
                           field="transaction.payload.challenge")
    if tx.challenge is not None and abs(tx.time - now) > protocol.CLOCK_SKEW:
        raise InvalidTransaction(f"The terminal's clock says {tx.time:%Y-%m-%d %H:%M:%S} UTC; the fund's says "
                                 f"{now:%Y-%m-%d %H:%M:%S}. Set the terminal's clock.", field="transaction.payload.time")
    if tx.time - now > protocol.CLOCK_SKEW:
        raise InvalidTransaction("The transaction is dated in the future.", field="transaction.payload.time")
    return signed


def _refuse_unusable(session: Session, cards_: list[SimpleNamespace]) -> None:
    for card in cards_:
        if card.state not in lifecycle.CAN_AUTHENTICATE:
            refused = session.get(Card, card.id)
            raise cards.CardRefused(f"Card {card.serial}: {cards.refusal(session, refused)}", field="transaction.signatures")


def accept(session: Session, *, body: dict[str, Any], action: str, secret: bytes, now: datetime | None = None,
           patient: Literal["required", "optional", "none"] = "required",
           freshness: Literal["challenge", "challenge-or-client-key"] = "challenge", reading: bool = False,
           patient_file: bool = False) -> Verified:
    """Check a signed request for `action` and return who did what where; raise at the first failed check.

    `reading`: the request only reads (and is audited); its challenge is left for `spend_with_audit()` to spend
    with the audit event, and a card's first use raises `NeedsTransaction` (see there).
    `patient_file` (reading requests): the patient's file on the day of care is read with the cards, in the
    same statement, and handed on as `Verified.patient_file`.
    """
    now = now or datetime.now(UTC)
    if action in protocol.INSURED_ACTIONS:
        raise InvalidInput(f"'{action}' is the insured's own action: check it with accept_insured().", field="action")
    signed = _read(body, action, now, freshness=freshness)
    tx = signed.transaction
    if patient == "required" and tx.patient_card is None:
        raise InvalidTransaction("The patient's card must sign this transaction.", field="transaction.payload.patient_card")
    if patient == "none" and tx.patient_card is not None:
        raise InvalidInput("This action is signed by the professional's card alone.", field="transaction.payload.patient_card")
    expected = {tx.professional_card} | ({tx.patient_card} if tx.patient_card else set())
    if set(signed.signers) != expected:
        raise InvalidTransaction("Each card named in the transaction must sign it, and no other card.",
                                 field="transaction.signatures")

    challenge = protocol.open_challenge(secret, tx.challenge, now=now) if tx.challenge is not None else None
    care_day = local_day(tx.time)
    cards_, fresh, file = _signers(session, serials=sorted(expected), facility=tx.facility,
                                   challenge=None if reading else challenge,
                                   patient_file_of=(tx.patient_card, care_day) if patient_file and tx.patient_card else None)
    found = {card.serial: card for card in cards_}
    professional_card = _card(found, tx.professional_card, "professional")
    patient_card = _card(found, tx.patient_card, "patient") if tx.patient_card else None
    _refuse_unusable(session, [card for card in (professional_card, patient_card) if card])
    protocol.verify(signed, {card.serial: card.public_key for card in filter(None, (professional_card, patient_card))})
    _refuse_replay(fresh)

    professional, facility = professional_card.professional, professional_card.facility
    if facility is None:
        raise NotFound(f"No facility with the code {tx.facility}.", field="transaction.payload.facility")
    if professional_card.practice_id is None:
        raise InvalidTransaction(f"{professional.name_lat} is not registered to practise at {facility.name_lat} "
                                 f"({facility.code}).", field="transaction.payload.facility")
    if professional.kind not in ACTORS_BY_ACTION[action]:
        raise InvalidTransaction(f"A {professional.kind.replace('_', ' ')}'s card cannot sign '{action}'.",
                                 field="transaction.payload.professional_card")
    person = patient_card.person if patient_card else None
    verified = Verified(tx, signed.jws_json, body["content"], professional, professional_card, facility,
                        patient_card, person, now, challenge if reading else None,
                        patient_file=patients.assemble(person, care_day, file) if file is not None else None)
    verified.stale = _mark_used(session, verified.actor, [card for card in (professional_card, patient_card) if card],
                                now, reading=reading)
    return verified


@dataclass
class VerifiedInsured:
    """A transaction the insured signed with their own card alone, checked: challenge, signature, card state."""

    transaction: Transaction
    content: Any
    card: SimpleNamespace  # id, serial, card_type, state, public_key, last_used_at
    person: SimpleNamespace  # PERSON_COLUMNS
    now: datetime
    unspent: protocol.Challenge | None = None  # as Verified.unspent
    stale: tuple[uuid.UUID, ...] = ()  # as Verified.stale

    @property
    def actor(self) -> Actor:
        return Actor("insured", f"card {self.card.serial}")

    @property
    def day(self) -> date:
        return local_day(self.now)


def accept_insured(session: Session, *, body: dict[str, Any], action: str, secret: bytes,
                   now: datetime | None = None, reading: bool = False) -> VerifiedInsured:
    """Check a request the insured signed with their own card (an action of INSURED_ACTIONS); raise if it fails.

    `reading` as for `accept()`."""
    now = now or datetime.now(UTC)
    if action not in protocol.INSURED_ACTIONS:
        raise InvalidInput(f"'{action}' is a point-of-care action: check it with accept().", field="action")
    signed = _read(body, action, now, freshness="challenge")
    tx = signed.transaction
    if set(signed.signers) != {tx.patient_card}:
        raise InvalidTransaction("The insured's own card must sign this transaction, and no other card.",
                                 field="transaction.signatures")
    challenge = protocol.open_challenge(secret, tx.challenge, now=now)
    cards_, fresh, _ = _signers(session, serials=[tx.patient_card], facility="", challenge=None if reading else challenge)
    card = _card({found.serial: found for found in cards_}, tx.patient_card, "patient")
    _refuse_unusable(session, [card])
    protocol.verify(signed, {card.serial: card.public_key})
    _refuse_replay(fresh)
    verified = VerifiedInsured(tx, body["content"], card, card.person, now, challenge if reading else None)
    verified.stale = _mark_used(session, verified.actor, [card], now, reading=reading)
    return verified


class NeedsTransaction(Exception):
    """A reading request would write more than its audit event: a card's first use, which must roll back with
    the request if it is refused. Its caller runs it again in a transaction (as a writing request)."""


# A reading request's last statement on PostgreSQL: its challenge spent and its audit event written together,
# the event only if the challenge was spent now (no row back: a replay). No transaction needs to hold them.
# With its cards' last use too when one is an hour old — as it is on most rights checks: a patient's card
# is seldom checked twice within the hour. The (at most two) cards are two parameters, not an array: PostgreSQL
# estimates an array of any length at ten rows, and a plan for ten cards cost more than planning each run anew —
# it planned this statement at every run (`pg_prepared_statements`: custom plans only).
_SPENT = _USE_CHALLENGE["postgresql"].cte("spent")
_STALE = (bindparam("stale_1", type_=Card.id.type), bindparam("stale_2", type_=Card.id.type))
_SPEND_AND_AUDIT = {False: audit.guarded_insert(_SPENT),
                    True: audit.guarded_insert(_SPENT).add_cte(
                        update(Card).where(Card.id.in_(select(Card.id).where(Card.id.in_(_STALE))
                                                       .with_for_update(skip_locked=True)),
                                           select(_SPENT.c.nonce).exists())
                        .values(last_used_at=bindparam("now")).cte("noted"))}


def spend_with_audit(session: Session, verified: Verified | VerifiedInsured) -> None:
    """End a reading request (`accept(..., reading=True)`): spend its challenge and write its audit event (it
    records one at most), or refuse it as a replay with nothing written."""
    events = audit.take_pending(session)
    if len(events) > 1:
        raise ValueError("A reading request records one audit event at most.")
    challenge, connection = verified.unspent, session.connection()
    if challenge is None:
        raise ValueError("This request was not accepted as a reading one: its challenge is already spent.")
    spent = {"nonce": challenge.nonce, "expires_at": challenge.expires_at}
    if events and connection.dialect.name == "postgresql":
        stale = verified.stale  # a request's cards: the professional's and the patient's, or the insured's own
        if len(stale) > len(_STALE):
            raise ValueError(f"A request notes the use of {len(_STALE)} cards at most.")
        noted = {"stale_1": stale[0], "stale_2": stale[-1], "now": verified.now} if stale else {}
        fresh = bool(read(connection, _SPEND_AND_AUDIT[bool(noted)], {**spent, **events[0], **noted}))
    else:  # in the request's transaction
        fresh = _spend(connection, challenge)
        if fresh and events:
            audit.write_events(connection, events)
        if fresh and verified.stale:
            _note_use(connection, verified.stale, verified.now)
    _refuse_replay(fresh)


def _card(found: dict[str, SimpleNamespace], serial: str, role: str) -> SimpleNamespace:
    card = found.get(serial)
    if card is None:
        raise InvalidTransaction(f"The fund has no card {serial}.", field="transaction.signatures")
    if role == "professional" and card.card_type != "professional":
        raise InvalidTransaction(f"Card {serial} is a patient's card; the professional must sign with their own card.",
                                 field="transaction.payload.professional_card")
    if role == "patient" and card.card_type == "professional":
        raise InvalidTransaction(f"Card {serial} is a professional's card, not a patient's.",
                                 field="transaction.payload.patient_card")
    return card


def _mark_used(session: Session, actor: Actor, signers: list[SimpleNamespace], now: datetime, *,
               reading: bool = False) -> tuple[uuid.UUID, ...]:
    """Put new cards in use, and note each card's last use to the hour (one statement for both cards).

    `reading`: return the cards whose last use is to be noted, for `spend_with_audit` to note with the request's
    last statement, once the request is accepted; a card's first use raises `NeedsTransaction`."""
    if reading and any(card.state == "delivered" for card in signers):
        raise NeedsTransaction
    for card in signers:
        if card.state == "delivered":
            cards.first_use(session, actor=actor, card_id=card.id, now=now)
    stale = tuple(card.id for card in signers
                  if card.last_used_at is None or now - utc(card.last_used_at) >= _LAST_USED_EVERY)
    if stale and not reading:
        _note_use(session.connection(), stale, now)
    return stale if reading else ()


def _note_use(connection, card_ids: tuple[uuid.UUID, ...], now: datetime) -> None:
    connection.execute(_NOTE_USE[connection.dialect.name], {"ids": list(card_ids), "now": now})


SEQUENCED = frozenset({"CS", "RX", "DS", "AP"})  # PostgreSQL sequences of migration 0004
_NEXT_VALUE = {series: select(func.nextval(literal_column(f"'number_{series.lower()}'"))) for series in SEQUENCED}


def next_number(session: Session, *, series: str, year: int) -> str:
    """Return the next human-readable number of `series` for `year`, e.g. `CS-2026-00000042`.

    On PostgreSQL the point of care's series come from sequences, which never make a transaction wait;
    elsewhere from a counter row per series and year.
    """
    key = f"{series}-{year}"
    if series in SEQUENCED and session.get_bind().dialect.name == "postgresql":
        value = read(session.connection(), _NEXT_VALUE[series], {})[0][0]
    else:
        value = reserve(session, key=key)
    return f"{key}-{value:08d}"


def reserve(session: Session, *, key: str, count: int = 1) -> int:
    """Reserve `count` consecutive numbers of the counter `key` and return the first (the row is locked until commit)."""
    bump = (update(NumberCounter).where(NumberCounter.series == key)
            .values(next_number=NumberCounter.next_number + count).returning(NumberCounter.next_number))
    after = session.execute(bump).scalar()
    if after is None:  # a new counter
        session.execute(_insert_ignore(session)(NumberCounter).values(series=key, next_number=1).on_conflict_do_nothing())
        after = session.execute(bump).scalar_one()
    return after - count


def digest_of_code(code: str) -> str:
    """Return the stored form of a one-time access code (SHA-256 hex)."""
    return hashlib.sha256(code.encode()).hexdigest()
