"""Builders of care sheets, patients and providers for the adjudication tests (no database)."""

from __future__ import annotations

from datetime import date

from labes.claims.adjudication import (
    Approval, Claim, ClaimLine, Decision, PatientContext, ProviderContext, Usage, adjudicate,
)
from labes.claims.ruleset import ruleset

ON = date(2025, 6, 2)  # the 2023 grid, the 2025 medicine list, before the pharmacists' suspension
FAMILY_DOCTOR = "D-FAMILY"


def act(code: str, quantity: int = 1, price: int | None = None, *, on: date = ON, prescribed: int | None = None
        ) -> ClaimLine:
    """Return a line billing an act at its tariff unless `price` is given."""
    unit = ruleset(on).acts[code].tariff_millimes if price is None else price
    return ClaimLine(code, "act", quantity, unit, prescribed)


def drug(code: str, quantity: int = 1, price: int | None = None, *, on: date = ON) -> ClaimLine:
    """Return a line dispensing a medicine at its public price unless `price` is given."""
    unit = ruleset(on).drugs[code].public_price_millimes if price is None else price
    return ClaimLine(code, "drug", quantity, unit)


def sheet(*lines: ClaimLine, kind: str = "consultation", care: date = ON, last: date | None = None,
          submitted: date | None = None, number: str = "BS-0001", **kwargs) -> Claim:
    """Return a care sheet, submitted on its last date of care unless told."""
    last = last or care
    return Claim(number=number, care_date=care, last_care_date=last, submitted_on=submitted or last, kind=kind,
                 lines=lines, **kwargs)


def approval(code: str, *, number: str = "AP-1", valid_from: date = ON, valid_to: date = ON) -> Approval:
    """Return a prior approval for one code."""
    return Approval(number, code, valid_from, valid_to)


def patient(scheme: str | None = "private", **kwargs) -> PatientContext:
    """Return a covered CNSS patient of `scheme` whose family doctor is FAMILY_DOCTOR."""
    kwargs.setdefault("regime", "CNSS" if scheme else None)
    kwargs.setdefault("covered", True)
    kwargs.setdefault("family_doctor_id", FAMILY_DOCTOR if scheme == "private" else None)
    return PatientContext(scheme=scheme, **kwargs)


def provider(category: str = "doctor", *, kind: str | None = "general_practitioner", specialty: str | None = None,
             professional: str | None = FAMILY_DOCTOR, sector: str = "private", facility: str = "private_clinic",
             contract: bool = True, tax: str = "actual") -> ProviderContext:
    """Return a contracted provider; by default the family doctor's private practice."""
    return ProviderContext(category=category, professional_kind=kind, specialty=specialty,
                           professional_id=professional, facility_sector=sector, facility_kind=facility,
                           contract_active=contract, tax_regime=tax)


def family_doctor() -> ProviderContext:
    return provider()


def other_gp() -> ProviderContext:
    return provider(professional="D-OTHER")


def specialist(specialty: str = "cardiology") -> ProviderContext:
    return provider(kind="specialist", specialty=specialty, professional="D-SPEC")


def dentist() -> ProviderContext:
    return provider("dentist", kind="dentist", professional="D-DENT")


def pharmacy(sector: str = "private") -> ProviderContext:
    return provider("pharmacy", kind="pharmacist", professional="PH-1", sector=sector,
                    facility="pharmacy" if sector == "private" else "regional_hospital")


def laboratory() -> ProviderContext:
    return provider("laboratory", kind="biologist", professional="BIO-1", facility="laboratory")


def imaging_centre(sector: str = "private") -> ProviderContext:
    return provider("imaging", kind="radiologist", professional="RAD-1", sector=sector,
                    facility="imaging_centre" if sector == "private" else "regional_hospital")


def health_centre() -> ProviderContext:
    return provider(professional="D-PUBLIC", sector="public", facility="primary_health_centre")


def public_hospital() -> ProviderContext:
    return provider("hospital", kind="specialist", specialty="general_surgery", professional="D-HOSP",
                    sector="public", facility="regional_hospital")


def clinic() -> ProviderContext:
    return provider("clinic", kind="specialist", specialty="cardiology", professional="D-CLIN",
                    facility="private_clinic")


def decide(claim: Claim, who: PatientContext, by: ProviderContext, usage: Usage | None = None) -> Decision:
    """Adjudicate with the rules in force on the date of care."""
    return adjudicate(claim, who, by, usage or Usage(), ruleset(claim.care_date))
