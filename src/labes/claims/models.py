"""Tables of the claims domain: prior approvals, payment runs, provider statements."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, DateTime, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from labes.db import Base

Millimes = BigInteger().with_variant(Integer, "sqlite")


class PriorApproval(Base):
    """A prior approval (accord préalable, الموافقة المسبقة): a provider's request, an agent's decision, a number."""

    __tablename__ = "prior_approval"
    __table_args__ = (Index("ix_prior_approval_patient", "patient_person_id", "code"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    patient_person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id"))
    code: Mapped[str] = mapped_column(String(12))  # the act or drug code
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    justification: Mapped[str] = mapped_column(Text)
    diagnoses: Mapped[list[str]] = mapped_column(JSON, default=list)
    requested_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("professional.id"))
    facility_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("facility.id"))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(10))  # requested, approved, refused, used (by an accepted sheet)
    decided_by: Mapped[str | None] = mapped_column(String(160))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_note: Mapped[str | None] = mapped_column(Text)
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)


class PaymentRun(Base):
    """One run of provider payments for a period; re-running the period pays only what is still unpaid."""

    __tablename__ = "payment_run"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    period: Mapped[str] = mapped_column(String(7), index=True)  # YYYY-MM of the care sheets' acceptance
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_by: Mapped[str] = mapped_column(String(160))
    statements: Mapped[int] = mapped_column(Integer, default=0)
    care_sheets: Mapped[int] = mapped_column(Integer, default=0)
    gross_millimes: Mapped[int] = mapped_column(Millimes, default=0)
    tax_withheld_millimes: Mapped[int] = mapped_column(Millimes, default=0)
    net_millimes: Mapped[int] = mapped_column(Millimes, default=0)


class ProviderStatement(Base):
    """What one payee is paid in one run: its accepted care sheets, the gross, the tax withheld at source, the net."""

    __tablename__ = "provider_statement"
    __table_args__ = (Index("ix_provider_statement_payee", "payee_kind", "payee_id", "paid_on"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payment_run.id"), index=True)
    payee_kind: Mapped[str] = mapped_column(String(12))  # professional, facility, person
    payee_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    payee_name: Mapped[str] = mapped_column(String(200))
    payee_tax_id: Mapped[str | None] = mapped_column(String(20))
    payee_iban: Mapped[str | None] = mapped_column(String(34))  # the account paid (a transfer); none: a postal order
    tax_regime: Mapped[str | None] = mapped_column(String(8))
    tax_rate_permille: Mapped[int] = mapped_column(Integer, default=0)
    care_sheets: Mapped[int] = mapped_column(Integer)
    gross_millimes: Mapped[int] = mapped_column(Millimes)
    tax_withheld_millimes: Mapped[int] = mapped_column(Millimes)
    net_millimes: Mapped[int] = mapped_column(Millimes)
    paid_on: Mapped[date] = mapped_column(Date)
    late_sheets: Mapped[int] = mapped_column(Integer, default=0)  # sheets paid after the fund's deadline
    details: Mapped[dict | None] = mapped_column(JSON)
