"""HTTP for the registry: parse, call one service function, shape the answer."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from labes.registry import family, providers, service
from labes.registry.schemas import (
    AmenHouseholdCreate, AmenHouseholdRead, CareSchemeChange, ChronicConditionCreate, ChronicConditionRead,
    CoverageRead, DependantCreate, DependantRead, DependantUpdate, FacilityIn, FacilityRead, FacilityUpdate,
    FamilyRead, MemberCreate, MemberRead, MemberUpdate, PersonHit, PersonRead, PersonUpdate, ProfessionalIn,
    ProfessionalRead, ProfessionalUpdate,
)
from labes.registry.models import Facility, Professional
from labes.registry.reference import chronic_disease_names
from labes.schemas import Page
from labes.security import audit
from labes.security.deps import DbSession, UnitOfWorkRoute, permitted

router = APIRouter(prefix="/api/v1", tags=["registry"], route_class=UnitOfWorkRoute)

PageNo = Annotated[int, Query(ge=1, le=10_000)]
PageSize = Annotated[int, Query(ge=1, le=100)]
OnDate = Annotated[date | None, Query(description="The day rights are computed for (default: today)")]


def _member_read(session, member) -> dict[str, Any]:
    return {**{k: getattr(member, k) for k in MemberRead.model_fields if k != "person"},
            "person": service.get_person_or_raise(session, person_id=member.person_id)}


def _dependant_read(session, dependant, on: date) -> dict[str, Any]:
    person = service.get_person_or_raise(session, person_id=dependant.person_id)
    rights = service.dependant_rights(dependant, person, on)
    return {**{k: getattr(dependant, k) for k in DependantRead.model_fields if k not in ("person", "rights")},
            "person": person, "rights": {"covered": rights.covered, "reason": rights.reason, "until": rights.until, "on": on}}


# ---------------------------------------------------------------- persons and families


@router.get("/persons", response_model=Page[PersonHit])
def search_persons(session: DbSession, actor: permitted("registry:read"),
                   q: Annotated[str, Query(min_length=1, max_length=100, description="CIN, social identifier or name")],
                   page: PageNo = 1, page_size: PageSize = 20) -> dict[str, Any]:
    """Search persons by CIN, social identifier, or name in Arabic or Latin script."""
    items, has_more = service.search_persons(session, q=q, page=page, page_size=page_size)
    return {"items": items, "page": page, "page_size": page_size, "has_more": has_more}


@router.get("/persons/{person_id}", response_model=PersonRead)
def read_person(person_id: uuid.UUID, session: DbSession, actor: permitted("registry:read")):
    """Read one person."""
    return service.get_person_or_raise(session, person_id=person_id)


@router.patch("/persons/{person_id}", response_model=PersonRead)
def update_person(person_id: uuid.UUID, body: PersonUpdate, session: DbSession, actor: permitted("registry:write")):
    """Change a person's identity, contact or address details."""
    return service.update_person(session, actor=actor, person_id=person_id, data=body)


@router.post("/persons/{person_id}/chronic-conditions", response_model=ChronicConditionRead,
             status_code=status.HTTP_201_CREATED)
def add_chronic_condition(person_id: uuid.UUID, body: ChronicConditionCreate, session: DbSession,
                          actor: permitted("registry:write")) -> dict[str, Any]:
    """Record an approved chronic disease (APCI, covered at 100%)."""
    c = service.add_chronic_condition(session, actor=actor, person_id=person_id, data=body)
    today = date.today()
    return {"id": c.id, "code": c.code, "name": chronic_disease_names().get(c.code, c.code), "icd10": c.icd10,
            "valid_from": c.valid_from, "valid_to": c.valid_to,
            "active": c.valid_from <= today and (c.valid_to is None or today <= c.valid_to)}


@router.get("/families/{key}", response_model=FamilyRead)
def read_family(key: str, session: DbSession, actor: permitted("registry:read"), on: OnDate = None) -> dict[str, Any]:
    """The family of a CIN (member or dependant) or social identifier, with everyone's rights.

    The view shows chronic diseases, which are health data: the reading is audited, and the family can see who read it.
    """
    member = service.find_member_for(session, key=key)
    audit.record(session, actor=actor, action="registry:family:read", entity_type="member", entity_id=member.social_id)
    return family.family_view(session, member=member, on=on or date.today())


# ---------------------------------------------------------------- members and dependants


@router.post("/members", response_model=MemberRead, status_code=status.HTTP_201_CREATED)
def create_member(body: MemberCreate, session: DbSession, actor: permitted("registry:write")) -> dict[str, Any]:
    """Enrol an insured member with their care scheme."""
    return _member_read(session, service.create_member(session, actor=actor, data=body))


@router.get("/members/{social_id}", response_model=MemberRead)
def read_member(social_id: str, session: DbSession, actor: permitted("registry:read")) -> dict[str, Any]:
    """Read an insured member."""
    return _member_read(session, service.get_member_or_raise(session, social_id=social_id))


@router.patch("/members/{social_id}", response_model=MemberRead)
def update_member(social_id: str, body: MemberUpdate, session: DbSession, actor: permitted("registry:write")) -> dict[str, Any]:
    """Change a member's regime, employer, affiliation dates or status."""
    return _member_read(session, service.update_member(session, actor=actor, social_id=social_id, data=body))


@router.post("/members/{social_id}/care-scheme", response_model=list[CoverageRead], status_code=status.HTTP_201_CREATED)
def change_care_scheme(social_id: str, body: CareSchemeChange, session: DbSession,
                       actor: permitted("registry:write")) -> list[dict[str, Any]]:
    """Change the family's care scheme from a date; returns the scheme history, newest first."""
    service.change_care_scheme(session, actor=actor, social_id=social_id, data=body)
    return family.coverage_rows(session, service.get_member_or_raise(session, social_id=social_id))


@router.post("/members/{social_id}/dependants", response_model=DependantRead, status_code=status.HTTP_201_CREATED)
def add_dependant(social_id: str, body: DependantCreate, session: DbSession, actor: permitted("registry:write")) -> dict[str, Any]:
    """Put a spouse, child or parent in the member's charge, if the rules allow it."""
    today = date.today()
    return _dependant_read(session, service.add_dependant(session, actor=actor, social_id=social_id, data=body, today=today), today)


@router.patch("/members/{social_id}/dependants/{dependant_id}", response_model=DependantRead)
def update_dependant(social_id: str, dependant_id: uuid.UUID, body: DependantUpdate, session: DbSession,
                     actor: permitted("registry:write")) -> dict[str, Any]:
    """Record new evidence or end a dependant's coverage."""
    dependant = service.update_dependant(session, actor=actor, social_id=social_id, dependant_id=dependant_id, data=body)
    return _dependant_read(session, dependant, date.today())


# ---------------------------------------------------------------- Amen


@router.post("/amen-households", response_model=AmenHouseholdRead, status_code=status.HTTP_201_CREATED)
def create_amen_household(body: AmenHouseholdCreate, session: DbSession, actor: permitted("registry:write")) -> dict[str, Any]:
    """Register an Amen (safety-net) household and its members."""
    household = service.create_amen_household(session, actor=actor, data=body)
    return family.amen_view(session, household=household, on=date.today())


@router.get("/amen-households/{number}", response_model=AmenHouseholdRead)
def read_amen_household(number: str, session: DbSession, actor: permitted("registry:read"), on: OnDate = None) -> dict[str, Any]:
    """Read an Amen household with its benefit level and validity."""
    household = service.get_amen_household_or_raise(session, number=number)
    return family.amen_view(session, household=household, on=on or date.today())


# ---------------------------------------------------------------- providers


@router.get("/facilities", response_model=Page[FacilityRead])
def search_facilities(session: DbSession, actor: permitted("providers:read"), q: str | None = None,
                      kind: str | None = None, governorate: str | None = None,
                      page: PageNo = 1, page_size: PageSize = 20) -> dict[str, Any]:
    """Search facilities by name, kind and governorate."""
    items, has_more = providers.search_providers(session, model=Facility, q=q, kind=kind, governorate=governorate,
                                                 page=page, page_size=page_size)
    return {"items": items, "page": page, "page_size": page_size, "has_more": has_more}


@router.post("/facilities", response_model=FacilityRead, status_code=status.HTTP_201_CREATED)
def create_facility(body: FacilityIn, session: DbSession, actor: permitted("providers:write")):
    """Register a facility."""
    return providers.create_facility(session, actor=actor, data=body)


@router.get("/facilities/{code}", response_model=FacilityRead)
def read_facility(code: str, session: DbSession, actor: permitted("providers:read")):
    """Read a facility."""
    return providers.get_facility_or_raise(session, code=code)


@router.patch("/facilities/{code}", response_model=FacilityRead)
def update_facility(code: str, body: FacilityUpdate, session: DbSession, actor: permitted("providers:write")):
    """Change a facility's details or contract."""
    return providers.update_facility(session, actor=actor, code=code, data=body)


def _professional_read(session, professional) -> dict[str, Any]:
    return {**{k: getattr(professional, k) for k in ProfessionalRead.model_fields if k != "facilities"},
            "facilities": providers.facility_codes_of(session, professional)}


@router.get("/professionals", response_model=Page[ProfessionalRead])
def search_professionals(session: DbSession, actor: permitted("providers:read"), q: str | None = None,
                         kind: str | None = None, governorate: str | None = None,
                         page: PageNo = 1, page_size: PageSize = 20) -> dict[str, Any]:
    """Search professionals by name, kind and governorate."""
    items, has_more = providers.search_providers(session, model=Professional, q=q, kind=kind, governorate=governorate,
                                                 page=page, page_size=page_size)
    return {"items": [_professional_read(session, p) for p in items], "page": page, "page_size": page_size,
            "has_more": has_more}


@router.post("/professionals", response_model=ProfessionalRead, status_code=status.HTTP_201_CREATED)
def create_professional(body: ProfessionalIn, session: DbSession, actor: permitted("providers:write")) -> dict[str, Any]:
    """Register a health professional."""
    return _professional_read(session, providers.create_professional(session, actor=actor, data=body))


@router.get("/professionals/{licence}", response_model=ProfessionalRead)
def read_professional(licence: str, session: DbSession, actor: permitted("providers:read")) -> dict[str, Any]:
    """Read a professional and where they practise."""
    return _professional_read(session, providers.get_professional_or_raise(session, licence=licence))


@router.patch("/professionals/{licence}", response_model=ProfessionalRead)
def update_professional(licence: str, body: ProfessionalUpdate, session: DbSession,
                        actor: permitted("providers:write")) -> dict[str, Any]:
    """Change a professional's details or contract."""
    return _professional_read(session, providers.update_professional(session, actor=actor, licence=licence, data=body))


@router.put("/professionals/{licence}/facilities/{code}", response_model=ProfessionalRead)
def add_practice(licence: str, code: str, session: DbSession, actor: permitted("providers:write")) -> dict[str, Any]:
    """Record that the professional practises at the facility."""
    providers.add_practice(session, actor=actor, licence=licence, facility_code=code)
    return _professional_read(session, providers.get_professional_or_raise(session, licence=licence))
