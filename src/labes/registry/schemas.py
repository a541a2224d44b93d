"""API shapes of the registry. Identifiers are validated here, so services receive clean values."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from labes.registry import identifiers
from labes.registry.rules import (
    AMEN_LEVELS, CARE_SCHEMES, CONTRACT_STATUSES, FACILITY_KINDS, MEMBER_STATUSES, PROFESSIONAL_KINDS, REGIMES,
    RELATIONSHIPS, TAX_REGIMES,
)
from labes.registry.reference import chronic_disease_codes, governorate_codes
from labes.schemas import Schema


def _governorate(value: str) -> str:
    value = value.upper()
    if value not in governorate_codes():
        raise ValueError(f"Unknown governorate {value!r}; use one of the 24 codes: {', '.join(sorted(governorate_codes()))}.")
    return value


def _phone(value: str) -> str:
    digits = identifiers.ascii_digits(value).replace(" ", "")
    if digits.startswith("00216"):
        digits = "+" + digits[2:]
    if not digits.startswith("+"):
        digits = "+216" + digits
    if not (digits.startswith("+216") and len(digits) == 12 and digits[1:].isdigit()):
        raise ValueError(f"A Tunisian phone number is +216 followed by 8 digits; got {value!r}.")
    return digits


def one_of(choices: tuple[str, ...], what: str):
    """Return a validator that accepts only `choices`, naming them in the error."""

    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"Unknown {what} {value!r}; expected one of: {', '.join(choices)}.")
        return value

    return AfterValidator(check)


def _present(value):
    if value is None:
        raise ValueError("cannot be null; leave the field out to keep its current value.")
    return value


def refuse_null(*fields: str):
    """Return a validator refusing an explicit null for `fields` of an update (they can change, never be erased)."""
    return field_validator(*fields)(_present)


# identifiers.IdentifierError is a ValueError: pydantic reports its message as the field's error.
Cin = Annotated[str, AfterValidator(identifiers.normalize_cin)]
SocialId = Annotated[str, AfterValidator(identifiers.normalize_social_id)]
Governorate = Annotated[str, AfterValidator(_governorate)]
Phone = Annotated[str, AfterValidator(_phone)]
Iban = Annotated[str, AfterValidator(identifiers.normalize_iban), Field(
    description="Bank account the fund pays into: a Tunisian IBAN (TN59 1000 6035 1835 9847 8831) or the 20-digit "
                "RIB; stored as the compact IBAN", examples=["TN5910006035183598478831"])]
Name = Annotated[str, Field(min_length=1, max_length=80)]
Regime = Annotated[str, one_of(REGIMES, "regime")]
MemberStatus = Annotated[str, one_of(MEMBER_STATUSES, "status")]
CareScheme = Annotated[str, one_of(CARE_SCHEMES, "care scheme")]
Relationship = Annotated[str, one_of(RELATIONSHIPS, "relationship")]
AmenLevel = Annotated[str, one_of(AMEN_LEVELS, "Amen level")]
FacilityKind = Annotated[str, one_of(FACILITY_KINDS, "facility kind")]
ProfessionalKind = Annotated[str, one_of(PROFESSIONAL_KINDS, "professional kind")]
ContractStatus = Annotated[str, one_of(CONTRACT_STATUSES, "contract status")]
TaxRegime = Annotated[str, one_of(TAX_REGIMES, "tax regime")]
Sector = Literal["public", "private"]


class PersonIn(Schema):
    cin: Cin | None = None
    first_name_ar: Name
    last_name_ar: Name
    first_name_lat: Name
    last_name_lat: Name
    birth_date: date
    sex: Literal["M", "F"]
    phone: Phone | None = None
    language: Literal["ar", "fr"] = "ar"
    governorate: Governorate
    delegation: str | None = Field(default=None, max_length=80)
    address: str | None = Field(default=None, max_length=200)
    iban: Iban | None = None

    @model_validator(mode="after")
    def _not_born_in_future(self) -> "PersonIn":
        if self.birth_date > date.today():
            raise ValueError("birth_date is in the future.")
        return self


class PersonUpdate(Schema):
    cin: Cin | None = None
    first_name_ar: Name | None = None
    last_name_ar: Name | None = None
    first_name_lat: Name | None = None
    last_name_lat: Name | None = None
    birth_date: date | None = None
    sex: Literal["M", "F"] | None = None
    phone: Phone | None = None
    language: Literal["ar", "fr"] | None = None
    governorate: Governorate | None = None
    delegation: str | None = Field(default=None, max_length=80)
    address: str | None = Field(default=None, max_length=200)
    death_date: date | None = None
    iban: Iban | None = Field(default=None, description="null removes it: reimbursements then go by postal order")

    _required = refuse_null("first_name_ar", "last_name_ar", "first_name_lat", "last_name_lat", "birth_date", "sex",
                            "language", "governorate")


class PersonRead(Schema):
    model_config = Schema.model_config | {"extra": "ignore"}
    id: uuid.UUID
    cin: str | None
    first_name_ar: str
    last_name_ar: str
    first_name_lat: str
    last_name_lat: str
    birth_date: date
    sex: str
    phone: str | None
    language: str
    governorate: str
    delegation: str | None
    address: str | None
    death_date: date | None
    iban: str | None = Field(default=None, description="The account reimbursements go to, masked (TN59 •••• 8831): "
                                                       "agents who read the registry never pay anyone")

    @field_validator("iban")
    @classmethod
    def _masked(cls, value: str | None) -> str | None:
        return identifiers.masked_iban(value) if value else value


class Rights(Schema):
    covered: bool
    reason: str
    until: date | None
    on: date


class MemberCreate(Schema):
    person: PersonIn
    social_id: SocialId
    regime: Regime
    employer: str | None = Field(default=None, max_length=200)
    employer_tax_id: str | None = Field(default=None, max_length=20)
    affiliation_start: date
    affiliation_end: date | None = None
    status: MemberStatus = "active"
    care_scheme: CareScheme
    scheme_since: date
    family_doctor_licence: str | None = None


class MemberUpdate(Schema):
    regime: Regime | None = None
    employer: str | None = Field(default=None, max_length=200)
    employer_tax_id: str | None = Field(default=None, max_length=20)
    affiliation_start: date | None = None
    affiliation_end: date | None = None
    status: MemberStatus | None = None

    _required = refuse_null("regime", "affiliation_start", "status")


class MemberRead(Schema):
    model_config = Schema.model_config | {"extra": "ignore"}
    social_id: str
    regime: str
    employer: str | None
    employer_tax_id: str | None
    affiliation_start: date
    affiliation_end: date | None
    status: str
    person: PersonRead


class DependantCreate(Schema):
    person: PersonIn
    relationship: Relationship
    rank: int | None = Field(default=None, ge=1, le=99, description="Child n°; default: the next free one")
    student_until: date | None = None
    disabled: bool = False
    unmarried_no_income: bool = False
    evidence: str | None = Field(default=None, max_length=80)
    start_date: date | None = None

    @model_validator(mode="after")
    def _evidence_for_exceptions(self) -> "DependantCreate":
        if (self.disabled or self.student_until or self.unmarried_no_income) and not self.evidence:
            raise ValueError("evidence (the certificate's reference) is required for a student, disabled or unmarried-daughter dependant.")
        return self


class DependantUpdate(Schema):
    student_until: date | None = None
    disabled: bool | None = None
    unmarried_no_income: bool | None = None
    evidence: str | None = Field(default=None, max_length=80)
    end_date: date | None = None

    _required = refuse_null("disabled", "unmarried_no_income")


class DependantRead(Schema):
    model_config = Schema.model_config | {"extra": "ignore"}
    id: uuid.UUID
    relationship: str
    rank: int
    student_until: date | None
    disabled: bool
    unmarried_no_income: bool
    evidence: str | None
    start_date: date | None
    end_date: date | None
    person: PersonRead
    rights: Rights


class CareSchemeChange(Schema):
    scheme: CareScheme
    start_date: date
    family_doctor_licence: str | None = None
    reason: str | None = Field(default=None, max_length=200)


class CoverageRead(Schema):
    model_config = Schema.model_config | {"extra": "ignore"}
    scheme: str
    start_date: date
    family_doctor_licence: str | None
    family_doctor_name: str | None
    reason: str | None


class ChronicConditionCreate(Schema):
    code: str
    icd10: str = Field(min_length=3, max_length=8)
    valid_from: date
    valid_to: date | None = None

    @model_validator(mode="after")
    def _known(self) -> "ChronicConditionCreate":
        if self.code not in chronic_disease_codes():
            raise ValueError(f"Unknown chronic disease code {self.code!r}; the official list runs 01 to 24.")
        if self.valid_to and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from.")
        return self


class ChronicConditionRead(Schema):
    model_config = Schema.model_config | {"extra": "ignore"}
    id: uuid.UUID
    code: str
    name: str
    icd10: str
    valid_from: date
    valid_to: date | None
    active: bool


class AmenHouseholdCreate(Schema):
    number: str = Field(min_length=4, max_length=12)
    level: AmenLevel
    valid_from: date
    valid_to: date | None = None
    governorate: Governorate
    member_cins: list[Cin] = Field(default_factory=list, description="CINs of the household's members; the first is the head")

    @field_validator("member_cins")
    @classmethod
    def _distinct(cls, cins: list[str]) -> list[str]:
        repeated = sorted({cin for cin in cins if cins.count(cin) > 1})
        if repeated:
            raise ValueError(f"The CIN {', '.join(repeated)} is listed more than once.")
        return cins


class AmenHouseholdRead(Schema):
    model_config = Schema.model_config | {"extra": "ignore"}
    number: str
    level: str
    valid_from: date
    valid_to: date | None
    governorate: str
    members: list[PersonRead]
    rights: Rights


class FamilyPerson(Schema):
    role: str  # insured, spouse, child, father, mother
    rank: int
    person: PersonRead
    rights: Rights
    chronic_conditions: list[ChronicConditionRead]
    dependant_id: uuid.UUID | None = None
    student_until: date | None = None
    disabled: bool = False
    evidence: str | None = None


class FamilyRead(Schema):
    social_id: str
    regime: str
    employer: str | None
    affiliation_start: date
    affiliation_end: date | None
    status: str
    care_scheme: CoverageRead | None
    coverage_history: list[CoverageRead]
    people: list[FamilyPerson]
    amen: AmenHouseholdRead | None
    beneficiaries_covered: int


class PersonHit(Schema):
    id: uuid.UUID
    cin: str | None
    first_name_ar: str
    last_name_ar: str
    first_name_lat: str
    last_name_lat: str
    birth_date: date
    governorate: str
    family_social_id: str | None
    role: str | None


class Contract(Schema):
    contract_number: str | None = Field(default=None, max_length=20)
    contract_start: date | None = None
    contract_end: date | None = None
    contract_status: ContractStatus | None = None


class FacilityIn(Contract):
    code: str = Field(min_length=2, max_length=16)
    kind: FacilityKind
    name_ar: str = Field(min_length=1, max_length=200)
    name_lat: str = Field(min_length=1, max_length=200)
    governorate: Governorate
    delegation: str | None = Field(default=None, max_length=80)
    address: str | None = Field(default=None, max_length=200)
    sector: Sector
    tax_id: str | None = Field(default=None, max_length=20)
    iban: Iban | None = None


class FacilityUpdate(Contract):
    name_ar: str | None = Field(default=None, min_length=1, max_length=200)
    name_lat: str | None = Field(default=None, min_length=1, max_length=200)
    delegation: str | None = Field(default=None, max_length=80)
    address: str | None = Field(default=None, max_length=200)
    tax_id: str | None = Field(default=None, max_length=20)
    iban: Iban | None = None

    _required = refuse_null("name_ar", "name_lat")


class FacilityRead(FacilityIn):
    model_config = Schema.model_config | {"extra": "ignore"}
    id: uuid.UUID
    iban: str | None = None  # as stored (checked when it was recorded): a read never fails on it


class ProfessionalIn(Contract):
    licence: str = Field(min_length=2, max_length=16)
    kind: ProfessionalKind
    specialty: str | None = Field(default=None, max_length=40)
    family_doctor: bool = False
    cin: Cin | None = None
    name_ar: str = Field(min_length=1, max_length=200)
    name_lat: str = Field(min_length=1, max_length=200)
    governorate: Governorate
    delegation: str | None = Field(default=None, max_length=80)
    address: str | None = Field(default=None, max_length=200)
    sector: Sector
    tax_id: str | None = Field(default=None, max_length=20)
    iban: Iban | None = None
    tax_regime: TaxRegime | None = None

    @model_validator(mode="after")
    def _coherent(self) -> "ProfessionalIn":
        if self.kind == "specialist" and not self.specialty:
            raise ValueError("specialty is required for a specialist.")
        if self.family_doctor and self.kind != "general_practitioner":
            raise ValueError("Only a general practitioner can be a family doctor.")
        return self


class ProfessionalUpdate(Contract):
    family_doctor: bool | None = None
    name_ar: str | None = Field(default=None, min_length=1, max_length=200)
    name_lat: str | None = Field(default=None, min_length=1, max_length=200)
    delegation: str | None = Field(default=None, max_length=80)
    address: str | None = Field(default=None, max_length=200)
    tax_id: str | None = Field(default=None, max_length=20)
    iban: Iban | None = None
    tax_regime: TaxRegime | None = None

    _required = refuse_null("family_doctor", "name_ar", "name_lat")


class ProfessionalRead(ProfessionalIn):
    model_config = Schema.model_config | {"extra": "ignore"}
    id: uuid.UUID
    iban: str | None = None  # as stored (checked when it was recorded): a read never fails on it
    facilities: list[str] = Field(default_factory=list, description="Codes of the facilities where they practise")
