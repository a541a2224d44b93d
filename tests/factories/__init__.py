"""Factories that build registry and account records through the services; they flush, never commit."""

from __future__ import annotations

import itertools
from datetime import date

from schwifty import IBAN
from sqlalchemy.orm import Session

from labes.registry import providers, service
from labes.registry.identifiers import make_social_id
from labes.registry.schemas import DependantCreate, FacilityIn, MemberCreate, PersonIn, ProfessionalIn
from labes.security.audit import Actor
from labes.security.service import create_agent, login

ACTOR = Actor("cli", "tests")
_counter = itertools.count(1)
_accounts = itertools.count(1)  # bank account numbers, apart so that licences and codes stay as they were


def cin() -> str:
    return f"{next(_counter) + 10_000_000:08d}"


def social_id() -> str:
    return make_social_id(f"0{next(_counter) + 20_000_000:08d}")


def person(**overrides) -> PersonIn:
    values = {"cin": cin(), "first_name_ar": "محمد", "last_name_ar": "بن صالح", "first_name_lat": "Mohamed",
              "last_name_lat": "Ben Salah", "birth_date": date(1980, 5, 17), "sex": "M", "phone": "+21698123456",
              "language": "ar", "governorate": "SFX", "delegation": "Sfax Ville", "address": "12 Rue Ibn Khaldoun"}
    values.update(overrides)
    return PersonIn(**values)


def member(session: Session, *, scheme: str = "public", doctor: str | None = None, person_overrides=None, **overrides):
    values = {"person": person(**(person_overrides or {})), "social_id": social_id(), "regime": "CNSS",
              "employer": "Société Tunisienne d'Électricité", "affiliation_start": date(2010, 1, 1), "status": "active",
              "care_scheme": scheme, "scheme_since": date(2020, 1, 1), "family_doctor_licence": doctor}
    values.update(overrides)
    return service.create_member(session, actor=ACTOR, data=MemberCreate(**values))


def dependant(session: Session, member_social_id: str, *, relationship: str = "child", today: date | None = None,
              **overrides):
    person_values = {"cin": None, "first_name_ar": "سلمى", "first_name_lat": "Salma", "sex": "F",
                     "birth_date": date(2015, 3, 1)}
    person_values.update(overrides.pop("person", {}))
    data = DependantCreate(person=person(**person_values), relationship=relationship, **overrides)
    return service.add_dependant(session, actor=ACTOR, social_id=member_social_id, data=data, today=today or date.today())


def iban(number: int | None = None) -> str:
    """Return a valid Tunisian IBAN, a new one for each call (or the one of `number`)."""
    number = next(_accounts) if number is None else number
    return IBAN.generate("TN", bank_code="08", branch_code="001", account_code=f"{number:013d}").compact


def facility(session: Session, **overrides):
    values = {"iban": iban(), "code": f"FSFX{next(_counter):05d}", "kind": "primary_health_centre", "name_ar": "مركز الصحة الأساسية",
              "name_lat": "Centre de santé de base Sfax", "governorate": "SFX", "sector": "public"}
    values.update(overrides)
    return providers.create_facility(session, actor=ACTOR, data=FacilityIn(**values))


def professional(session: Session, **overrides):
    values = {"iban": iban(), "licence": f"L{next(_counter):06d}", "kind": "general_practitioner", "family_doctor": True,
              "name_ar": "د. سامي الطرابلسي", "name_lat": "Dr Sami Trabelsi", "governorate": "SFX", "sector": "private",
              "contract_status": "active", "tax_regime": "actual"}
    values.update(overrides)
    return providers.create_professional(session, actor=ACTOR, data=ProfessionalIn(**values))


def agent_token(session: Session, *roles: str) -> str:
    username = f"agent{next(_counter)}"
    create_agent(session, actor=ACTOR, username=username, full_name=username, password="correct horse battery",
                 roles=list(roles))
    token, _, _ = login(session, username=username, password="correct horse battery", hours=1)
    return token
