"""The fund's claims rules in force on a day: acts, medicines, rates, copayments, ceilings, deadlines.

Everything comes from the data files in `labes/rules/` (read once, then cached):
- `acts.csv`, the nomenclature of acts, and `drugs.csv`, the list of medicines: one row per code and
  period (`effective_from` … `effective_to`, both inclusive, blank = open);
- `claims.json`, the rule tables as amendments: the table in force on a day comes from the latest version
  not after that day that defines it, and keeps its own date and source for the explanations;
- `rejection_reasons.csv`, the published rejection codes;
- `chronic_diseases.csv`, the 24 chronic diseases (APCI) with their ICD-10 ranges.
No number lives in this code: the fund changes them by decree, and the files follow.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from itertools import pairwise
from types import MappingProxyType
from typing import Any

from labes.rules import chronic_disease_codes

ACT_KINDS = ("consultation", "dental", "lab", "imaging", "hospital", "physio", "procedure")
LINE_KINDS = (*ACT_KINDS, "drug")  # an act's kind, or "drug" for a medicine
DRUG_CATEGORIES = ("V", "E", "I")  # vital, essential, intermediate
PROVIDER_CATEGORIES = (
    "doctor", "pharmacy", "laboratory", "imaging", "clinic", "hospital", "dentist", "physiotherapist",
)
SUSPENSION_SCOPES = ("all", "ordinary")  # "ordinary": every claim but chronic-disease (APCI) care
_TABLES = (
    "drug_rates", "act_rates", "chronic_disease", "copayments", "copay_yearly_caps", "hospital_stay_copay_cap",
    "annual_ceiling", "care_sheet_deadline", "payment_deadlines", "tax_withheld", "amen", "prior_approval",
    "direct_access_specialties", "third_party_suspensions",
)


@dataclass(frozen=True)
class Act:
    """An act of the fund's nomenclature (nomenclature des actes, قائمة الأعمال) with its conventional tariff."""

    code: str
    label_fr: str
    label_ar: str
    kind: str
    tariff_millimes: int
    specialist_only: bool
    prior_approval: bool
    outside_ceiling: bool
    effective_from: date
    effective_to: date | None
    source: str


@dataclass(frozen=True)
class Drug:
    """A medicine of the fund's list: its public price and the reference tariff of its generic group."""

    code: str
    brand: str
    inn: str
    form: str
    strength: str
    category: str
    public_price_millimes: int
    generic_group: str
    reference_tariff_millimes: int
    prior_approval: bool
    outside_ceiling: bool
    effective_from: date
    effective_to: date | None
    source: str


@dataclass(frozen=True)
class RejectionReason:
    """A published rejection code (motif de rejet, سبب الرفض) in the three languages."""

    code: str
    label_fr: str
    label_ar: str
    label_en: str


@dataclass(frozen=True)
class Copayment:
    """A copayment (ticket modérateur, المعلوم التعديلي) per unit: a fixed amount or a percentage of the tariff."""

    amount_millimes: int | None = None
    percent: Decimal | None = None


@dataclass(frozen=True)
class CeilingGrid:
    """The annual ceiling (plafond annuel, السقف السنوي) by number of beneficiaries, with its supplements."""

    schemes: frozenset[str]
    claim_kinds_outside: frozenset[str]
    by_family_size_millimes: tuple[int, ...]  # index 0 = one beneficiary; the last entry holds for larger families
    per_dependent_parent_millimes: int
    parents_counted_beyond_family_size: int
    pregnancy_millimes: int

    def family_ceiling_millimes(self, *, family_size: int, dependent_parents: int, pregnancy: bool) -> int:
        """Return the family's annual ceiling for its number of beneficiaries, parents and a pregnancy."""
        if family_size < 1:
            raise ValueError(f"A family has at least one beneficiary; got {family_size}.")
        grid = self.by_family_size_millimes[min(family_size, len(self.by_family_size_millimes)) - 1]
        # The 2023 communiqué adds the supplement for the parents who bring the family above five beneficiaries.
        parents_beyond = min(dependent_parents, max(0, family_size - self.parents_counted_beyond_family_size))
        return (grid + parents_beyond * self.per_dependent_parent_millimes
                + (self.pregnancy_millimes if pregnancy else 0))


@dataclass(frozen=True)
class Suspension:
    """A period when a provider category stops third-party payment; its claims become reimbursement files."""

    provider_category: str
    start: date
    end: date | None  # inclusive; None = still running
    scope: str
    source: str

    def applies(self, *, category: str, on: date, chronic: bool) -> bool:
        """Say whether this suspension covers a claim of `category` on `on` (chronic-disease care or not)."""
        in_period = self.start <= on and (self.end is None or on <= self.end)
        return (category == self.provider_category and in_period
                and (self.scope == "all" or not chronic))


@dataclass(frozen=True)
class TableVersion:
    """Where a rule table in force comes from: the version's effective date and the table's source."""

    effective_from: date
    source: str


@dataclass(frozen=True)
class RuleSet:
    """The claims rules in force on one day; every amount and rate adjudication uses comes from here."""

    on: date
    acts: Mapping[str, Act]
    drugs: Mapping[str, Drug]
    rejection_reasons: Mapping[str, RejectionReason]
    chronic_disease_icd10: Mapping[str, tuple[str, ...]]  # APCI code → ICD-10 codes and ranges
    drug_rate_percent: Mapping[str, Decimal]  # by category V/E/I
    act_rate_percent: Mapping[str, Decimal]  # reimbursement scheme, by act kind
    chronic_disease_percent: Decimal
    copayments: Mapping[str, Mapping[str, Copayment]]  # "public"/"private" → line kind → copayment
    copayments_by_act: Mapping[str, Mapping[str, Copayment]]  # "public"/"private" → act code → copayment
    copay_yearly_cap_millimes: Mapping[str, int]  # by regime
    hospital_stay_copay_cap_millimes: int
    ceiling: CeilingGrid
    care_sheet_deadline_days: int
    payment_due_days: Mapping[str, int]  # by provider category, and "insured"
    tax_withheld_percent: Mapping[str, Decimal]  # by tax regime
    amen_free_percent: Decimal
    amen_reduced_fee_millimes: Mapping[str, int]  # by line kind
    prior_approval_sectors: frozenset[str]
    direct_access_specialties: frozenset[str]
    suspensions: tuple[Suspension, ...]
    tables: Mapping[str, TableVersion]

    def copayment(self, setting: str, *, kind: str, code: str) -> Copayment:
        """Return the copayment of one unit of `code` where the fund pays a `setting` ("public"/"private") provider."""
        return self.copayments_by_act[setting].get(code) or self.copayments[setting][kind]

    def table_note(self, name: str) -> str:
        """Return "<table> in force from <date>" for the explanations; the source is in `tables`."""
        return f"{name} in force from {self.tables[name].effective_from.isoformat()}"


def _flag(row: dict[str, str], name: str) -> bool:
    value = row[name].strip()
    if value not in ("0", "1"):
        raise ValueError(f"{row['code']}: {name} is 0 or 1; got {value!r}.")
    return value == "1"


def _millimes(row: dict[str, str], name: str) -> int:
    value = int(row[name])
    if value < 0:
        raise ValueError(f"{row['code']}: {name} is a non-negative amount of millimes; got {value}.")
    return value


def _period(row: dict[str, str]) -> tuple[date, date | None]:
    start = date.fromisoformat(row["effective_from"])
    end = date.fromisoformat(row["effective_to"]) if row["effective_to"].strip() else None
    if end is not None and end < start:
        raise ValueError(f"{row['code']}: effective_to {end} is before effective_from {start}.")
    return start, end


def _rows(name: str) -> list[dict[str, str]]:
    with resources.files("labes.rules").joinpath(name).open("r", encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def _check_periods(items: tuple[Act, ...] | tuple[Drug, ...], what: str) -> None:
    by_code: dict[str, list[Act | Drug]] = {}
    for item in items:
        by_code.setdefault(item.code, []).append(item)
    for code, versions in by_code.items():
        versions.sort(key=lambda v: v.effective_from)
        for before, after in pairwise(versions):
            if before.effective_to is None or before.effective_to >= after.effective_from:
                raise ValueError(f"{what} {code}: two rows are in force on {after.effective_from}.")


@lru_cache
def load_acts() -> tuple[Act, ...]:
    """Return every row of the nomenclature of acts, all periods."""
    acts = []
    for row in _rows("acts.csv"):
        if row["kind"] not in ACT_KINDS:
            raise ValueError(f"{row['code']}: kind is one of {', '.join(ACT_KINDS)}; got {row['kind']!r}.")
        start, end = _period(row)
        acts.append(Act(
            code=row["code"], label_fr=row["label_fr"], label_ar=row["label_ar"], kind=row["kind"],
            tariff_millimes=_millimes(row, "tariff_millimes"), specialist_only=_flag(row, "specialist_only"),
            prior_approval=_flag(row, "prior_approval"), outside_ceiling=_flag(row, "outside_ceiling"),
            effective_from=start, effective_to=end, source=row["source"],
        ))
    _check_periods(tuple(acts), "Act")
    return tuple(acts)


@lru_cache
def load_drugs() -> tuple[Drug, ...]:
    """Return every row of the list of medicines, all periods."""
    drugs = []
    for row in _rows("drugs.csv"):
        if row["category"] not in DRUG_CATEGORIES:
            raise ValueError(f"{row['code']}: category is V, E or I; got {row['category']!r}.")
        if not (len(row["code"]) == 6 and row["code"].isdigit()):
            raise ValueError(f"A medicine code is 6 digits; got {row['code']!r}.")
        start, end = _period(row)
        drugs.append(Drug(
            code=row["code"], brand=row["brand"], inn=row["inn"], form=row["form"], strength=row["strength"],
            category=row["category"], public_price_millimes=_millimes(row, "public_price_millimes"),
            generic_group=row["generic_group"], reference_tariff_millimes=_millimes(row, "reference_tariff_millimes"),
            prior_approval=_flag(row, "prior_approval"), outside_ceiling=_flag(row, "outside_ceiling"),
            effective_from=start, effective_to=end, source=row["source"],
        ))
    _check_periods(tuple(drugs), "Medicine")
    return tuple(drugs)


@lru_cache
def load_rejection_reasons() -> Mapping[str, RejectionReason]:
    """Return the published rejection reasons by code."""
    reasons: dict[str, RejectionReason] = {}
    for row in _rows("rejection_reasons.csv"):
        if row["code"] in reasons:
            raise ValueError(f"Rejection code {row['code']} appears twice.")
        reasons[row["code"]] = RejectionReason(row["code"], row["label_fr"], row["label_ar"], row["label_en"])
    return MappingProxyType(reasons)


@lru_cache
def _claims_versions() -> tuple[tuple[date, dict[str, Any]], ...]:
    raw = json.loads(resources.files("labes.rules").joinpath("claims.json").read_text("utf-8"))
    versions = [(date.fromisoformat(v["effective_from"]), v) for v in raw["versions"]]
    for _, version in versions:
        if unknown := set(version) - {"effective_from", "source", *_TABLES}:
            raise ValueError(f"claims.json version {version['effective_from']}: unknown tables {sorted(unknown)}.")
    return tuple(sorted(versions, key=lambda v: v[0]))


def _in_force(items: tuple[Act, ...] | tuple[Drug, ...], on: date) -> Mapping[str, Any]:
    return MappingProxyType({i.code: i for i in items
                             if i.effective_from <= on and (i.effective_to is None or on <= i.effective_to)})


def _percents(table: Mapping[str, Any], keys: tuple[str, ...], name: str) -> Mapping[str, Decimal]:
    if missing := set(keys) - set(table):
        raise ValueError(f"claims.json {name}: no entry for {sorted(missing)}.")
    return MappingProxyType({key: Decimal(str(value)) for key, value in table.items()})


def _copayment(entry: Mapping[str, Any], where: str) -> Copayment:
    if set(entry) == {"amount_millimes"} and int(entry["amount_millimes"]) >= 0:
        return Copayment(amount_millimes=int(entry["amount_millimes"]))
    if set(entry) == {"percent"} and 0 <= Decimal(str(entry["percent"])) <= 100:
        return Copayment(percent=Decimal(str(entry["percent"])))
    raise ValueError(f"claims.json copayments {where}: one of amount_millimes (≥ 0) or percent (0–100); got {entry}.")


def _copayments(table: Mapping[str, Any]) -> tuple[Mapping[str, Mapping[str, Copayment]], ...]:
    by_kind, by_act = {}, {}
    # Medicines at a private provider follow their category's rate, so only the public table needs "drug".
    for setting, needed in (("public", LINE_KINDS), ("private", ACT_KINDS)):
        kinds = table[setting]["by_kind"]
        if missing := set(needed) - set(kinds):
            raise ValueError(f"claims.json copayments {setting}: no entry for {sorted(missing)}.")
        by_kind[setting] = MappingProxyType({k: _copayment(e, f"{setting}.{k}") for k, e in kinds.items()})
        by_act[setting] = MappingProxyType({c: _copayment(e, f"{setting}.{c}")
                                            for c, e in table[setting].get("by_act", {}).items()})
    return MappingProxyType(by_kind), MappingProxyType(by_act)


def _suspensions(table: Mapping[str, Any]) -> tuple[Suspension, ...]:
    periods = []
    for p in table["periods"]:
        if p["provider_category"] not in PROVIDER_CATEGORIES or p["scope"] not in SUSPENSION_SCOPES:
            raise ValueError(f"claims.json third_party_suspensions: bad category or scope in {p}.")
        periods.append(Suspension(p["provider_category"], date.fromisoformat(p["start"]),
                                  date.fromisoformat(p["end"]) if p["end"] else None, p["scope"], p["source"]))
    return tuple(periods)


def _ceiling(table: Mapping[str, Any]) -> CeilingGrid:
    grid = tuple(int(v) for v in table["by_family_size_millimes"])
    if not grid or any(b < a for a, b in pairwise(grid)):
        raise ValueError("claims.json annual_ceiling: the grid is non-empty and never decreases with family size.")
    return CeilingGrid(
        schemes=frozenset(table["schemes"]), claim_kinds_outside=frozenset(table["claim_kinds_outside"]),
        by_family_size_millimes=grid, per_dependent_parent_millimes=int(table["per_dependent_parent_millimes"]),
        parents_counted_beyond_family_size=int(table["parents_counted_beyond_family_size"]),
        pregnancy_millimes=int(table["pregnancy_millimes"]),
    )


def _icd10_ranges() -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({code: tuple(part.strip() for part in ranges.split(";") if part.strip())
                             for code, ranges in chronic_disease_codes().items()})


def _icd10_key(code: str) -> str:
    return code.strip().upper().replace(".", "")


def icd10_in_ranges(diagnosis: str, ranges: tuple[str, ...]) -> bool:
    """Say whether an ICD-10 code (`E11`, `E11.9`, `E119`) falls in one of `ranges` (`E10-E14`, `D69.3`, `B18`)."""
    key = _icd10_key(diagnosis)
    for item in ranges:
        low, _, high = item.partition("-")
        low, high = _icd10_key(low), _icd10_key(high or low)
        # A range end names a category (3 characters) or a subcategory: compare at that precision.
        if low <= key[:len(low)] and key[:len(high)] <= high and len(key) >= len(low):
            return True
    return False


@lru_cache(maxsize=4096)
def ruleset(on: date) -> RuleSet:
    """Return the claims rules in force on `on` (acts and medicines filtered by their own dates)."""
    tables: dict[str, tuple[date, str, Mapping[str, Any]]] = {}
    for effective_from, version in _claims_versions():
        if effective_from > on:
            break
        for name in _TABLES:
            if name in version:
                tables[name] = (effective_from, version[name]["source"], version[name])
    if missing := [name for name in _TABLES if name not in tables]:
        raise LookupError(f"No claims rules in force on {on.isoformat()} (missing {', '.join(missing)}).")
    t = {name: table for name, (_, _, table) in tables.items()}
    copayments, copayments_by_act = _copayments(t["copayments"])
    reduced = t["amen"]["reduced_fees_millimes"]
    if missing_payees := {*PROVIDER_CATEGORIES, "insured"} - set(t["payment_deadlines"]["days"]):
        raise ValueError(f"claims.json payment_deadlines: no deadline for {sorted(missing_payees)}.")
    if missing_kinds := set(LINE_KINDS) - set(reduced):
        raise ValueError(f"claims.json amen reduced_fees_millimes: no entry for {sorted(missing_kinds)}.")
    return RuleSet(
        on=on,
        acts=_in_force(load_acts(), on),
        drugs=_in_force(load_drugs(), on),
        rejection_reasons=load_rejection_reasons(),
        chronic_disease_icd10=_icd10_ranges(),
        drug_rate_percent=_percents(t["drug_rates"]["percent"], DRUG_CATEGORIES, "drug_rates"),
        act_rate_percent=_percents(t["act_rates"]["percent"], ACT_KINDS, "act_rates"),
        chronic_disease_percent=Decimal(str(t["chronic_disease"]["percent"])),
        copayments=copayments,
        copayments_by_act=copayments_by_act,
        copay_yearly_cap_millimes=MappingProxyType({k: int(v) for k, v in t["copay_yearly_caps"]["millimes"].items()}),
        hospital_stay_copay_cap_millimes=int(t["hospital_stay_copay_cap"]["millimes"]),
        ceiling=_ceiling(t["annual_ceiling"]),
        care_sheet_deadline_days=int(t["care_sheet_deadline"]["days"]),
        payment_due_days=MappingProxyType({k: int(v) for k, v in t["payment_deadlines"]["days"].items()}),
        tax_withheld_percent=_percents(t["tax_withheld"]["percent"], ("actual", "flat"), "tax_withheld"),
        amen_free_percent=Decimal(str(t["amen"]["free_percent"])),
        amen_reduced_fee_millimes=MappingProxyType({k: int(v) for k, v in reduced.items()}),
        prior_approval_sectors=frozenset(t["prior_approval"]["facility_sectors"]),
        direct_access_specialties=frozenset(t["direct_access_specialties"]["private"]),
        suspensions=_suspensions(t["third_party_suspensions"]),
        tables=MappingProxyType({name: TableVersion(eff, source) for name, (eff, source, _) in tables.items()}),
    )
