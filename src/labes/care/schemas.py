"""API shapes of the point of care: the signed envelope, each action's content, and the answers."""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from labes.schemas import Schema

ICD10 = r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$"
ClientKey = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$",
                  description="Chosen by the terminal (a UUID): the same key returns the same answer, never a second record")


class ChallengeRead(Schema):
    challenge: str
    expires_at: datetime


# ---------------------------------------------------------------- contents (what the cards sign a digest of)


class Content(Schema):
    """Base of a signed content: unknown fields refused, so nothing unsigned can ride along."""


class InsuredCareSheetsContent(Content):
    since: date | None = Field(default=None, description="Sheets with a date of care from this day (default: a year back)")


class RightsCheckContent(Content):
    act: str | None = Field(default=None, max_length=12, description="Price this act instead of the facility's standard one")


class Line(Content):
    code: str = Field(min_length=1, max_length=12, description="An act of the nomenclature or a drug code (PCT)")
    quantity: int = Field(default=1, ge=1, le=1000)
    unit_price_millimes: int | None = Field(default=None, ge=0, le=100_000_000,
                                            description="What the provider bills per unit; default the tariff or public price")


class CareSheetContent(Content):
    """An electronic care sheet (bulletin de soins)."""

    corrects_a_sheet: ClassVar[bool] = False  # a correction may be a pharmacy's (see CareSheetCorrectionContent)

    client_key: str = ClientKey
    kind: Literal["consultation", "dental", "pharmacy", "lab", "imaging", "hospital", "physio"]
    care_date: date
    last_care_date: date | None = None
    diagnoses: list[str] = Field(default_factory=list, max_length=20)
    lines: list[Line] = Field(min_length=1, max_length=100)
    approval: str | None = Field(default=None, max_length=20, description="The prior-approval number, for listed acts and drugs")
    referral_to: str | None = Field(default=None, max_length=40, description="A family doctor's referral to a specialty")

    @field_validator("diagnoses")
    @classmethod
    def _icd10(cls, value: list[str]) -> list[str]:
        import re
        for code in value:
            if not re.fullmatch(ICD10, code):
                raise ValueError(f"{code!r} is not an ICD-10 code (e.g. E11 or E11.9)")
        return value

    @model_validator(mode="after")
    def _dates(self) -> "CareSheetContent":
        if self.last_care_date is not None and self.last_care_date < self.care_date:
            raise ValueError("last_care_date is before care_date")
        if self.kind == "pharmacy" and not self.corrects_a_sheet:
            raise ValueError("a pharmacy care sheet is made by dispensing (POST /api/v1/care/dispensations)")
        return self


class CareSheetCorrectionContent(CareSheetContent):
    """A rejected care sheet, corrected: a pharmacy's too (it bills what was dispensed, with the approval it lacked)."""

    corrects_a_sheet: ClassVar[bool] = True


class PrescriptionLineIn(Content):
    code: str = Field(min_length=1, max_length=12)
    quantity: int = Field(default=1, ge=1, le=100, description="Boxes (or acts) per fill")
    renewals: int = Field(default=0, ge=0, le=11)
    dose: str | None = Field(default=None, max_length=200)
    duration_days: int | None = Field(default=None, ge=1, le=366)
    substitutable: bool = True


class PrescriptionContent(Content):
    kind: Literal["medicines", "lab", "imaging"] = "medicines"
    diagnoses: list[str] = Field(default_factory=list, max_length=20)
    lines: list[PrescriptionLineIn] = Field(min_length=1, max_length=30)
    valid_days: int = Field(default=90, ge=1, le=365)
    visit: str | None = Field(default=None, max_length=20, description="The care sheet or visit number it follows")

    _icd10 = field_validator("diagnoses")(CareSheetContent._icd10.__func__)


class PrescriptionOpenContent(Content):
    prescription: str = Field(max_length=20)
    access_code: str | None = Field(default=None, max_length=12, description="From the patient's QR code, when the card is not there")


class PrescriptionCancelContent(Content):
    prescription: str = Field(max_length=20)
    reason: str = Field(min_length=3, max_length=200)


class DispensedLine(Content):
    line_no: int = Field(ge=1)
    code: str | None = Field(default=None, max_length=12, description="The drug given, if a generic of the same group replaces the prescribed one")
    quantity: int = Field(ge=1, le=100)
    unit_price_millimes: int | None = Field(default=None, ge=0, le=100_000_000)


class DispenseContent(Content):
    client_key: str = ClientKey
    prescription: str = Field(max_length=20)
    lines: list[DispensedLine] = Field(min_length=1, max_length=30)
    approval: str | None = Field(default=None, max_length=20, description="The prior-approval number, for listed drugs")


class ApprovalRequestContent(Content):
    code: str = Field(max_length=12)
    quantity: int = Field(default=1, ge=1, le=100)
    justification: str = Field(min_length=5, max_length=2000)
    diagnoses: list[str] = Field(default_factory=list, max_length=20)

    _icd10 = field_validator("diagnoses")(CareSheetContent._icd10.__func__)


class StatusQueryContent(Content):
    numbers: list[str] = Field(default_factory=list, max_length=100)
    since: date | None = None
