"""Who the patient is for the fund on a given day: member or dependant, covered or not and why, care scheme,
family doctor, chronic diseases, Amen level, and the family's ceiling.

A handful of indexed look-ups by primary or foreign key, so a point-of-care answer does not grow slower
as the population grows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from labes.care.models import FamilyUsage
from labes.registry import rules as registry_rules
from labes.registry.models import (
    AmenHousehold, AmenMember, ChronicCondition, CoveragePeriod, Dependant, Member, Person, Professional,
)
from labes.registry.service import dependant_rights, member_rights


@dataclass(frozen=True)
class PatientFile:
    """What the fund knows of a patient on `on` that decides what it pays."""

    person: Person
    on: date
    role: str  # insured, spouse, child, father, mother, amen (an Amen beneficiary outside any insured family)
    rank: int
    member: Member | None
    covered: bool
    reason: str
    covered_until: date | None
    scheme: str | None
    family_doctor: Professional | None
    chronic: tuple[ChronicCondition, ...]
    amen: AmenHousehold | None
    amen_covered: bool
    family_size: int  # beneficiaries covered on `on`, the ceiling grid's key
    dependent_parents: int
    ceiling_used_millimes: int = 0
    copay_used_millimes: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def family_id(self) -> uuid.UUID | None:
        return self.member.id if self.member else None


def patient_file(session: Session, *, person: Person, on: date) -> PatientFile:
    """Assemble the patient's file on `on` (rights computed now: nothing is stored, nothing needs renewing)."""
    member = session.scalar(select(Member).where(Member.person_id == person.id))
    dependant = None
    if member is None:
        row = session.execute(select(Dependant, Member).join(Member, Member.id == Dependant.member_id)
                              .where(Dependant.person_id == person.id)
                              .order_by(Dependant.end_date.is_not(None), Dependant.start_date.desc())).first()
        if row is not None:
            dependant, member = row

    covered, reason, until = False, "Not registered as an insured member or a dependant.", None
    role, rank = "amen", 0
    scheme, doctor = None, None
    family_size, parents = 0, 0
    if member is not None:
        holder = person if dependant is None else session.get(Person, member.person_id)
        holder_rights = member_rights(member, holder, on)
        family = session.execute(select(Dependant, Person).join(Person, Person.id == Dependant.person_id)
                                 .where(Dependant.member_id == member.id)).all()
        family_size = 1 if holder_rights.covered else 0
        for other, other_person in family:
            if holder_rights.covered and dependant_rights(other, other_person, on).covered:
                family_size += 1
                parents += other.relationship in ("father", "mother")
        if dependant is None:
            role, rights = "insured", holder_rights
        else:
            role, rank = dependant.relationship, dependant.rank
            own = dependant_rights(dependant, person, on)
            rights = own if holder_rights.covered or not own.covered else registry_rules.Eligibility(
                False, f"The insured member is not covered: {holder_rights.reason}")
        covered, reason, until = rights.covered, rights.reason, rights.until
        period = session.scalar(select(CoveragePeriod).where(CoveragePeriod.member_id == member.id,
                                                             CoveragePeriod.start_date <= on)
                                .order_by(CoveragePeriod.start_date.desc()).limit(1))
        if period is not None:
            scheme = period.scheme
            if period.family_doctor_id is not None:
                doctor = session.get(Professional, period.family_doctor_id)

    chronic = tuple(session.scalars(
        select(ChronicCondition).where(ChronicCondition.person_id == person.id, ChronicCondition.valid_from <= on)
        .order_by(ChronicCondition.code)))
    chronic = tuple(c for c in chronic if c.valid_to is None or on <= c.valid_to)

    amen, amen_covered = None, False
    household_id = session.scalar(select(AmenMember.household_id).where(AmenMember.person_id == person.id).limit(1))
    if household_id is not None:
        amen = session.get(AmenHousehold, household_id)
        eligibility = registry_rules.amen_eligibility(level=amen.level, valid_from=amen.valid_from,
                                                      valid_to=amen.valid_to, on=on)
        amen_covered = eligibility.covered
        if not covered and amen_covered:
            reason, until = eligibility.reason, eligibility.until

    usage = session.get(FamilyUsage, (member.id, on.year)) if member is not None else None
    return PatientFile(
        person=person, on=on, role=role, rank=rank, member=member, covered=covered, reason=reason, covered_until=until,
        scheme=scheme if covered else None, family_doctor=doctor if covered else None, chronic=chronic, amen=amen,
        amen_covered=amen_covered, family_size=family_size, dependent_parents=parents,
        ceiling_used_millimes=usage.ceiling_used_millimes if usage else 0,
        copay_used_millimes=usage.copay_used_millimes if usage else 0,
    )
