"""The patient's file as the point of care reads it: one statement, the same family for every part."""

from __future__ import annotations

import uuid
from datetime import date

from labes.care.patients import patient_file
from labes.registry.models import ChronicCondition, Dependant, Person
from tests import factories

ON = date.today()


def test_a_dependant_reads_their_familys_head_scheme_and_size(session):
    member = factories.member(session, scheme="reimbursement")
    child = factories.dependant(session, member.social_id)
    factories.dependant(session, member.social_id, relationship="spouse",
                        person={"first_name_lat": "Amel", "birth_date": date(1984, 2, 2)})
    file = patient_file(session, person=session.get(Person, child.person_id), on=ON)
    assert (file.role, file.family_id, file.scheme, file.family_size) == ("child", member.id, "reimbursement", 3)
    assert file.covered


def test_a_member_also_listed_in_another_family_reads_the_family_they_head(session):
    parent_family = factories.member(session)
    own = factories.member(session, scheme="reimbursement")
    # A register may list the same person twice: heading their own family and as a parent in their child's.
    session.add(Dependant(id=uuid.uuid4(), member_id=parent_family.id, person_id=own.person_id, relationship="father",
                          rank=1))
    session.flush()
    file = patient_file(session, person=session.get(Person, own.person_id), on=ON)
    assert (file.role, file.family_id, file.scheme) == ("insured", own.id, "reimbursement")


def test_chronic_diseases_come_in_code_order_and_only_while_valid(session):
    member = factories.member(session)
    for code, valid_to in (("21", None), ("08", None), ("03", date(2026, 1, 31))):
        session.add(ChronicCondition(id=uuid.uuid4(), person_id=member.person_id, code=code, icd10="I10",
                                     valid_from=date(2025, 1, 1), valid_to=valid_to))
    session.flush()
    file = patient_file(session, person=session.get(Person, member.person_id), on=ON)
    assert [c.code for c in file.chronic] == ["08", "21"]
