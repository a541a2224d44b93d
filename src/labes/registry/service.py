"""Registry logic: plain functions taking a session first; they flush, never commit, and audit every write."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from labes.errors import Conflict, InvalidInput, NotFound, RuleViolation
from labes.registry import rules
from labes.registry.identifiers import ascii_digits
from labes.registry.models import (
    AmenHousehold, AmenMember, ChronicCondition, CoveragePeriod, Dependant, Member, Person, Professional,
    natural_uuid,
)
from labes.registry.schemas import (
    AmenHouseholdCreate, CareSchemeChange, ChronicConditionCreate, DependantCreate, DependantUpdate, MemberCreate,
    MemberUpdate, PersonIn, PersonUpdate,
)
from labes.registry.text import fold_arabic, fold_latin, has_arabic, search_key
from labes.security import audit
from labes.security.audit import Actor, snapshot

# ---------------------------------------------------------------- persons


def person_search_keys(values: dict[str, Any]) -> dict[str, str]:
    """Return the indexed search keys for a person's names."""
    return {
        "search_lat": search_key(values["first_name_lat"], values["last_name_lat"], arabic=False),
        "search_ar": search_key(values["first_name_ar"], values["last_name_ar"], arabic=True),
    }


def person_id_for(*, cin: str | None, family_key: str) -> uuid.UUID:
    """Return a person's id: from the CIN when known, else from their place in a family."""
    return natural_uuid("person", cin) if cin else natural_uuid("person", family_key)


def get_person_or_raise(session: Session, *, person_id: uuid.UUID) -> Person:
    """Return the person with `person_id` or raise NotFound."""
    person = session.get(Person, person_id)
    if person is None:
        raise NotFound(f"No person with id {person_id}.")
    return person


def _add_person(session: Session, actor: Actor, data: PersonIn, *, family_key: str) -> Person:
    if data.cin and session.scalar(select(Person.id).where(Person.cin == data.cin)) is not None:
        raise Conflict(f"A person with the CIN {data.cin} is already registered; search for them instead.", field="cin")
    values = data.model_dump()
    person_id = person_id_for(cin=data.cin, family_key=family_key)
    if session.get(Person, person_id) is not None:
        raise Conflict("This person is already registered in this family.", field="person")
    person = Person(id=person_id, **values, **person_search_keys(values))
    session.add(person)
    session.flush()
    audit.record(session, actor=actor, action="registry:person:create", entity_type="person", entity_id=person.id,
                 after=snapshot(person, exclude=("search_lat", "search_ar")))
    return person


def update_person(session: Session, *, actor: Actor, person_id: uuid.UUID, data: PersonUpdate) -> Person:
    """Change a person's identity, contact or address details."""
    person = get_person_or_raise(session, person_id=person_id)
    before = snapshot(person, exclude=("search_lat", "search_ar"))
    changes = data.model_dump(exclude_unset=True)
    if changes.get("cin") and changes["cin"] != person.cin:
        if session.scalar(select(Person.id).where(Person.cin == changes["cin"])) is not None:
            raise Conflict(f"The CIN {changes['cin']} belongs to another registered person.", field="cin")
    for key, value in changes.items():
        setattr(person, key, value)
    if person.birth_date > date.today():
        raise InvalidInput("birth_date is in the future.", field="birth_date")
    if person.death_date is not None and person.death_date < person.birth_date:
        raise InvalidInput("death_date is before birth_date.", field="death_date")
    if person.cin is None and session.scalar(select(Member.id).where(Member.person_id == person.id)) is not None:
        raise InvalidInput("An insured member must keep a CIN.", field="cin")
    keys = person_search_keys({k: getattr(person, k) for k in ("first_name_lat", "last_name_lat", "first_name_ar", "last_name_ar")})
    person.search_lat, person.search_ar = keys["search_lat"], keys["search_ar"]
    session.flush()
    audit.record(session, actor=actor, action="registry:person:update", entity_type="person", entity_id=person.id,
                 before=before, after=snapshot(person, exclude=("search_lat", "search_ar")))
    return person


# ---------------------------------------------------------------- members


def get_member_or_raise(session: Session, *, social_id: str) -> Member:
    """Return the member with `social_id` or raise NotFound."""
    member = session.scalar(select(Member).where(Member.social_id == social_id))
    if member is None:
        raise NotFound(f"No insured member with the social identifier {social_id}.", field="social_id")
    return member


def get_family_doctor_or_raise(session: Session, *, licence: str) -> Professional:
    """Return the family doctor with `licence`, or raise if there is none."""
    doctor = session.scalar(select(Professional).where(Professional.licence == licence))
    if doctor is None:
        raise NotFound(f"No professional with the licence {licence}.", field="family_doctor_licence")
    if not doctor.family_doctor:
        raise RuleViolation(f"{doctor.name_lat} ({licence}) is not registered as a family doctor.", field="family_doctor_licence")
    if doctor.contract_status not in (None, "active"):
        raise RuleViolation(f"{doctor.name_lat} ({licence})'s contract with the fund is {doctor.contract_status}.", field="family_doctor_licence")
    return doctor


def _coverage_period(session: Session, member: Member, scheme: str, start: date, licence: str | None,
                     reason: str | None) -> CoveragePeriod:
    doctor_id = None
    if scheme == "private":
        if not licence:
            raise RuleViolation("The private scheme needs a chosen family doctor (family_doctor_licence).", field="family_doctor_licence")
        doctor_id = get_family_doctor_or_raise(session, licence=licence).id
    elif licence:
        raise InvalidInput("A family doctor is chosen only in the private scheme.", field="family_doctor_licence")
    return CoveragePeriod(id=natural_uuid("coverage", f"{member.social_id}/{start.isoformat()}"), member_id=member.id,
                          scheme=scheme, start_date=start, family_doctor_id=doctor_id, reason=reason)


def create_member(session: Session, *, actor: Actor, data: MemberCreate) -> Member:
    """Enrol an insured member with their person record and care scheme."""
    if session.scalar(select(Member.id).where(Member.social_id == data.social_id)) is not None:
        raise Conflict(f"The social identifier {data.social_id} is already enrolled.", field="social_id")
    if data.affiliation_end and data.affiliation_end < data.affiliation_start:
        raise InvalidInput("affiliation_end is before affiliation_start.", field="affiliation_end")
    if data.person.cin is None:
        raise InvalidInput("An insured member must have a CIN.", field="person.cin")
    person = _add_person(session, actor, data.person, family_key=data.social_id)
    member = Member(id=natural_uuid("member", data.social_id), person_id=person.id, social_id=data.social_id,
                    regime=data.regime, employer=data.employer, employer_tax_id=data.employer_tax_id,
                    affiliation_start=data.affiliation_start, affiliation_end=data.affiliation_end, status=data.status)
    session.add(member)
    session.flush()
    period = _coverage_period(session, member, data.care_scheme, data.scheme_since, data.family_doctor_licence, "enrolment")
    session.add(period)
    session.flush()
    audit.record(session, actor=actor, action="registry:member:create", entity_type="member", entity_id=member.social_id,
                 after=snapshot(member) | {"care_scheme": data.care_scheme, "scheme_since": data.scheme_since.isoformat()})
    return member


def update_member(session: Session, *, actor: Actor, social_id: str, data: MemberUpdate) -> Member:
    """Change a member's regime, employer, affiliation dates or status."""
    member = get_member_or_raise(session, social_id=social_id)
    before = snapshot(member)
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(member, key, value)
    if member.affiliation_end and member.affiliation_end < member.affiliation_start:
        raise InvalidInput("affiliation_end is before affiliation_start.", field="affiliation_end")
    session.flush()
    audit.record(session, actor=actor, action="registry:member:update", entity_type="member", entity_id=social_id,
                 before=before, after=snapshot(member))
    return member


def change_care_scheme(session: Session, *, actor: Actor, social_id: str, data: CareSchemeChange) -> CoveragePeriod:
    """Record a new care scheme (and family doctor) for the family from `start_date`."""
    member = get_member_or_raise(session, social_id=social_id)
    latest = session.scalar(select(CoveragePeriod).where(CoveragePeriod.member_id == member.id)
                            .order_by(CoveragePeriod.start_date.desc()).limit(1))
    if latest is not None and data.start_date <= latest.start_date:
        raise Conflict(f"The care scheme already changes on {latest.start_date.isoformat()}; a new change must start later.",
                       field="start_date")
    period = _coverage_period(session, member, data.scheme, data.start_date, data.family_doctor_licence, data.reason)
    session.add(period)
    session.flush()
    audit.record(session, actor=actor, action="registry:coverage:change", entity_type="member", entity_id=social_id,
                 before=snapshot(latest) if latest else None, after=snapshot(period))
    return period


# ---------------------------------------------------------------- dependants


def dependant_rights(dependant: Dependant, person: Person, on: date) -> rules.Eligibility:
    """Return whether `dependant` is covered on `on` (before the member's own rights are considered)."""
    return rules.dependant_eligibility(
        relationship=dependant.relationship, sex=person.sex, birth_date=person.birth_date, on=on,
        student_until=dependant.student_until, disabled=dependant.disabled,
        unmarried_no_income=dependant.unmarried_no_income, start_date=dependant.start_date,
        end_date=dependant.end_date, death_date=person.death_date,
    )


def member_rights(member: Member, person: Person, on: date) -> rules.Eligibility:
    """Return whether the insured member is covered on `on`."""
    return rules.member_rights(status=member.status, affiliation_start=member.affiliation_start,
                               affiliation_end=member.affiliation_end, on=on, death_date=person.death_date)


def _next_rank(session: Session, member: Member, relationship: str) -> int:
    if relationship == "father":
        return 1
    if relationship == "mother":
        return 2
    highest = session.scalar(select(func.max(Dependant.rank)).where(Dependant.member_id == member.id,
                                                                    Dependant.relationship == relationship))
    return (highest or 0) + 1


def add_dependant(session: Session, *, actor: Actor, social_id: str, data: DependantCreate, today: date) -> Dependant:
    """Put a person in a member's charge, if the rules allow it today."""
    member = get_member_or_raise(session, social_id=social_id)
    start = data.start_date or today
    eligibility = rules.dependant_eligibility(
        relationship=data.relationship, sex=data.person.sex, birth_date=data.person.birth_date, on=max(start, today),
        student_until=data.student_until, disabled=data.disabled, unmarried_no_income=data.unmarried_no_income,
    )
    if not eligibility.covered:
        raise RuleViolation(f"This {data.relationship} cannot be added as a dependant: {eligibility.reason}", field="relationship")
    if data.relationship == "spouse":
        active_spouse = session.scalar(select(Dependant.id).where(
            Dependant.member_id == member.id, Dependant.relationship == "spouse",
            or_(Dependant.end_date.is_(None), Dependant.end_date >= start)))
        if active_spouse is not None:
            raise Conflict("The member already has a spouse in charge; end that record first (divorce or death).", field="relationship")
    rank = data.rank or _next_rank(session, member, data.relationship)
    if session.scalar(select(Dependant.id).where(Dependant.member_id == member.id, Dependant.relationship == data.relationship,
                                                 Dependant.rank == rank)) is not None:
        raise Conflict(f"The member already has a {data.relationship} with rank {rank}.", field="rank")
    family_key = f"{social_id}/{data.relationship}/{rank}"
    person = _add_person(session, actor, data.person, family_key=family_key)
    dependant = Dependant(id=natural_uuid("dependant", family_key), member_id=member.id, person_id=person.id,
                          relationship=data.relationship, rank=rank, student_until=data.student_until,
                          disabled=data.disabled, unmarried_no_income=data.unmarried_no_income,
                          evidence=data.evidence, start_date=start, end_date=None)
    session.add(dependant)
    session.flush()
    audit.record(session, actor=actor, action="registry:dependant:create", entity_type="dependant", entity_id=dependant.id,
                 after=snapshot(dependant) | {"social_id": social_id})
    return dependant


def get_dependant_or_raise(session: Session, *, social_id: str, dependant_id: uuid.UUID) -> Dependant:
    """Return the member's dependant or raise NotFound (never another family's)."""
    member = get_member_or_raise(session, social_id=social_id)
    dependant = session.scalar(select(Dependant).where(Dependant.id == dependant_id, Dependant.member_id == member.id))
    if dependant is None:
        raise NotFound(f"The member {social_id} has no dependant {dependant_id}.")
    return dependant


def update_dependant(session: Session, *, actor: Actor, social_id: str, dependant_id: uuid.UUID,
                     data: DependantUpdate) -> Dependant:
    """Record new evidence (student certificate, disability) or end a dependant's coverage."""
    dependant = get_dependant_or_raise(session, social_id=social_id, dependant_id=dependant_id)
    before = snapshot(dependant)
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(dependant, key, value)
    if (dependant.disabled or dependant.unmarried_no_income or dependant.student_until) and not dependant.evidence:
        raise InvalidInput("evidence (the certificate's reference) is required for this exception.", field="evidence")
    session.flush()
    audit.record(session, actor=actor, action="registry:dependant:update", entity_type="dependant", entity_id=dependant.id,
                 before=before, after=snapshot(dependant))
    return dependant


# ---------------------------------------------------------------- chronic conditions and Amen


def add_chronic_condition(session: Session, *, actor: Actor, person_id: uuid.UUID, data: ChronicConditionCreate) -> ChronicCondition:
    """Record an approved chronic disease (APCI) for a person."""
    person = get_person_or_raise(session, person_id=person_id)
    key = f"{person.id.hex}/{data.code}/{data.valid_from.isoformat()}"
    if session.get(ChronicCondition, natural_uuid("chronic", key)) is not None:
        raise Conflict(f"Condition {data.code} from {data.valid_from.isoformat()} is already recorded.", field="code")
    condition = ChronicCondition(id=natural_uuid("chronic", key), person_id=person.id, **data.model_dump())
    session.add(condition)
    session.flush()
    audit.record(session, actor=actor, action="registry:chronic:create", entity_type="person", entity_id=person.id,
                 after=snapshot(condition))
    return condition


def create_amen_household(session: Session, *, actor: Actor, data: AmenHouseholdCreate) -> AmenHousehold:
    """Register an Amen household and its members (the first CIN is the head)."""
    if session.scalar(select(AmenHousehold.id).where(AmenHousehold.number == data.number)) is not None:
        raise Conflict(f"The Amen household {data.number} already exists.", field="number")
    if data.valid_to and data.valid_to < data.valid_from:
        raise InvalidInput("valid_to is before valid_from.", field="valid_to")
    household = AmenHousehold(id=natural_uuid("amen", data.number), number=data.number, level=data.level,
                              valid_from=data.valid_from, valid_to=data.valid_to, governorate=data.governorate)
    session.add(household)
    session.flush()
    for index, cin in enumerate(data.member_cins):
        person = session.scalar(select(Person).where(Person.cin == cin))
        if person is None:
            raise NotFound(f"No registered person with the CIN {cin}; register them first.", field=f"member_cins.{index}")
        session.add(AmenMember(id=natural_uuid("amen_member", f"{data.number}/{person.id.hex}"), household_id=household.id,
                               person_id=person.id, head=index == 0))
    session.flush()
    audit.record(session, actor=actor, action="registry:amen:create", entity_type="amen_household", entity_id=data.number,
                 after=snapshot(household) | {"member_cins": data.member_cins})
    return household


def get_amen_household_or_raise(session: Session, *, number: str) -> AmenHousehold:
    """Return the Amen household `number` or raise NotFound."""
    household = session.scalar(select(AmenHousehold).where(AmenHousehold.number == number))
    if household is None:
        raise NotFound(f"No Amen household numbered {number}.")
    return household


def amen_members(session: Session, household: AmenHousehold) -> list[Person]:
    """Return the persons of an Amen household, head first."""
    return list(session.scalars(select(Person).join(AmenMember, AmenMember.person_id == Person.id)
                                .where(AmenMember.household_id == household.id)
                                .order_by(AmenMember.head.desc(), Person.birth_date)))


# ---------------------------------------------------------------- search


def _prefix(column, key: str):
    return and_(column >= key, column < key + "\uffff")


def search_persons(session: Session, *, q: str, page: int, page_size: int) -> tuple[list[dict[str, Any]], bool]:
    """Find persons by CIN, social identifier or name (Arabic or Latin, any case or accents)."""
    digits = ascii_digits(q).replace(" ", "")
    query = select(Person)
    if digits.isdigit() and len(digits) == 8:
        query = query.where(Person.cin == digits)
    elif digits.isdigit() and len(digits) == 11:
        query = query.join(Member, Member.person_id == Person.id).where(Member.social_id == digits)
    else:
        arabic = has_arabic(q)
        tokens = (fold_arabic(q) if arabic else fold_latin(q)).split()[:4]
        if not tokens or sum(len(t) for t in tokens) < 2:
            raise InvalidInput("Type at least 2 letters of a name, an 8-digit CIN or an 11-digit social identifier.", field="q")
        column = Person.search_ar if arabic else Person.search_lat
        # "Mohamed Ben Salah" also finds the key "ben salah mohamed": try every rotation of the words.
        rotations = {" ".join(tokens[i:] + tokens[:i]) for i in range(len(tokens))}
        query = query.where(or_(*(_prefix(column, key) for key in sorted(rotations)))).order_by(column, Person.id)
    persons = list(session.scalars(query.offset((page - 1) * page_size).limit(page_size + 1)))
    has_more = len(persons) > page_size
    persons = persons[:page_size]
    families = _families_of(session, [p.id for p in persons])
    hits = []
    for person in persons:
        social_id, role = families.get(person.id, (None, None))
        hits.append({**{k: getattr(person, k) for k in ("id", "cin", "first_name_ar", "last_name_ar", "first_name_lat",
                                                        "last_name_lat", "birth_date", "governorate")},
                     "family_social_id": social_id, "role": role})
    return hits, has_more


def _families_of(session: Session, person_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
    if not person_ids:
        return {}
    found = {pid: (sid, "insured") for pid, sid in session.execute(
        select(Member.person_id, Member.social_id).where(Member.person_id.in_(person_ids)))}
    for pid, sid, relationship in session.execute(
            select(Dependant.person_id, Member.social_id, Dependant.relationship)
            .join(Member, Member.id == Dependant.member_id).where(Dependant.person_id.in_(person_ids))):
        found.setdefault(pid, (sid, relationship))
    return found


def find_member_for(session: Session, *, key: str) -> Member:
    """Return the family a CIN or social identifier belongs to (member or dependant), or raise NotFound."""
    key = ascii_digits(key).replace(" ", "")
    if len(key) == 11 and key.isdigit():
        return get_member_or_raise(session, social_id=key)
    if len(key) != 8 or not key.isdigit():
        raise InvalidInput("Look a family up by an 8-digit CIN or an 11-digit social identifier.", field="key")
    # One query when the CIN is the insured member's (the common case); the member's person row is loaded
    # with it, so the family view does not fetch it again.
    found = session.execute(select(Member, Person).join(Person, Person.id == Member.person_id)
                            .where(Person.cin == key)).first()
    member = found[0] if found else None
    if member is None:
        person_id = session.scalar(select(Person.id).where(Person.cin == key))
        if person_id is None:
            raise NotFound(f"No registered person with the CIN {key}.", field="cin")
        member = session.scalar(select(Member).join(Dependant, Dependant.member_id == Member.id)
                                .where(Dependant.person_id == person_id)
                                .order_by(Dependant.end_date.is_(None).desc()).limit(1))
    if member is None:
        raise NotFound(f"The person with the CIN {key} belongs to no insured family.", field="cin")
    return member
