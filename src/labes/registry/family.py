"""The family view: a member, their dependants, coverage, chronic conditions and Amen status, with rights today."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labes.registry import rules
from labes.registry.models import (
    AmenHousehold, AmenMember, ChronicCondition, CoveragePeriod, Dependant, Member, Person, Professional,
)
from labes.registry.service import dependant_rights, member_rights
from labes.registry.reference import chronic_disease_names


def _rights(eligibility: rules.Eligibility, on: date) -> dict[str, Any]:
    return {"covered": eligibility.covered, "reason": eligibility.reason, "until": eligibility.until, "on": on}


def coverage_rows(session: Session, member: Member) -> list[dict[str, Any]]:
    """Return the member's care-scheme history, newest first, with family doctors' names."""
    rows = session.execute(
        select(CoveragePeriod, Professional.licence, Professional.name_lat)
        .outerjoin(Professional, Professional.id == CoveragePeriod.family_doctor_id)
        .where(CoveragePeriod.member_id == member.id).order_by(CoveragePeriod.start_date.desc())
    ).all()
    return [{"scheme": p.scheme, "start_date": p.start_date, "family_doctor_licence": licence,
             "family_doctor_name": name, "reason": p.reason} for p, licence, name in rows]


def current_coverage(history: list[dict[str, Any]], on: date) -> dict[str, Any] | None:
    """Return the care scheme in force on `on` from a newest-first history."""
    return next((row for row in history if row["start_date"] <= on), None)


def family_view(session: Session, *, member: Member, on: date) -> dict[str, Any]:
    """Assemble the family of `member` with everyone's rights on `on`."""
    holder = session.get(Person, member.person_id)
    dependants = session.execute(
        select(Dependant, Person).join(Person, Person.id == Dependant.person_id)
        .where(Dependant.member_id == member.id).order_by(Dependant.relationship, Dependant.rank)
    ).all()
    person_ids = [holder.id] + [p.id for _, p in dependants]
    names = chronic_disease_names()
    conditions: dict[Any, list[dict[str, Any]]] = {}
    for c in session.scalars(select(ChronicCondition).where(ChronicCondition.person_id.in_(person_ids))
                             .order_by(ChronicCondition.code, ChronicCondition.valid_from)):
        active = c.valid_from <= on and (c.valid_to is None or on <= c.valid_to)
        conditions.setdefault(c.person_id, []).append(
            {"id": c.id, "code": c.code, "name": names.get(c.code, c.code), "icd10": c.icd10,
             "valid_from": c.valid_from, "valid_to": c.valid_to, "active": active})

    holder_rights = member_rights(member, holder, on)
    people = [{"role": "insured", "rank": 0, "person": holder, "rights": _rights(holder_rights, on),
               "chronic_conditions": conditions.get(holder.id, [])}]
    for dependant, person in dependants:
        own = dependant_rights(dependant, person, on)
        # A dependant is covered only through a covered member.
        effective = own if holder_rights.covered or not own.covered else rules.Eligibility(
            False, f"The insured member is not covered: {holder_rights.reason}")
        people.append({"role": dependant.relationship, "rank": dependant.rank, "person": person,
                       "rights": _rights(effective, on), "chronic_conditions": conditions.get(person.id, []),
                       "dependant_id": dependant.id, "student_until": dependant.student_until,
                       "disabled": dependant.disabled, "evidence": dependant.evidence})

    history = coverage_rows(session, member)
    amen = None
    # Two indexed look-ups; a join with LIMIT 1 lets the planner scan the households instead.
    household_id = session.scalar(select(AmenMember.household_id).where(AmenMember.person_id.in_(person_ids)).limit(1))
    if household_id is not None:
        amen = amen_view(session, household=session.get(AmenHousehold, household_id), on=on)
    return {
        "social_id": member.social_id, "regime": member.regime, "employer": member.employer,
        "affiliation_start": member.affiliation_start, "affiliation_end": member.affiliation_end,
        "status": member.status, "care_scheme": current_coverage(history, on), "coverage_history": history,
        "people": people, "amen": amen,
        "beneficiaries_covered": sum(1 for p in people if p["rights"]["covered"]),
    }


def amen_view(session: Session, *, household: AmenHousehold, on: date) -> dict[str, Any]:
    """Return an Amen household with its members and whether its benefit applies on `on`."""
    from labes.registry.service import amen_members

    eligibility = rules.amen_eligibility(level=household.level, valid_from=household.valid_from,
                                         valid_to=household.valid_to, on=on)
    return {"number": household.number, "level": household.level, "valid_from": household.valid_from,
            "valid_to": household.valid_to, "governorate": household.governorate,
            "members": amen_members(session, household), "rights": _rights(eligibility, on)}
