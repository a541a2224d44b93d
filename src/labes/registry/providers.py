"""Facilities and professionals: create, update, read, search, and where professionals practise."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labes.errors import Conflict, InvalidInput, NotFound
from labes.registry.models import Facility, Practice, Professional, natural_uuid
from labes.registry.schemas import FacilityIn, FacilityUpdate, ProfessionalIn, ProfessionalUpdate
from labes.registry.text import fold, has_arabic
from labes.security import audit
from labes.security.audit import Actor, snapshot


def get_facility_or_raise(session: Session, *, code: str) -> Facility:
    """Return the facility `code` or raise NotFound."""
    facility = session.scalar(select(Facility).where(Facility.code == code))
    if facility is None:
        raise NotFound(f"No facility with the code {code}.", field="code")
    return facility


def get_professional_or_raise(session: Session, *, licence: str) -> Professional:
    """Return the professional `licence` or raise NotFound."""
    professional = session.scalar(select(Professional).where(Professional.licence == licence))
    if professional is None:
        raise NotFound(f"No professional with the licence {licence}.", field="licence")
    return professional


def _check_contract(obj: Any) -> None:
    if obj.contract_start and obj.contract_end and obj.contract_end < obj.contract_start:
        raise InvalidInput("contract_end is before contract_start.", field="contract_end")


def create_facility(session: Session, *, actor: Actor, data: FacilityIn) -> Facility:
    """Register a facility."""
    if session.scalar(select(Facility.id).where(Facility.code == data.code)) is not None:
        raise Conflict(f"A facility with the code {data.code} exists.", field="code")
    facility = Facility(id=natural_uuid("facility", data.code), **data.model_dump(), search_lat=fold(data.name_lat))
    _check_contract(facility)
    session.add(facility)
    session.flush()
    audit.record(session, actor=actor, action="registry:facility:create", entity_type="facility", entity_id=data.code,
                 after=snapshot(facility, exclude=("search_lat",)))
    return facility


def update_facility(session: Session, *, actor: Actor, code: str, data: FacilityUpdate) -> Facility:
    """Change a facility's names, address, tax ID or contract."""
    facility = get_facility_or_raise(session, code=code)
    before = snapshot(facility, exclude=("search_lat",))
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(facility, key, value)
    _check_contract(facility)
    facility.search_lat = fold(facility.name_lat)
    session.flush()
    audit.record(session, actor=actor, action="registry:facility:update", entity_type="facility", entity_id=code,
                 before=before, after=snapshot(facility, exclude=("search_lat",)))
    return facility


def create_professional(session: Session, *, actor: Actor, data: ProfessionalIn) -> Professional:
    """Register a health professional."""
    if session.scalar(select(Professional.id).where(Professional.licence == data.licence)) is not None:
        raise Conflict(f"A professional with the licence {data.licence} exists.", field="licence")
    professional = Professional(id=natural_uuid("professional", data.licence), **data.model_dump(),
                                search_lat=fold(data.name_lat))
    _check_contract(professional)
    session.add(professional)
    session.flush()
    audit.record(session, actor=actor, action="registry:professional:create", entity_type="professional",
                 entity_id=data.licence, after=snapshot(professional, exclude=("search_lat",)))
    return professional


def update_professional(session: Session, *, actor: Actor, licence: str, data: ProfessionalUpdate) -> Professional:
    """Change a professional's details or contract."""
    professional = get_professional_or_raise(session, licence=licence)
    before = snapshot(professional, exclude=("search_lat",))
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(professional, key, value)
    if professional.family_doctor and professional.kind != "general_practitioner":
        raise InvalidInput("Only a general practitioner can be a family doctor.", field="family_doctor")
    _check_contract(professional)
    professional.search_lat = fold(professional.name_lat)
    session.flush()
    audit.record(session, actor=actor, action="registry:professional:update", entity_type="professional",
                 entity_id=licence, before=before, after=snapshot(professional, exclude=("search_lat",)))
    return professional


def add_practice(session: Session, *, actor: Actor, licence: str, facility_code: str) -> Practice:
    """Record that a professional practises at a facility."""
    professional = get_professional_or_raise(session, licence=licence)
    facility = get_facility_or_raise(session, code=facility_code)
    practice_id = natural_uuid("practice", f"{licence}/{facility_code}")
    if session.get(Practice, practice_id) is not None:
        raise Conflict(f"{licence} already practises at {facility_code}.", field="facility_code")
    practice = Practice(id=practice_id, professional_id=professional.id, facility_id=facility.id)
    session.add(practice)
    session.flush()
    audit.record(session, actor=actor, action="registry:practice:create", entity_type="professional", entity_id=licence,
                 after={"facility": facility_code})
    return practice


def facility_codes_of(session: Session, professional: Professional) -> list[str]:
    """Return the codes of the facilities where `professional` practises."""
    return list(session.scalars(select(Facility.code).join(Practice, Practice.facility_id == Facility.id)
                                .where(Practice.professional_id == professional.id).order_by(Facility.code)))


def search_providers(session: Session, *, model: type[Facility] | type[Professional], q: str | None, kind: str | None,
                     governorate: str | None, page: int, page_size: int) -> tuple[list[Any], bool]:
    """Find facilities or professionals by name prefix (Latin script), kind and governorate."""
    query = select(model)
    if q:
        if has_arabic(q):
            query = query.where(model.name_ar.contains(q.strip()))
        else:
            key = fold(q)
            query = query.where(model.search_lat >= key, model.search_lat < key + "\uffff")
    if kind:
        query = query.where(model.kind == kind)
    if governorate:
        query = query.where(model.governorate == governorate.upper())
    rows = list(session.scalars(query.order_by(model.search_lat, model.id).offset((page - 1) * page_size).limit(page_size + 1)))
    return rows[:page_size], len(rows) > page_size
