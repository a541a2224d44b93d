"""The patient's file as the point of care reads it: one statement, the same family for every part."""

from __future__ import annotations

import uuid
from datetime import date

from labes.care.patients import _FILE, patient_file
from labes.registry.models import ChronicCondition, CoveragePeriod, Dependant, Person
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


def test_the_scheme_in_force_is_the_latest_period_started_by_the_day(session):
    # PostgreSQL reads it by a LATERAL look-up of the latest period, SQLite by a join on the latest start date:
    # on PostgreSQL both forms run, and read the same rows.
    doctor = factories.professional(session)
    member = factories.member(session, scheme="public")  # in force from 2020-01-01, no family doctor
    session.add_all([CoveragePeriod(id=uuid.uuid4(), member_id=member.id, scheme="private", start_date=date(2024, 1, 1),
                                    family_doctor_id=doctor.id),
                     CoveragePeriod(id=uuid.uuid4(), member_id=member.id, scheme="reimbursement",
                                    start_date=date(2099, 1, 1))])
    session.flush()
    person = session.get(Person, member.person_id)
    connection = session.connection()
    forms = list(_FILE.values()) if connection.dialect.name == "postgresql" else [_FILE["sqlite"]]
    for on, scheme, doctor_id in ((date(2019, 12, 31), None, None), (date(2023, 12, 31), "public", None),
                                  (date(2024, 1, 1), "private", doctor.id), (date(2098, 12, 31), "private", doctor.id),
                                  (date(2099, 1, 1), "reimbursement", None)):
        file = patient_file(session, person=person, on=on)
        assert (file.scheme, file.family_doctor.id if file.family_doctor else None) == (scheme, doctor_id), on
        rows = [form.rows(connection, {"person_id": person.id, "on": on, "year": on.year}) for form in forms]
        assert all(found == rows[0] for found in rows) and rows[0]["head"][0][8] == scheme
