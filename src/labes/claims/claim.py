"""A care sheet as the fund adjudicates it, and what the caller knows of the patient, the provider and the family.

These are the inputs of `labes.claims.adjudication.adjudicate` (which re-exports them): frozen values that
check their own shape, so a malformed sheet fails before any rule runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from labes.claims.decision import Decision
from labes.claims.ruleset import PROVIDER_CATEGORIES

CLAIM_KINDS = ("consultation", "pharmacy", "lab", "imaging", "hospital", "dental", "physio")
SCHEMES = ("public", "private", "reimbursement")
AMEN_LEVELS = ("free", "reduced")
FACILITY_SECTORS = ("public", "private")
TAX_REGIMES = ("actual", "flat")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class ClaimLine:
    """One billed line: an act of the nomenclature or a medicine, the quantity and the price billed per unit."""

    code: str
    kind: Literal["act", "drug"]
    quantity: int
    unit_price_millimes: int
    prescribed_quantity: int | None = None  # from the prescription, when the line dispenses one

    def __post_init__(self) -> None:
        _require(self.kind in ("act", "drug"), f"A line is an 'act' or a 'drug'; got {self.kind!r}.")
        _require(self.quantity >= 1, f"Line {self.code}: the quantity is at least 1; got {self.quantity}.")
        _require(self.unit_price_millimes >= 0, f"Line {self.code}: the price is not negative.")


@dataclass(frozen=True)
class Approval:
    """A prior approval (accord préalable) granted for one code; one number may cover several codes."""

    number: str
    code: str
    valid_from: date
    valid_to: date
    quantity: int | None = None  # how many the agent approved; None: not limited

    def covers(self, code: str, on: date, quantity: int = 1) -> bool:
        """Say whether this approval covers `quantity` of `code` on `on`."""
        return self.code == code and self.valid_from <= on <= self.valid_to and \
            (self.quantity is None or quantity <= self.quantity)


@dataclass(frozen=True)
class PatientContext:
    """What the caller knows of the patient on the date of care (rights are computed before adjudication).

    `family_size` counts every beneficiary of the family, the insured and any dependent parents included.
    `chronic_icd10_covered`: None lets adjudication match the claim's diagnoses to the APCI ranges; True or
    False is the caller's own finding that this claim is (or is not) care for an approved APCI.
    An Amen level is used only when the patient has no scheme.
    """

    scheme: Literal["public", "private", "reimbursement"] | None
    regime: str | None
    covered: bool
    family_size: int = 1
    dependent_parents: int = 0
    pregnancy: bool = False
    chronic_diseases: frozenset[str] = frozenset()
    chronic_icd10_covered: bool | None = None
    amen_level: Literal["free", "reduced"] | None = None
    family_doctor_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "chronic_diseases", frozenset(self.chronic_diseases))
        _require(self.scheme is None or self.scheme in SCHEMES, f"Unknown care scheme {self.scheme!r}.")
        _require(self.amen_level is None or self.amen_level in AMEN_LEVELS, f"Unknown Amen level {self.amen_level!r}.")
        _require(self.family_size >= 1, f"A family has at least one beneficiary; got {self.family_size}.")
        _require(0 <= self.dependent_parents < self.family_size,
                 f"Dependent parents ({self.dependent_parents}) are beneficiaries of a family of {self.family_size}.")


@dataclass(frozen=True)
class ProviderContext:
    """Who billed: the provider's category, the professional, the facility and its contract with the fund."""

    category: Literal["doctor", "pharmacy", "laboratory", "imaging", "clinic", "hospital", "dentist",
                      "physiotherapist"]
    professional_kind: str | None
    specialty: str | None
    professional_id: str | None
    facility_sector: Literal["public", "private"]
    facility_kind: str
    contract_active: bool
    tax_regime: Literal["actual", "flat"] = "actual"

    def __post_init__(self) -> None:
        _require(self.category in PROVIDER_CATEGORIES, f"Unknown provider category {self.category!r}.")
        _require(self.facility_sector in FACILITY_SECTORS, f"Unknown sector {self.facility_sector!r}.")
        _require(self.tax_regime in TAX_REGIMES, f"Unknown tax regime {self.tax_regime!r}.")


@dataclass(frozen=True)
class Claim:
    """A care sheet as the fund receives it: dates, kind, billed lines, diagnoses, referral and approvals."""

    number: str
    care_date: date
    last_care_date: date
    submitted_on: date
    kind: Literal["consultation", "pharmacy", "lab", "imaging", "hospital", "dental", "physio"]
    lines: tuple[ClaimLine, ...]
    diagnoses: tuple[str, ...] = ()  # ICD-10
    referral: bool = False  # a family-doctor referral is on file
    approvals: tuple[Approval, ...] = ()  # the patient's approvals (one Approval per number and code)
    cited_approval: str | None = None  # the approval number the sheet cites

    def __post_init__(self) -> None:
        for name in ("lines", "diagnoses", "approvals"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _require(self.kind in CLAIM_KINDS, f"Unknown care-sheet kind {self.kind!r}.")
        _require(bool(self.lines), f"Care sheet {self.number} has no line.")
        _require(self.last_care_date >= self.care_date,
                 f"Care sheet {self.number}: the last date of care is before the first.")


@dataclass(frozen=True)
class Usage:
    """What the family has already consumed this calendar year, in millimes."""

    ceiling_used_millimes: int = 0
    copay_used_millimes: int = 0

    def __post_init__(self) -> None:
        _require(self.ceiling_used_millimes >= 0 and self.copay_used_millimes >= 0, "Usage is never negative.")

    def after(self, decision: Decision) -> Usage:
        """Return the usage once `decision` is counted."""
        return Usage(self.ceiling_used_millimes + decision.ceiling_charged_millimes,
                     self.copay_used_millimes + decision.copay_charged_millimes)
