"""Registry tables: persons, insured members, dependants, coverage, chronic conditions, Amen, providers.

Primary keys of persons, members and dependants are UUIDs derived from their natural keys
(`natural_uuid`), so a bulk import can upsert a whole family without reading anything back.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from labes.db import Base

# Binary ordering ("C" collation) makes `key >= :q AND key < :q || '\uffff'` a prefix search on a b-tree.
SearchKey = String(200).with_variant(String(200, collation="C"), "postgresql")

_NAMESPACE_BYTES = uuid.UUID("5b0e7f2a-6c1d-4c3e-9a57-2f1b9d0c4a11").bytes


def natural_id(kind: str, key: str) -> str:
    """Return the stable id of the `kind` row whose natural key is `key`, as 32 hex digits (a UUID version 5).

    Bulk imports use this text form directly: it is how SQLite stores a UUID and PostgreSQL reads one.
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{kind}:{key}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest.hex()


def natural_uuid(kind: str, key: str) -> uuid.UUID:
    """Return the stable id of the `kind` row whose natural key is `key`."""
    return uuid.UUID(hex=natural_id(kind, key))


class Person(Base):
    """A natural person: an insured member, a dependant or an Amen beneficiary."""

    __tablename__ = "person"
    __table_args__ = (
        Index("ix_person_search_lat", "search_lat"),
        Index("ix_person_search_ar", "search_ar"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    cin: Mapped[str | None] = mapped_column(String(8), unique=True)
    first_name_ar: Mapped[str] = mapped_column(String(80))
    last_name_ar: Mapped[str] = mapped_column(String(80))
    first_name_lat: Mapped[str] = mapped_column(String(80))
    last_name_lat: Mapped[str] = mapped_column(String(80))
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1))
    phone: Mapped[str | None] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(2), default="ar")
    governorate: Mapped[str] = mapped_column(String(3))
    delegation: Mapped[str | None] = mapped_column(String(80))
    address: Mapped[str | None] = mapped_column(String(200))
    death_date: Mapped[date | None] = mapped_column(Date)
    iban: Mapped[str | None] = mapped_column(String(34))  # where reimbursements go (identifiers.normalize_iban)
    search_lat: Mapped[str] = mapped_column(SearchKey)
    search_ar: Mapped[str] = mapped_column(SearchKey)


class Member(Base):
    """An insured member (assuré social) affiliated through a regime."""

    __tablename__ = "member"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id"), unique=True)
    social_id: Mapped[str] = mapped_column(String(11), unique=True)
    regime: Mapped[str] = mapped_column(String(8))
    employer: Mapped[str | None] = mapped_column(String(200))
    employer_tax_id: Mapped[str | None] = mapped_column(String(20))
    affiliation_start: Mapped[date] = mapped_column(Date)
    affiliation_end: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10))


class Dependant(Base):
    """A person in a member's charge (ayant droit): spouse, child, father or mother."""

    __tablename__ = "dependant"
    __table_args__ = (UniqueConstraint("member_id", "relationship", "rank"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member.id"))
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id"), index=True)
    relationship: Mapped[str] = mapped_column(String(8))
    rank: Mapped[int] = mapped_column(Integer)
    student_until: Mapped[date | None] = mapped_column(Date)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    unmarried_no_income: Mapped[bool] = mapped_column(Boolean, default=False)
    evidence: Mapped[str | None] = mapped_column(String(80))
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)


class CoveragePeriod(Base):
    """The family's care scheme (filière, منظومة العلاج) from `start_date`; the latest start wins."""

    __tablename__ = "coverage_period"
    __table_args__ = (UniqueConstraint("member_id", "start_date"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member.id"))
    scheme: Mapped[str] = mapped_column(String(16))
    start_date: Mapped[date] = mapped_column(Date)
    family_doctor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("professional.id"))
    reason: Mapped[str | None] = mapped_column(String(200))


class ChronicCondition(Base):
    """A chronic disease from the official APCI list, approved for a person over a period."""

    __tablename__ = "chronic_condition"
    __table_args__ = (UniqueConstraint("person_id", "code", "valid_from"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id"))
    code: Mapped[str] = mapped_column(String(2))
    icd10: Mapped[str] = mapped_column(String(8))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)


class AmenHousehold(Base):
    """A household of the Amen social safety-net programme (one social identifier per family)."""

    __tablename__ = "amen_household"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    number: Mapped[str] = mapped_column(String(12), unique=True)
    level: Mapped[str] = mapped_column(String(8))  # free (AMG1, white card) or reduced (AMG2, yellow card)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    governorate: Mapped[str] = mapped_column(String(3))


class AmenMember(Base):
    """A person belonging to an Amen household."""

    __tablename__ = "amen_member"
    __table_args__ = (UniqueConstraint("household_id", "person_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    household_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("amen_household.id"))
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id"), index=True)
    head: Mapped[bool] = mapped_column(Boolean, default=False)


class ProviderDetails:
    """Where a provider is, its sector, its contract with the fund, its tax ID and bank account (facilities and
    professionals)."""

    governorate: Mapped[str] = mapped_column(String(3), index=True)
    delegation: Mapped[str | None] = mapped_column(String(80))
    address: Mapped[str | None] = mapped_column(String(200))
    sector: Mapped[str] = mapped_column(String(8))
    contract_number: Mapped[str | None] = mapped_column(String(20))
    contract_start: Mapped[date | None] = mapped_column(Date)
    contract_end: Mapped[date | None] = mapped_column(Date)
    contract_status: Mapped[str | None] = mapped_column(String(10))
    tax_id: Mapped[str | None] = mapped_column(String(20))
    iban: Mapped[str | None] = mapped_column(String(34))  # where the fund pays it (identifiers.normalize_iban)


class Facility(ProviderDetails, Base):
    """A place of care: health centre, hospital, CNSS polyclinic, clinic, pharmacy, laboratory, imaging centre."""

    __tablename__ = "facility"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    name_ar: Mapped[str] = mapped_column(String(200))
    name_lat: Mapped[str] = mapped_column(String(200))
    search_lat: Mapped[str] = mapped_column(SearchKey, index=True)


class Professional(ProviderDetails, Base):
    """A health professional: doctor (GP, specialist, family doctor), dentist, pharmacist, biologist…"""

    __tablename__ = "professional"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    licence: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    specialty: Mapped[str | None] = mapped_column(String(40))
    family_doctor: Mapped[bool] = mapped_column(Boolean, default=False)
    cin: Mapped[str | None] = mapped_column(String(8))
    name_ar: Mapped[str] = mapped_column(String(200))
    name_lat: Mapped[str] = mapped_column(String(200))
    tax_regime: Mapped[str | None] = mapped_column(String(8))
    search_lat: Mapped[str] = mapped_column(SearchKey, index=True)


class Practice(Base):
    """A professional practises at a facility."""

    __tablename__ = "practice"
    __table_args__ = (UniqueConstraint("professional_id", "facility_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    professional_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("professional.id"))
    facility_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("facility.id"), index=True)
