"""Adjudicate a care sheet (bulletin de soins, ورقة العلاج): pure functions of the claim, its context and the rules.

No I/O, no clock, no database: the caller passes what it knows (rights on the date of care, the family's
usage this calendar year) and `rules = ruleset(claim.care_date)`. Every amount comes from the rule set.

Entry points
    adjudicate(claim, patient, provider, usage, rules) -> Decision
    adjudicate_day(claims_with_contexts, usage, rules) -> list[Decision]   # canonical order, usage threaded
    family_ceiling_millimes(patient, rules) -> int
    tax_withheld_millimes(gross_millimes, tax_regime, rules) -> int
Inputs are the frozen dataclasses below (`ClaimLine`, `Approval`, `Claim`, `PatientContext`,
`ProviderContext`, `Usage`); the result is a `Decision` (see `labes.claims.decision`), `to_dict()` for JSON.

Rejections (all that apply are reported, codes from `rejection_reasons.csv`): care date after submission
(R12); submitted more than `care_sheet_deadline` days after the last date of care (R03); rights closed, or
neither a scheme nor an Amen card (R01); provider without an active contract (R06); Amen card outside a
public facility (R07); care outside the patient's scheme (R14); private scheme: a specialist without
referral outside the direct-access specialties (R04), another GP than the family doctor without referral
(R13); unknown act (R08) or medicine (R09) on the date of care; an act reserved to specialists billed by a
provider without a specialty (R15); more than prescribed (R10); prior approval missing, for another code,
or not valid on the date of care, where the provider's sector asks for one (R05); a repeated number in
`adjudicate_day` (R11). R02 (card and holder do not match) is the point of care's own finding: it is
published for it, and adjudication never sees such a sheet.

How the fund pays (the route) and who is paid (the payee)
- Amen only (scheme None): public facilities only; free care at `amen.free_percent`, reduced-fee care
  where the patient pays `amen.reduced_fees_millimes` per unit. Payee "facility".
- A hospital claim, any scheme: a public hospital is paid like the public scheme; a private clinic is paid
  third-party with the private copayment. The copayment of a stay is capped at `hospital_stay_copay_cap`.
- Public scheme: public facilities, payee "facility"; the patient pays the public copayment per unit,
  capped yearly per regime (`copay_yearly_caps` − `usage.copay_used_millimes`). At a private provider the
  sheet is rejected (R14), except chronic-disease medicines at a private pharmacy (third-party).
- Private scheme: third-party payment, payee "provider"; the patient pays the private copayment on acts and
  the part the category rate leaves on medicines. Dental care is reimbursed to the insured. Outpatient
  care in a public facility is outside the scheme (R14).
- Reimbursement scheme: any contracted provider; the fund reimburses its rate to the insured.
- Medicines: fund share = category rate × min(price billed, reference tariff) × quantity; a dearer brand
  leaves the difference to the patient. Acts: the base is min(price billed, tariff) × quantity.
- Chronic disease: a claim with a diagnosis in the ICD-10 ranges of an APCI the patient has (or
  `chronic_icd10_covered=True` from the caller) is covered at `chronic_disease.percent` of the base, with
  no copayment, outside the ceiling.
- Annual ceiling (schemes in `annual_ceiling.schemes`, claims not in `claim_kinds_outside`, not chronic):
  the fund share of in-ceiling lines is cut, in line order, to what remains of the family's ceiling; the
  cut is the patient's.
- Third-party payment suspended for the provider's category on the care date: payee "insured", same
  shares, the insured's payment deadline.

Rounding: a percentage is applied once per line, to the line's base (unit × quantity), rounded half-up to
the millime; every other amount is a difference or a minimum of integers, so fund + patient = billed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from labes.claims.claim import Approval, Claim, ClaimLine, PatientContext, ProviderContext, Usage
from labes.claims.decision import Decision, LineDecision, Payee, Step, tnd
from labes.claims.ruleset import Act, Copayment, Drug, RuleSet, icd10_in_ranges

__all__ = [
    "Approval", "Claim", "ClaimLine", "Decision", "LineDecision", "PatientContext", "ProviderContext", "Step",
    "Usage", "adjudicate", "adjudicate_day", "family_ceiling_millimes", "tax_withheld_millimes",
]

@dataclass(frozen=True)
class _Route:
    name: str  # amen_free, amen_reduced, public_facility, third_party, reimbursement
    payee: Payee
    rule: str
    text: str


@dataclass
class _Line:
    """A line being priced (mutable while the caps and the ceiling move amounts between fund and patient)."""

    number: int
    line: ClaimLine
    kind: str
    billed: int
    base: int
    fund: int
    copay: int
    outside_ceiling: bool
    rule: str
    ceiling_cut: int = 0
    ceiling_charged: int = 0

    def frozen(self) -> LineDecision:
        return LineDecision(
            code=self.line.code, kind=self.kind, quantity=self.line.quantity, billed_millimes=self.billed,
            fund_millimes=self.fund, patient_millimes=self.billed - self.fund, copay_millimes=self.copay,
            above_tariff_millimes=self.billed - self.base, ceiling_cut_millimes=self.ceiling_cut,
            ceiling_charged_millimes=self.ceiling_charged, outside_ceiling=self.outside_ceiling, rule=self.rule,
        )


@dataclass
class _Work:
    """What adjudication has found so far: reasons (code → detail) and the explanation steps."""

    rules: RuleSet
    reasons: dict[str, list[str]] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def reject(self, code: str, detail: str) -> None:
        self.reasons.setdefault(code, []).append(detail)

    def step(self, rule: str, text: str, amount: int | None = None) -> None:
        self.steps.append(Step(rule, text, amount))


def _percent_of(amount: int, percent: Decimal) -> int:
    return int((Decimal(amount) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def family_ceiling_millimes(patient: PatientContext, rules: RuleSet) -> int:
    """Return the family's annual ceiling from the grid in force (beneficiaries, dependent parents, pregnancy)."""
    return rules.ceiling.family_ceiling_millimes(family_size=patient.family_size,
                                                 dependent_parents=patient.dependent_parents,
                                                 pregnancy=patient.pregnancy)


def tax_withheld_millimes(gross_millimes: int, tax_regime: str, rules: RuleSet) -> int:
    """Return the tax withheld at source on a payment of `gross_millimes` (rounded half-up once)."""
    return _percent_of(gross_millimes, rules.tax_withheld_percent[tax_regime])


def _check_dates(claim: Claim, work: _Work) -> None:
    if claim.last_care_date > claim.submitted_on:
        work.reject("R12", f"The care is dated up to {claim.last_care_date.isoformat()}, after the submission "
                           f"on {claim.submitted_on.isoformat()}.")
        return
    deadline = work.rules.care_sheet_deadline_days
    late = (claim.submitted_on - claim.last_care_date).days
    if late > deadline:
        work.reject("R03", f"Submitted on {claim.submitted_on.isoformat()}, {late} days after the last date of "
                           f"care {claim.last_care_date.isoformat()}; the deadline is {deadline} days.")


def _chronic_disease(claim: Claim, patient: PatientContext, rules: RuleSet) -> str | None:
    if not patient.chronic_diseases or patient.chronic_icd10_covered is False:
        return None
    for apci in sorted(patient.chronic_diseases):
        ranges = rules.chronic_disease_icd10.get(apci, ())
        if any(icd10_in_ranges(diagnosis, ranges) for diagnosis in claim.diagnoses):
            return apci
    if patient.chronic_icd10_covered:
        return min(patient.chronic_diseases)
    return None


def _pathway(claim: Claim, patient: PatientContext, provider: ProviderContext, work: _Work) -> str:
    """Check the private scheme's care pathway (family doctor first) and say why the visit is in it."""
    if patient.family_doctor_id and provider.professional_id == patient.family_doctor_id:
        return "the patient's family doctor"
    if claim.referral:
        return "a doctor seen on the family doctor's referral"
    if provider.professional_kind == "specialist":
        if provider.specialty in work.rules.direct_access_specialties:
            return f"a specialist in {provider.specialty}, a direct-access specialty"
        work.reject("R04", f"A specialist in {provider.specialty or 'an unnamed specialty'} was seen without the "
                           f"family doctor's referral; direct access is open in "
                           f"{', '.join(sorted(work.rules.direct_access_specialties))} only.")
    else:
        work.reject("R13", "This doctor is not the patient's family doctor and no referral is on file.")
    return ""


def _route(claim: Claim, patient: PatientContext, provider: ProviderContext, chronic: str | None,
           work: _Work) -> _Route | None:
    """Decide how the fund pays this claim and whom, or record why the claim is outside the patient's cover."""
    public = provider.facility_sector == "public"
    if patient.scheme is None:
        if patient.amen_level is None:
            return None  # R01 is recorded by the caller's rights check
        if not public:
            work.reject("R07", f"An Amen card covers care in public facilities only; this is a private "
                               f"{provider.facility_kind.replace('_', ' ')}.")
            return None
        return _Route(f"amen_{patient.amen_level}", "facility", "amen",
                      f"Amen {'free care' if patient.amen_level == 'free' else 'reduced-fee care'} in a public "
                      f"facility ({work.rules.table_note('amen')}).")
    if claim.kind == "hospital":
        if public:
            return _Route("public_facility", "facility", "hospital_stay",
                          "Hospital stay in a public hospital: the fund pays the facility, the patient the copayment.")
        return _Route("third_party", "provider", "hospital_stay",
                      "Hospital stay in a contracted private clinic: third-party payment to the clinic.")
    if patient.scheme == "public":
        if public:
            return _Route("public_facility", "facility", "scheme.public",
                          "Public scheme in a public facility: the fund pays the facility, the patient the copayment.")
        if chronic and provider.category == "pharmacy":
            return _Route("third_party", "provider", "scheme.public.chronic_pharmacy",
                          "Public scheme, chronic-disease medicines at a private pharmacy: third-party payment.")
        work.reject("R14", "The public scheme covers care in public facilities; this provider is private. "
                           "The patient may change scheme in the yearly window.")
        return None
    if patient.scheme == "private":
        if claim.kind == "dental" or provider.category == "dentist":
            return _Route("reimbursement", "insured", "scheme.private.dental",
                          "Private scheme, dental care: direct access, reimbursed to the insured.")
        if public:
            work.reject("R14", "The private scheme (family doctor) covers outpatient care by private providers; "
                               "this is a public facility.")
            return None
        why = _pathway(claim, patient, provider, work) if provider.category == "doctor" else ""
        return _Route("third_party", "provider", "scheme.private",
                      f"Private scheme: third-party payment{' to ' + why if why else ''}; "
                      "the patient pays the copayment.")
    return _Route("reimbursement", "insured", "scheme.reimbursement",
                  "Reimbursement scheme: the patient pays the provider, the fund reimburses its rate to the insured.")


def _items(claim: Claim, provider: ProviderContext, work: _Work) -> list[Act | Drug | None]:
    """Find each line's act or medicine in force, and check specialists, quantities and prior approvals."""
    rules, items = work.rules, []
    for number, line in enumerate(claim.lines, start=1):
        item: Act | Drug | None = (rules.acts if line.kind == "act" else rules.drugs).get(line.code)
        items.append(item)
        if item is None:
            code, what = ("R08", "act") if line.kind == "act" else ("R09", "medicine")
            work.reject(code, f"Line {number}: {what} {line.code} is not on the fund's list on "
                              f"{claim.care_date.isoformat()}.")
            continue
        if isinstance(item, Act) and item.specialist_only and not provider.specialty:
            work.reject("R15", f"Line {number}: {item.code} ({item.label_fr}) is reserved to specialists.")
        if line.prescribed_quantity is not None and line.quantity > line.prescribed_quantity:
            work.reject("R10", f"Line {number}: {line.quantity} of {line.code} delivered, "
                               f"{line.prescribed_quantity} prescribed.")
        if item.prior_approval and provider.facility_sector in rules.prior_approval_sectors and not any(
                a.number == claim.cited_approval and a.covers(line.code, claim.care_date, line.quantity)
                for a in claim.approvals):
            cited = f"approval {claim.cited_approval}" if claim.cited_approval else "no approval"
            work.reject("R05", f"Line {number}: {line.quantity} × {line.code} needs a prior approval valid on "
                               f"{claim.care_date.isoformat()} for that quantity; the sheet cites {cited} that covers it.")
    return items


def _copay(copayment: Copayment, base: int, quantity: int) -> int:
    if copayment.amount_millimes is not None:
        return min(base, copayment.amount_millimes * quantity)
    return min(base, _percent_of(base, copayment.percent or Decimal(0)))


def _price(number: int, line: ClaimLine, item: Act | Drug, route: _Route, chronic: str | None,
           work: _Work) -> _Line:
    """Price one line: its base (at most the tariff), then the fund share the route and the rules give."""
    rules = work.rules
    kind = _line_kind(line, item)
    if isinstance(item, Act):
        reference, label = item.tariff_millimes, "tariff"
    else:
        reference, label = item.reference_tariff_millimes, "reference tariff"
    billed = line.unit_price_millimes * line.quantity
    base = min(line.unit_price_millimes, reference) * line.quantity
    name = f"Line {number} ({line.code} × {line.quantity})"
    work.step("line", f"{name}: billed {tnd(billed)}; the fund's {label} is {tnd(reference)} a unit.", billed)
    if billed > base:
        text = "a dearer brand than the reference generic" if isinstance(item, Drug) else "above the tariff"
        work.step("tariff", f"{name}: {tnd(billed - base)} {text}, paid by the patient.", billed - base)
    if chronic:
        fund, rule = _percent_of(base, rules.chronic_disease_percent), f"chronic_disease.{chronic}"
        text = f"chronic disease {chronic} (APCI): {rules.chronic_disease_percent}% of {tnd(base)}"
    elif route.name == "amen_free":
        fund, rule = _percent_of(base, rules.amen_free_percent), "amen.free"
        text = f"Amen free care: {rules.amen_free_percent}% of {tnd(base)}"
    elif route.name == "amen_reduced":
        fee = min(base, rules.amen_reduced_fee_millimes[kind] * line.quantity)
        fund, rule = base - fee, f"amen.reduced_fees.{kind}"
        text = f"Amen reduced fee of {tnd(fee)} paid by the patient"
    elif isinstance(item, Drug) and route.name != "public_facility":
        percent = rules.drug_rate_percent[item.category]
        fund, rule = _percent_of(base, percent), f"drug_rates.{item.category}"
        text = f"category {item.category} medicine: {percent}% of {tnd(base)}"
    elif route.name == "reimbursement":
        percent = rules.act_rate_percent[kind]
        fund, rule = _percent_of(base, percent), f"act_rates.{kind}"
        text = f"reimbursement rate for {kind}: {percent}% of {tnd(base)}"
    else:
        setting = "public" if route.name == "public_facility" else "private"
        copayment = rules.copayment(setting, kind=kind, code=line.code)
        copay = _copay(copayment, base, line.quantity)
        fund = base - copay
        rule = f"copayments.{setting}.{line.code if line.code in rules.copayments_by_act[setting] else kind}"
        text = f"{setting} copayment (ticket modérateur) of {tnd(copay)} paid by the patient"
    work.step(rule, f"{name}: {text}; the fund's share is {tnd(fund)}.", fund)
    outside = item.outside_ceiling or chronic is not None
    return _Line(number, line, kind, billed, base, fund, base - fund, outside, rule)


def _cap_copay(lines: list[_Line], limit: int, rule: str, text: str, work: _Work) -> None:
    """Cap the copayments of `lines` at `limit` in line order; the fund pays what goes over."""
    remaining = limit
    for line in lines:
        kept = min(line.copay, remaining)
        if kept < line.copay:
            moved = line.copay - kept
            line.copay, line.fund, line.rule = kept, line.fund + moved, rule
            work.step(rule, f"Line {line.number}: {text}; the fund pays {tnd(moved)} more.", moved)
        remaining -= kept


def _apply_ceiling(lines: list[_Line], patient: PatientContext, usage: Usage, work: _Work) -> None:
    """Cut the fund share of in-ceiling lines to what remains of the family's annual ceiling."""
    rules = work.rules
    ceiling = family_ceiling_millimes(patient, rules)
    remaining = max(0, ceiling - usage.ceiling_used_millimes)
    work.step("annual_ceiling", f"Annual ceiling {tnd(ceiling)} for {patient.family_size} beneficiaries "
                                f"({rules.table_note('annual_ceiling')}); {tnd(usage.ceiling_used_millimes)} "
                                f"already used, {tnd(remaining)} remain.", remaining)
    for line in lines:
        if line.outside_ceiling:
            continue
        charged = min(line.fund, remaining)
        if charged < line.fund:
            line.ceiling_cut = line.fund - charged
            line.fund, line.rule = charged, "annual_ceiling"
            work.step("annual_ceiling", f"Line {line.number}: the ceiling leaves {tnd(charged)} to the fund; "
                                        f"the patient pays the other {tnd(line.ceiling_cut)}.", line.ceiling_cut)
        line.ceiling_charged = charged
        remaining -= charged


def _decision(claim: Claim, work: _Work, *, lines: list[_Line], route: _Route | None, chronic: str | None,
              payee: Payee | None = None, due: int | None = None, copay_charged: int = 0) -> Decision:
    frozen = tuple(line.frozen() for line in lines)
    fund = sum(line.fund_millimes for line in frozen)
    billed = sum(line.billed_millimes for line in frozen)
    return Decision(
        claim_number=claim.number, status="rejected" if work.reasons else "accepted",
        reasons=tuple(sorted(work.reasons)), lines=frozen, billed_millimes=billed, fund_millimes=fund,
        patient_millimes=billed - fund, ceiling_charged_millimes=sum(line.ceiling_charged_millimes for line in frozen),
        copay_charged_millimes=copay_charged, payee=payee, payment_due_days=due,
        route=route.name if route else None, chronic_disease=chronic, rules_on=work.rules.on,
        explanation=tuple(work.steps),
    )


def _line_kind(line: ClaimLine, item: Act | Drug | None) -> str:
    if isinstance(item, Act):
        return item.kind
    return "drug" if line.kind == "drug" else "act"  # "act": a code the nomenclature does not know


def _rejected(claim: Claim, work: _Work, route: _Route | None, chronic: str | None,
              items: list[Act | Drug | None]) -> Decision:
    for code in sorted(work.reasons):
        label = work.rules.rejection_reasons[code].label_en
        work.step(f"rejection.{code}", f"{code} {label}: {' '.join(work.reasons[code])}")
    # Nothing is priced on a rejected sheet: the patient's share is the whole amount, with no breakdown.
    lines = [_Line(n, line, _line_kind(line, item), line.unit_price_millimes * line.quantity,
                   line.unit_price_millimes * line.quantity, 0, 0, True, "rejected")
             for n, (line, item) in enumerate(zip(claim.lines, items, strict=True), start=1)]
    billed = sum(line.billed for line in lines)
    work.step("rejected", f"Rejected: the fund pays nothing; the patient pays {tnd(billed)}.", billed)
    return _decision(claim, work, lines=lines, route=route, chronic=chronic)


def adjudicate(claim: Claim, patient: PatientContext, provider: ProviderContext, usage: Usage,
               rules: RuleSet) -> Decision:
    """Decide a care sheet: accept or reject it, and split every line between the fund and the patient."""
    work = _Work(rules)
    _check_dates(claim, work)
    if not patient.covered:
        work.reject("R01", f"The patient's rights are not open on {claim.care_date.isoformat()}.")
    elif patient.scheme is None and patient.amen_level is None:
        work.reject("R01", "The patient has neither a care scheme nor an Amen card.")
    if not provider.contract_active:
        work.reject("R06", "The provider has no contract with the fund in force.")
    chronic = _chronic_disease(claim, patient, rules)
    route = _route(claim, patient, provider, chronic, work)
    items = _items(claim, provider, work)
    if work.reasons or route is None:
        return _rejected(claim, work, route, chronic, items)

    work.step(route.rule, route.text)
    if chronic:
        work.step(f"chronic_disease.{chronic}", f"The care is for the approved chronic disease {chronic} (APCI): "
                                                f"covered in full, no copayment, outside the annual ceiling "
                                                f"({rules.table_note('chronic_disease')}).")
    lines = [_price(n, line, item, route, chronic, work)
             for n, (line, item) in enumerate(zip(claim.lines, items, strict=True), start=1) if item is not None]

    if claim.kind == "hospital":
        cap = rules.hospital_stay_copay_cap_millimes
        _cap_copay(lines, cap, "hospital_stay_copay_cap", f"the copayment of a stay is capped at {tnd(cap)}", work)
    copay_charged = 0
    if patient.scheme == "public" and route.name == "public_facility":
        if patient.regime not in rules.copay_yearly_cap_millimes:
            raise ValueError(f"No yearly copayment cap for regime {patient.regime!r}; "
                             f"known regimes: {', '.join(rules.copay_yearly_cap_millimes)}.")
        cap = rules.copay_yearly_cap_millimes[patient.regime]
        left = max(0, cap - usage.copay_used_millimes)
        _cap_copay(lines, left, f"copay_yearly_caps.{patient.regime}",
                   f"the {patient.regime} yearly copayment cap of {tnd(cap)} leaves {tnd(left)} this year", work)
        copay_charged = sum(line.copay for line in lines)
    if (patient.scheme in rules.ceiling.schemes and claim.kind not in rules.ceiling.claim_kinds_outside
            and chronic is None and any(not line.outside_ceiling for line in lines)):
        _apply_ceiling(lines, patient, usage, work)

    payee = route.payee
    if payee == "provider":
        for suspension in rules.suspensions:
            if suspension.applies(category=provider.category, on=claim.care_date, chronic=chronic is not None):
                # The same sheet becomes a reimbursement file: the insured paid at the counter.
                payee, route = "insured", replace(route, name="reimbursement", payee="insured")
                end = suspension.end.isoformat() if suspension.end else "further notice"
                work.step("third_party_suspensions", f"Third-party payment by {provider.category} providers is "
                                                     f"suspended from {suspension.start.isoformat()} to {end} "
                                                     f"({suspension.source}): the fund reimburses the insured.")
                break
    due = rules.payment_due_days["insured" if payee == "insured" else provider.category]
    fund = sum(line.fund for line in lines)
    billed = sum(line.billed for line in lines)
    work.step("payment_deadlines", f"The fund pays {tnd(fund)} to the {payee} within {due} days; "
                                   f"the patient pays {tnd(billed - fund)}.", fund)
    return _decision(claim, work, lines=lines, route=route, chronic=chronic, payee=payee, due=due,
                     copay_charged=copay_charged)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (frozenset, set)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def _canonical(entry: tuple[Claim, PatientContext, ProviderContext]) -> tuple[str, str]:
    # The number first; the full content breaks ties so even two sheets with one number order the same way.
    return entry[0].number, json.dumps(_plain(entry), sort_keys=True)


def adjudicate_day(claims_with_contexts: Iterable[tuple[Claim, PatientContext, ProviderContext]], usage: Usage,
                   rules: RuleSet) -> list[Decision]:
    """Adjudicate one family's care sheets of a day in claim-number order, each seeing the usage of the ones before."""
    decisions: list[Decision] = []
    seen: set[str] = set()
    for claim, patient, provider in sorted(claims_with_contexts, key=_canonical):
        if claim.number in seen:
            work = _Work(rules)
            work.reject("R11", f"Care sheet {claim.number} was already adjudicated.")
            items = [(rules.acts if line.kind == "act" else rules.drugs).get(line.code) for line in claim.lines]
            decision = _rejected(claim, work, None, None, items)
        else:
            decision = adjudicate(claim, patient, provider, usage, rules)
        seen.add(claim.number)
        usage = usage.after(decision)
        decisions.append(decision)
    return decisions

