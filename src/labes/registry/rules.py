"""The fund's registry rules as pure functions: who is covered, and until when.

No session, no clock: callers pass `on` (the day the question is asked) and the rule data.
Rights are computed at the moment of asking; nothing is stored, so nothing needs renewing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from importlib import resources

REGIMES = ("CNSS", "CNRPS", "PENSION")
MEMBER_STATUSES = ("active", "suspended", "ended")
CARE_SCHEMES = ("public", "private", "reimbursement")
RELATIONSHIPS = ("spouse", "child", "father", "mother")
AMEN_LEVELS = ("free", "reduced")
FACILITY_KINDS = (
    "primary_health_centre",
    "district_hospital",
    "regional_hospital",
    "university_hospital",
    "cnss_polyclinic",
    "private_clinic",
    "pharmacy",
    "laboratory",
    "imaging_centre",
)
PROFESSIONAL_KINDS = (
    "general_practitioner",
    "specialist",
    "dentist",
    "pharmacist",
    "biologist",
    "radiologist",
    "physiotherapist",
)
CONTRACT_STATUSES = ("active", "suspended", "terminated")
TAX_REGIMES = ("actual", "flat")


@dataclass(frozen=True)
class DependantRules:
    """One version of the dependants' rules (Law 2004-71, art. 4)."""

    effective_from: date
    source: str
    child_age_limit: int
    student_age_limit: int
    unmarried_daughter_without_income: bool
    disabled_child_without_limit: bool
    parents_allowed: bool


@lru_cache
def _dependant_versions() -> tuple[DependantRules, ...]:
    raw = json.loads(resources.files("labes.rules").joinpath("dependants.json").read_text("utf-8"))
    versions = [
        DependantRules(
            effective_from=date.fromisoformat(v["effective_from"]),
            source=v["source"],
            child_age_limit=int(v["child_age_limit"]),
            student_age_limit=int(v["student_age_limit"]),
            unmarried_daughter_without_income=bool(v["unmarried_daughter_without_income"]),
            disabled_child_without_limit=bool(v["disabled_child_without_limit"]),
            parents_allowed=bool(v["parents_allowed"]),
        )
        for v in raw["versions"]
    ]
    return tuple(sorted(versions, key=lambda v: v.effective_from))


def dependant_rules(on: date) -> DependantRules:
    """Return the dependants' rules in force on `on`."""
    in_force = [v for v in _dependant_versions() if v.effective_from <= on]
    if not in_force:
        raise LookupError(f"No dependants' rules in force on {on.isoformat()}.")
    return in_force[-1]


def birthday(birth_date: date, age: int) -> date:
    """Return the day a person born on `birth_date` turns `age` (29 February → 1 March)."""
    try:
        return birth_date.replace(year=birth_date.year + age)
    except ValueError:
        return date(birth_date.year + age, 3, 1)


def age_on(birth_date: date, on: date) -> int:
    """Return the age in whole years on `on`."""
    years = on.year - birth_date.year
    return years if on >= birthday(birth_date, years) else years - 1


@dataclass(frozen=True)
class Eligibility:
    """The answer to "is this person covered on that day?", with the reason in plain words."""

    covered: bool
    reason: str
    until: date | None = None  # last day covered when bounded by a rule, else None


def member_rights(
    *, status: str, affiliation_start: date, affiliation_end: date | None, on: date, death_date: date | None = None
) -> Eligibility:
    """Return whether an insured member is covered on `on`, from status and affiliation dates."""
    if death_date is not None and death_date <= on:
        return Eligibility(False, f"The insured person died on {death_date.isoformat()}.")
    if affiliation_start > on:
        return Eligibility(False, f"The affiliation starts on {affiliation_start.isoformat()}.")
    if affiliation_end is not None and affiliation_end < on:
        return Eligibility(False, f"The affiliation ended on {affiliation_end.isoformat()}.")
    if status == "suspended":
        return Eligibility(False, "The affiliation is suspended; the employer's contributions must be regularised.")
    if status == "ended":
        return Eligibility(False, "The affiliation has ended.")
    return Eligibility(True, "Insured member with an active affiliation.", affiliation_end)


def dependant_eligibility(
    *,
    relationship: str,
    sex: str,
    birth_date: date,
    on: date,
    student_until: date | None = None,
    disabled: bool = False,
    unmarried_no_income: bool = False,
    start_date: date | None = None,
    end_date: date | None = None,
    death_date: date | None = None,
    rules: DependantRules | None = None,
) -> Eligibility:
    """Return whether a dependant may be covered on `on` under the rules in force that day."""
    rules = rules or dependant_rules(on)
    if death_date is not None and death_date <= on:
        return Eligibility(False, f"Died on {death_date.isoformat()}.")
    if birth_date > on:
        return Eligibility(False, f"Born on {birth_date.isoformat()}, after the day asked about.")
    if start_date is not None and start_date > on:
        return Eligibility(False, f"In the member's charge from {start_date.isoformat()}.")
    if end_date is not None and end_date < on:
        return Eligibility(False, f"No longer in the member's charge since {(end_date + timedelta(days=1)).isoformat()}.")
    if relationship == "spouse":
        return Eligibility(True, "Spouse in the member's charge.", end_date)
    if relationship in ("father", "mother"):
        if rules.parents_allowed:
            return Eligibility(True, f"Dependent {relationship} in the member's charge.", end_date)
        return Eligibility(False, "Parents are not covered as dependants under the rules in force.")
    if relationship != "child":
        raise ValueError(f"Unknown relationship {relationship!r}; expected one of {', '.join(RELATIONSHIPS)}.")

    if disabled and rules.disabled_child_without_limit:
        return Eligibility(True, "Child whose disability prevents paid work: no age limit.", end_date)
    limit_day = birthday(birth_date, rules.child_age_limit)
    if on < limit_day:
        return Eligibility(True, f"Child under {rules.child_age_limit}.", limit_day - timedelta(days=1))
    student_limit_day = birthday(birth_date, rules.student_age_limit)
    if student_until is not None and on <= student_until and on < student_limit_day:
        last = min(student_until, student_limit_day - timedelta(days=1))
        return Eligibility(True, f"Student under {rules.student_age_limit} with a certificate valid until {student_until.isoformat()}.", last)
    if sex == "F" and unmarried_no_income and rules.unmarried_daughter_without_income:
        return Eligibility(True, "Unmarried daughter without income: no age limit.", end_date)
    if student_until is not None and on >= student_limit_day:
        return Eligibility(False, f"Turned {rules.student_age_limit} on {student_limit_day.isoformat()}: past the students' age limit.")
    if student_until is not None:
        return Eligibility(False, f"The student certificate expired on {student_until.isoformat()}; a new one is needed.")
    return Eligibility(False, f"Turned {rules.child_age_limit} on {limit_day.isoformat()}: past the children's age limit.")


def amen_eligibility(*, level: str, valid_from: date, valid_to: date | None, on: date) -> Eligibility:
    """Return whether an Amen household's benefit applies on `on`."""
    label = "free care (AMG1)" if level == "free" else "reduced-fee care (AMG2)"
    if valid_from > on:
        return Eligibility(False, f"Amen {label} starts on {valid_from.isoformat()}.")
    if valid_to is not None and valid_to < on:
        return Eligibility(False, f"Amen {label} expired on {valid_to.isoformat()}.")
    return Eligibility(True, f"Amen household: {label} in public facilities.", valid_to)
