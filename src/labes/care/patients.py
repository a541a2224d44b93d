"""Who the patient is for the fund on a given day: member or dependant, covered or not and why, care scheme,
family doctor, chronic diseases, Amen level, and the family's ceiling.

A handful of indexed look-ups by primary or foreign key, so a point-of-care answer does not grow slower
as the population grows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, literal_column, select, true, union_all
from sqlalchemy.orm import Session, aliased

from labes.care.models import FamilyUsage
from labes.db import union_read
from labes.registry import rules as registry_rules
from labes.registry.models import (
    AmenHousehold, AmenMember, ChronicCondition, CoveragePeriod, Dependant, Member, Person, Professional,
)
from labes.registry.service import dependant_rights


@dataclass(frozen=True)
class PatientFile:
    """What the fund knows of a patient on `on` that decides what it pays."""

    person: Person
    on: date  # rows below are plain result rows: read their columns by name
    role: str  # insured, spouse, child, father, mother, amen (an Amen beneficiary outside any insured family)
    rank: int
    member: Any | None  # id, person_id, social_id, regime, status, affiliation dates
    covered: bool
    reason: str
    covered_until: date | None
    scheme: str | None
    family_doctor: FamilyDoctor | None
    chronic: tuple[Any, ...]  # code, icd10, valid_from, valid_to
    amen: AmenStatus | None
    amen_covered: bool
    family_size: int  # beneficiaries covered on `on`, the ceiling grid's key
    dependent_parents: int
    ceiling_used_millimes: int = 0
    copay_used_millimes: int = 0

    @property
    def family_id(self) -> uuid.UUID | None:
        return self.member.id if self.member else None


# Built once: at the point of care this runs thousands of times a second, and plain rows (not ORM objects)
# are all a rights check needs. Every part is an indexed read by primary or foreign key.

def file_parts(person_id: ColumnElement, *, lateral: bool) -> dict[str, Select]:
    """The parts of a patient's file read for the person whose id is `person_id` (a parameter, or a look-up),
    with the parameters `on` and `year`: the head row, the family's dependants, the patient's chronic diseases.

    Every part is an indexed read by primary or foreign key. The family is the one the patient heads as the
    insured member, else the one they are a dependant in (the lowest id, should a register list them in two):
    the same family for every part. `lateral` (PostgreSQL): the care scheme in force is the family's latest
    coverage period by a `LATERAL` look-up of one row, which PostgreSQL runs as one index probe; joined on its
    start date being the latest (SQLite has no LATERAL), PostgreSQL's plan hashes the period and looks the latest
    date up twice: ≈ 76,000 more of its instructions a read (BENCHMARKS.md, thirteenth session).
    """
    families_of = union_all(
        select(Member.id.label("family_id"), literal_column("0").label("precedence")).where(Member.person_id == person_id),
        select(Dependant.member_id, literal_column("1")).where(Dependant.person_id == person_id)).subquery()
    # Found once (a common table expression), read by the head row and the dependants: written as a subquery in
    # each, the database would look the family up again for each.
    found = (select(families_of.c.family_id).order_by(families_of.c.precedence, families_of.c.family_id).limit(1)
             .cte("family"))
    family = select(found.c.family_id).scalar_subquery()
    in_force = (CoveragePeriod.member_id == Member.id, CoveragePeriod.start_date <= bindparam("on"))
    if lateral:
        coverage = (select(CoveragePeriod.scheme, CoveragePeriod.family_doctor_id).where(*in_force)
                    .order_by(CoveragePeriod.start_date.desc()).limit(1).lateral("coverage"))
        coverage_on = true()
    else:
        coverage = CoveragePeriod.__table__
        coverage_on = (coverage.c.member_id == Member.id) & (coverage.c.start_date == select(
            func.max(CoveragePeriod.start_date)).where(*in_force).correlate(Member).scalar_subquery())
    holder = aliased(Person)  # the family's insured member (the patient, or the member whose dependant they are)
    amen_of = (select(AmenMember.household_id).where(AmenMember.person_id == Person.id).correlate(Person)
               .limit(1).scalar_subquery())
    # The patient, their family's head (if any) with its care scheme, family doctor and usage, and their Amen
    # household (if any): one row, found from the patient's own primary key.
    head = (select(Member.id, Member.person_id, Member.social_id, Member.regime, Member.status, Member.affiliation_start,
                   Member.affiliation_end, holder.death_date, coverage.c.scheme,
                   Professional.id.label("doctor_id"), Professional.licence.label("doctor_licence"),
                   Professional.name_lat.label("doctor_name"),
                   FamilyUsage.ceiling_used_millimes, FamilyUsage.copay_used_millimes,
                   AmenHousehold.id.label("amen_id"), AmenHousehold.number.label("amen_number"),
                   AmenHousehold.level.label("amen_level"), AmenHousehold.valid_from.label("amen_valid_from"),
                   AmenHousehold.valid_to.label("amen_valid_to"))
            .select_from(Person)
            .outerjoin(Member, Member.id == family)
            .outerjoin(holder, holder.id == Member.person_id)
            .outerjoin(coverage, coverage_on)
            .outerjoin(Professional, Professional.id == coverage.c.family_doctor_id)
            .outerjoin(FamilyUsage, (FamilyUsage.member_id == Member.id) & (FamilyUsage.year == bindparam("year")))
            .outerjoin(AmenHousehold, AmenHousehold.id == amen_of)
            .where(Person.id == person_id))  # one row: every join is on a unique key
    # Everyone the family's ceiling and the patient's own rights depend on.
    dependants = (select(Dependant.id, Dependant.person_id, Dependant.relationship, Dependant.rank,
                         Dependant.student_until, Dependant.disabled, Dependant.unmarried_no_income,
                         Dependant.start_date, Dependant.end_date, Person.sex, Person.birth_date, Person.death_date)
                  .select_from(Dependant).join(Person, Person.id == Dependant.person_id)
                  .where(Dependant.member_id == family))
    chronic = (select(ChronicCondition.code, ChronicCondition.icd10, ChronicCondition.valid_from, ChronicCondition.valid_to)
               .where(ChronicCondition.person_id == person_id, ChronicCondition.valid_from <= bindparam("on")))
    return {"head": head, "dependant": dependants, "chronic": chronic}


# Built once for each database: at the point of care this runs thousands of times a second, and plain rows (not ORM
# objects) are all a rights check needs.
_FILE = {"postgresql": union_read(**file_parts(bindparam("person_id"), lateral=True)),
         "sqlite": union_read(**file_parts(bindparam("person_id"), lateral=False))}


@dataclass(frozen=True)
class FamilyDoctor:
    id: uuid.UUID
    licence: str
    name_lat: str


@dataclass(frozen=True)
class AmenStatus:
    """The Amen household a patient belongs to."""

    id: uuid.UUID
    number: str
    level: str
    valid_from: date
    valid_to: date | None


def patient_file(session: Session, *, person: Person, on: date) -> PatientFile:
    """Assemble the patient's file on `on` (rights computed now: nothing is stored, nothing needs renewing).

    One statement of indexed reads whatever the population: the patient's family head (found from the patient,
    a member or a dependant) with its care scheme, family doctor and usage, and the patient's Amen household;
    the family's dependants; the patient's chronic diseases.
    """
    connection = session.connection()
    union = _FILE[connection.dialect.name]
    found = union.rows(connection, {"person_id": person.id, "on": on, "year": on.year})
    return assemble(person, on, union.namespaces(found))


def assemble(person: Any, on: date, found: dict[str, list[Any]]) -> PatientFile:
    """Return the file of `person` on `on` from the rows of its parts (`file_parts`), by part."""
    head = found["head"][0] if found["head"] else None
    member = head if head is not None and head.id is not None else None

    covered, reason, until = False, "Not registered as an insured member or a dependant.", None
    role, rank = "amen", 0
    scheme, doctor = None, None
    family_size, parents = 0, 0
    if member is not None:
        holder_rights = registry_rules.member_rights(
            status=member.status, affiliation_start=member.affiliation_start, affiliation_end=member.affiliation_end,
            on=on, death_date=member.death_date)
        family_size = 1 if holder_rights.covered else 0
        own = None
        for other in found["dependant"]:
            rights_of_other = dependant_rights(other, other, on)
            if other.person_id == person.id:  # the patient is this family's dependant
                own, role, rank = rights_of_other, other.relationship, other.rank
            if holder_rights.covered and rights_of_other.covered:
                family_size += 1
                parents += other.relationship in ("father", "mother")
        if own is None:
            role, rights = "insured", holder_rights
        else:
            rights = own if holder_rights.covered or not own.covered else registry_rules.Eligibility(
                False, f"The insured member is not covered: {holder_rights.reason}")
        covered, reason, until = rights.covered, rights.reason, rights.until
        scheme = member.scheme
        if member.doctor_id is not None:
            doctor = FamilyDoctor(member.doctor_id, member.doctor_licence, member.doctor_name)

    chronic = tuple(sorted((c for c in found["chronic"] if c.valid_to is None or on <= c.valid_to),
                           key=lambda c: c.code))

    amen_covered, amen = False, None
    if head is not None and head.amen_id is not None:
        amen = AmenStatus(head.amen_id, head.amen_number, head.amen_level, head.amen_valid_from, head.amen_valid_to)
        eligibility = registry_rules.amen_eligibility(level=amen.level, valid_from=amen.valid_from,
                                                      valid_to=amen.valid_to, on=on)
        amen_covered = eligibility.covered
        if not covered and amen_covered:
            reason, until = eligibility.reason, eligibility.until

    return PatientFile(
        person=person, on=on, role=role, rank=rank, member=member, covered=covered, reason=reason, covered_until=until,
        scheme=scheme if covered else None, family_doctor=doctor if covered else None, chronic=chronic, amen=amen,
        amen_covered=amen_covered, family_size=family_size, dependent_parents=parents,
        ceiling_used_millimes=(member.ceiling_used_millimes or 0) if member is not None else 0,
        copay_used_millimes=(member.copay_used_millimes or 0) if member is not None else 0,
    )
