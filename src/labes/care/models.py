"""Tables of the point of care: used challenges, numbers, visits, e-prescriptions, dispensing, care sheets, family usage."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from labes.db import Base

Millimes = BigInteger().with_variant(Integer, "sqlite")

PRESCRIPTION_KINDS = ("medicines", "lab", "imaging")
PRESCRIPTION_STATES = ("issued", "in_progress", "partly_dispensed", "completed", "cancelled", "expired")
CARE_SHEET_KINDS = ("consultation", "dental", "pharmacy", "lab", "imaging", "hospital", "physio")
CARE_SHEET_STATUSES = ("received", "accepted", "rejected", "paid")


class UsedChallenge(Base):
    """A challenge that has been used once; a second use is a replay. Rows past expiry are purged."""

    __tablename__ = "used_challenge"

    nonce: Mapped[str] = mapped_column(String(24), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class NumberCounter(Base):
    """The next human-readable number per series and year (care sheets, prescriptions, visits…)."""

    __tablename__ = "number_counter"

    series: Mapped[str] = mapped_column(String(16), primary_key=True)
    next_number: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class Visit(Base):
    """A consultation: who saw whom, where, when, with the diagnoses (ICD-10) and acts (the fund's nomenclature)."""

    __tablename__ = "visit"
    __table_args__ = (Index("ix_visit_patient_date", "patient_person_id", "care_date"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    patient_person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id"))
    professional_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("professional.id"), index=True)
    facility_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("facility.id"))
    care_date: Mapped[date] = mapped_column(Date)
    diagnoses: Mapped[list[str]] = mapped_column(JSON)
    acts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    referral_to: Mapped[str | None] = mapped_column(String(40))  # a specialty, when the family doctor refers
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Prescription(Base):
    """An e-prescription (ordonnance électronique, الوصفة الإلكترونية): medicines, or lab or imaging orders.

    The content the two cards signed is kept with its digest and the signed transaction, so any later
    change is detectable. The patient's QR code carries the number and a one-time access code, of which
    only a hash is stored.
    """

    __tablename__ = "prescription"
    __table_args__ = (Index("ix_prescription_patient", "patient_person_id", "issued_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(16))
    patient_person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id"))
    prescriber_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("professional.id"), index=True)
    facility_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("facility.id"))
    visit_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("visit.id"))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[date] = mapped_column(Date)
    diagnoses: Mapped[list[str]] = mapped_column(JSON)
    access_code_hash: Mapped[str] = mapped_column(String(64))
    access_code_used: Mapped[bool] = mapped_column(Boolean, default=False)
    dispenser_facility_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("facility.id"))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_digest: Mapped[str] = mapped_column(String(60))
    signed_transaction: Mapped[dict[str, Any]] = mapped_column(JSON)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_reason: Mapped[str | None] = mapped_column(String(200))


class PrescriptionLine(Base):
    """One line of a prescription and how much of it has been dispensed (never more than prescribed)."""

    __tablename__ = "prescription_line"
    __table_args__ = (UniqueConstraint("prescription_id", "line_no"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    prescription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescription.id"))
    line_no: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(12))  # a drug code (PCT) or an act code for lab and imaging orders
    quantity: Mapped[int] = mapped_column(Integer)  # boxes (or acts) per fill
    fills: Mapped[int] = mapped_column(Integer)  # 1 + renewals
    dose: Mapped[str | None] = mapped_column(String(200))
    duration_days: Mapped[int | None] = mapped_column(Integer)
    substitutable: Mapped[bool] = mapped_column(Boolean, default=True)
    dispensed: Mapped[int] = mapped_column(Integer, default=0)


class Dispensation(Base):
    """One delivery of medicines (or performance of ordered acts) against a prescription."""

    __tablename__ = "dispensation"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    prescription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescription.id"), index=True)
    facility_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("facility.id"))
    professional_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("professional.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class CareSheet(Base):
    """The electronic care sheet (bulletin de soins, ورقة العلاج) sent to the fund, with the fund's decision.

    `client_key` makes submission idempotent: the same key returns the same sheet, never a second one.
    A rejected sheet is corrected under its own number; earlier versions stay in `care_sheet_revision`.
    """

    __tablename__ = "care_sheet"
    __table_args__ = (
        Index("ix_care_sheet_payee_status", "payee_kind", "payee_id", "status"),
        Index("ix_care_sheet_member_year", "member_id", "care_date"),
        Index("ix_care_sheet_patient", "patient_person_id", "care_date"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    client_key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(12))
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(10))
    patient_person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id"))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("member.id"))  # the family whose ceiling it uses
    amen_household_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("amen_household.id"))
    professional_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("professional.id"), index=True)
    facility_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("facility.id"), index=True)
    # Indexed: a referral is found by joining the family doctor's visits to their accepted sheets.
    visit_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("visit.id"), index=True)
    # The visit the sheet bills: set with its sheet, it is written first and its number answered without a read.
    visit: Mapped[Visit | None] = relationship()
    dispensation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("dispensation.id"))
    care_date: Mapped[date] = mapped_column(Date)
    last_care_date: Mapped[date] = mapped_column(Date)
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_digest: Mapped[str] = mapped_column(String(60))
    signed_transaction: Mapped[dict[str, Any]] = mapped_column(JSON)
    billed_millimes: Mapped[int] = mapped_column(Millimes, default=0)
    fund_millimes: Mapped[int] = mapped_column(Millimes, default=0)
    patient_millimes: Mapped[int] = mapped_column(Millimes, default=0)
    ceiling_charged_millimes: Mapped[int] = mapped_column(Millimes, default=0)
    copay_charged_millimes: Mapped[int] = mapped_column(Millimes, default=0)
    payee: Mapped[str | None] = mapped_column(String(10))  # provider, facility, insured
    payee_kind: Mapped[str | None] = mapped_column(String(12))  # professional, facility, person
    payee_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    payment_due_on: Mapped[date | None] = mapped_column(Date)
    statement_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    paid_on: Mapped[date | None] = mapped_column(Date)


class CareSheetRevision(Base):
    """An earlier version of a corrected care sheet, kept as it was submitted and decided."""

    __tablename__ = "care_sheet_revision"
    __table_args__ = (UniqueConstraint("care_sheet_id", "version"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    care_sheet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("care_sheet.id"))
    version: Mapped[int] = mapped_column(Integer)
    client_key: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    signed_transaction: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class FamilyUsage(Base):
    """What a family has consumed in a calendar year: of its annual ceiling, and of the public-scheme copayment cap.

    One row per family and year, updated under a row lock by each accepted care sheet, so two sheets
    adjudicated at the same moment can never both spend the same remainder.
    """

    __tablename__ = "family_usage"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member.id"), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    ceiling_used_millimes: Mapped[int] = mapped_column(Millimes, default=0)
    copay_used_millimes: Mapped[int] = mapped_column(Millimes, default=0)
    care_sheets: Mapped[int] = mapped_column(Integer, default=0)
