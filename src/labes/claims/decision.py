"""The fund's decision on a care sheet: status, reasons, shares per line and in total, and how it got there.

`labes.claims.adjudication` builds these; they are plain frozen values that `to_dict()` turns into JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

Payee = Literal["provider", "insured", "facility"]


def tnd(millimes: int) -> str:
    """Format millimes as dinars with three decimals, e.g. `18.000 TND`."""
    sign = "-" if millimes < 0 else ""
    whole, rest = divmod(abs(millimes), 1000)
    return f"{sign}{whole}.{rest:03d} TND"


@dataclass(frozen=True)
class Step:
    """One step of an explanation: the rule applied, in plain English, and the amount it set (if any)."""

    rule: str
    text: str
    amount_millimes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the step as JSON-ready values."""
        return {"rule": self.rule, "text": self.text, "amount_millimes": self.amount_millimes}


@dataclass(frozen=True)
class LineDecision:
    """The decision on one billed line.

    `patient_millimes` = `copay_millimes` (the patient's part of the tariff: copayment, reduced fee, or the
    part the rate leaves) + `above_tariff_millimes` (billed above the tariff or the reference tariff) +
    `ceiling_cut_millimes` (the fund share the annual ceiling no longer covers).
    """

    code: str
    kind: str  # act kind or "drug"
    quantity: int
    billed_millimes: int
    fund_millimes: int
    patient_millimes: int
    copay_millimes: int
    above_tariff_millimes: int
    ceiling_cut_millimes: int
    ceiling_charged_millimes: int
    outside_ceiling: bool
    rule: str  # the rule that set the fund share last

    def to_dict(self) -> dict[str, Any]:
        """Return the line decision as JSON-ready values."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class Decision:
    """The fund's decision on one care sheet (décision, القرار), with every rule and amount that made it."""

    claim_number: str
    status: Literal["accepted", "rejected"]
    reasons: tuple[str, ...]  # rejection codes (rejection_reasons.csv), sorted
    lines: tuple[LineDecision, ...]
    billed_millimes: int
    fund_millimes: int
    patient_millimes: int
    ceiling_charged_millimes: int  # the part of the fund share counted against the family's annual ceiling
    copay_charged_millimes: int  # the copayment counted against the public-scheme yearly cap
    payee: Payee | None  # None when rejected
    payment_due_days: int | None  # the fund's deadline to pay the payee; None when rejected
    route: str | None  # how the fund pays: amen_free, amen_reduced, public_facility, third_party, reimbursement
    chronic_disease: str | None  # the APCI code that made the claim 100% covered
    rules_on: date  # the day whose rule set decided
    explanation: tuple[Step, ...]

    @property
    def accepted(self) -> bool:
        """Say whether the fund accepted the care sheet."""
        return self.status == "accepted"

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as JSON-ready values (dates as ISO strings), for storing with the care sheet."""
        return {
            "claim_number": self.claim_number,
            "status": self.status,
            "reasons": list(self.reasons),
            "lines": [line.to_dict() for line in self.lines],
            "billed_millimes": self.billed_millimes,
            "fund_millimes": self.fund_millimes,
            "patient_millimes": self.patient_millimes,
            "ceiling_charged_millimes": self.ceiling_charged_millimes,
            "copay_charged_millimes": self.copay_charged_millimes,
            "payee": self.payee,
            "payment_due_days": self.payment_due_days,
            "route": self.route,
            "chronic_disease": self.chronic_disease,
            "rules_on": self.rules_on.isoformat(),
            "explanation": [step.to_dict() for step in self.explanation],
        }
