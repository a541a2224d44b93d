"""A rights check reads the patient's file with the cards, in the gate's one statement: the same file as the
patient's file read on its own, whoever the patient, and handed on only once every check has passed."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from labes.care import protocol, transactions
from labes.care.patients import patient_file
from labes.care.transactions import challenge_secret, local_day
from labes.registry import service
from labes.registry.models import Dependant, Person
from labes.registry.schemas import AmenHouseholdCreate, ChronicConditionCreate
from tests import factories
from tests.care.helpers import problem

API = "/api/v1/care"


def _insured(world):
    return world.member.person_id


def _child(world):
    return factories.dependant(world.session, world.member.social_id).person_id


def _chronic(world):
    member = factories.member(world.session, scheme="public")
    service.add_chronic_condition(world.session, actor=factories.ACTOR, person_id=member.person_id,
                                  data=ChronicConditionCreate(code="01", icd10="E11", valid_from=date(2024, 1, 1)))
    return member.person_id


def _in_two_families(world):
    # A register may list the same person twice: heading their own family, and as a parent in their child's.
    own = factories.member(world.session, scheme="public")
    world.session.add(Dependant(id=uuid.uuid4(), member_id=world.member.id, person_id=own.person_id,
                                relationship="father", rank=1))
    world.session.flush()
    return own.person_id


def _amen_only(world):
    values = factories.person().model_dump()
    person = Person(id=uuid.uuid4(), **values, **service.person_search_keys(values))
    world.session.add(person)
    world.session.flush()
    service.create_amen_household(world.session, actor=factories.ACTOR, data=AmenHouseholdCreate(
        number=f"AM{uuid.uuid4().hex[:8].upper()}", level="free", valid_from=date(2025, 1, 1), governorate="SFX",
        member_cins=[person.cin]))
    return person.id


def _no_longer_covered(world):
    return factories.member(world.session, affiliation_end=date.today() - timedelta(days=400)).person_id


PATIENTS = {"insured": _insured, "child": _child, "chronic disease": _chronic, "own family": _in_two_families,
            "Amen only": _amen_only, "no longer covered": _no_longer_covered}


def _in_use(world, name: str, person_id) -> None:
    """Give `person_id` a card and use it once (a card's first use is a writing request)."""
    if person_id == world.member.person_id:  # the world's insured member has theirs
        world.cards[name] = world.cards["patient"]
    else:
        world.card_for(name, person_id=person_id, card_type="amen" if name == "Amen only" else "labes")
    world.doctor_at_clinic.rights_check(world.cards[name])


@pytest.mark.parametrize("kind", PATIENTS)
def test_the_file_read_with_the_cards_is_the_file_read_alone(world, session, keys_dir, kind):
    _in_use(world, kind, PATIENTS[kind](world))
    body = world.doctor_at_clinic.sign("rights-check", {}, patient_card=world.cards[kind],
                                       challenge=world.doctor_at_clinic.challenge())
    verified = transactions.accept(session, body=body, action="rights-check", secret=challenge_secret(keys_dir.resolve()),
                                   reading=True, patient_file=True)
    alone = patient_file(session, person=verified.patient, on=local_day(verified.transaction.time))
    assert verified.patient_file == alone
    assert verified.patient_file.person.id == verified.patient.id


def test_without_asking_no_file_is_read(world, session, keys_dir):
    _in_use(world, "insured", world.member.person_id)
    body = world.doctor_at_clinic.sign("rights-check", {}, patient_card=world.cards["insured"],
                                       challenge=world.doctor_at_clinic.challenge())
    verified = transactions.accept(session, body=body, action="rights-check", secret=challenge_secret(keys_dir.resolve()),
                                   reading=True)
    assert verified.patient_file is None


@pytest.mark.parametrize("kind", ["child", "chronic disease", "Amen only", "no longer covered"])
def test_the_answer_says_what_the_file_says(world, session, kind):
    person_id = PATIENTS[kind](world)
    _in_use(world, kind, person_id)
    answer = world.doctor_at_clinic.rights_check(world.cards[kind])  # the card is in use: a reading request
    file = patient_file(session, person=session.get(Person, person_id), on=date.fromisoformat(answer["checked_at"][:10]))
    assert answer["covered"] == (file.covered or file.amen_covered)
    assert (answer["reason"], answer["care_scheme"], answer["patient"]["role"]) == (file.reason, file.scheme, file.role)
    assert [c["code"] for c in answer["chronic_diseases"]] == [c.code for c in file.chronic]
    assert (answer["amen"] or {}).get("number") == (file.amen.number if file.amen else None)
    expected = {"child": (True, "child"), "chronic disease": (True, "insured"), "Amen only": (True, "amen"),
                "no longer covered": (False, "insured")}[kind]
    assert (answer["covered"], answer["patient"]["role"]) == expected


def test_a_rights_check_reads_the_file_in_the_cards_statement(world, session):
    _in_use(world, "insured", world.member.person_id)
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement.lstrip())

    event.listen(Engine, "before_cursor_execute", record)
    try:
        world.doctor_at_clinic.rights_check(world.cards["insured"])
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    # The one read finds the patient once (a common table expression) and then reads the cards and the file.
    reads = [s for s in statements if s.startswith(("SELECT", "WITH patient AS"))]
    assert len(reads) == 1 and "SELECT 'cards' AS part" in reads[0], statements
    assert reads[0].count("WHERE card.serial = ") == 1, reads[0]  # the patient's card looked up once
    assert reads[0].count("WHERE member.person_id = ") == 1, reads[0]  # and their family once


def test_a_forged_check_hands_on_no_file(world, session, keys_dir):
    _in_use(world, "insured", world.member.person_id)
    body = world.doctor_at_clinic.sign("rights-check", {}, patient_card=world.cards["insured"],
                                       challenge=world.doctor_at_clinic.challenge())
    signature = body["transaction"]["signatures"][0]
    signature["signature"] = ("A" if signature["signature"][0] != "A" else "B") + signature["signature"][1:]
    with pytest.raises(protocol.InvalidTransaction):
        transactions.accept(session, body=body, action="rights-check", secret=challenge_secret(keys_dir.resolve()),
                            reading=True, patient_file=True)
    problem(world.client.post(f"{API}/rights-checks", json=body), 403, "invalid-transaction")
