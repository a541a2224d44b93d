"""Property tests of adjudication money: shares add up, never go negative, respect the ceiling and the caps."""

from __future__ import annotations

import json
from datetime import date, timedelta
from itertools import permutations

from hypothesis import given, settings
from hypothesis import strategies as st

from labes.claims.adjudication import (
    Approval, Claim, ClaimLine, PatientContext, ProviderContext, Usage, adjudicate, adjudicate_day,
    family_ceiling_millimes,
)
from labes.claims.ruleset import load_acts, load_drugs, ruleset

ACT_CODES = sorted({a.code for a in load_acts()})
DRUG_CODES = sorted({d.code for d in load_drugs()})
REFERENCE = {a.code: a.tariff_millimes for a in load_acts()} | {d.code: d.public_price_millimes for d in load_drugs()}
DIAGNOSES = ("E11.9", "I10", "J45.9", "K29.7", "G40.9", "C50.9", "J02.9")
SPECIALTIES = (None, "cardiology", "gynaecology", "paediatrics", "orthopaedics")

# Mostly when the medicine list is in force, sometimes back to the 2008 grid.
recent = st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31))
any_day = st.dates(min_value=date(2008, 6, 3), max_value=date(2027, 12, 31))
care_dates = st.sampled_from((True,) * 5 + (False,)).flatmap(lambda is_recent: recent if is_recent else any_day)
mostly = st.sampled_from((True,) * 9 + (False,))


@st.composite
def lines(draw) -> ClaimLine:
    kind = draw(st.sampled_from(("act", "drug")))
    code = draw(st.sampled_from([*(ACT_CODES if kind == "act" else DRUG_CODES), "UNKNOWN"]))
    reference = REFERENCE.get(code, 10000)
    price = draw(st.integers(0, reference * 2) | st.just(reference))
    prescribed = draw(st.sampled_from((None,) * 12 + (6, 1)))
    return ClaimLine(code, kind, draw(st.integers(1, 6)), price, prescribed)


@st.composite
def claims(draw, *, number: str | None = None, care: date | None = None) -> Claim:
    care = care or draw(care_dates)
    last = care + timedelta(days=draw(st.integers(0, 12)))
    billed = draw(st.lists(lines(), min_size=1, max_size=5))
    approvals = tuple(Approval("AP-1", line.code, care - timedelta(days=draw(st.integers(0, 3))),
                               care + timedelta(days=draw(st.integers(-1, 30))))
                      for line in billed if draw(st.booleans()))
    return Claim(
        number=number or draw(st.sampled_from(("BS-1", "BS-2", "BS-3"))), care_date=care, last_care_date=last,
        submitted_on=last + timedelta(days=draw(st.integers(0, 60) | st.integers(-2, 70))),
        kind=draw(st.sampled_from(("consultation", "pharmacy", "lab", "imaging", "hospital", "dental", "physio"))),
        lines=tuple(billed), diagnoses=tuple(draw(st.lists(st.sampled_from(DIAGNOSES), max_size=2))),
        referral=draw(st.booleans()), approvals=approvals, cited_approval=draw(st.sampled_from(("AP-1", None))),
    )


@st.composite
def patients(draw) -> PatientContext:
    size = draw(st.integers(1, 8))
    scheme = draw(st.sampled_from(("public", "private", "reimbursement", None)))
    return PatientContext(
        scheme=scheme, regime=draw(st.sampled_from(("CNSS", "CNRPS", "PENSION"))), covered=draw(mostly),
        family_size=size, dependent_parents=draw(st.integers(0, min(2, size - 1))), pregnancy=draw(st.booleans()),
        chronic_diseases=frozenset(draw(st.sets(st.sampled_from(("01", "05", "11", "19"))))),
        chronic_icd10_covered=draw(st.sampled_from((None, None, True, False))),
        amen_level=draw(st.sampled_from(("free", "reduced", None))),
        family_doctor_id=draw(st.sampled_from(("D1", None))),
    )


@st.composite
def providers(draw) -> ProviderContext:
    sector = draw(st.sampled_from(("public", "private")))
    return ProviderContext(
        category=draw(st.sampled_from(("doctor", "pharmacy", "laboratory", "imaging", "clinic", "hospital", "dentist",
                                       "physiotherapist"))),
        professional_kind=draw(st.sampled_from(("general_practitioner", "specialist", "pharmacist", "dentist"))),
        specialty=draw(st.sampled_from(SPECIALTIES)), professional_id=draw(st.sampled_from(("D1", "D2"))),
        facility_sector=sector, facility_kind="regional_hospital" if sector == "public" else "private_clinic",
        contract_active=draw(mostly), tax_regime=draw(st.sampled_from(("actual", "flat"))),
    )


# Often close to a ceiling (300 to 750 TND) or to a yearly copayment cap (150 or 250 TND).
usages = st.builds(Usage, st.integers(0, 800_000) | st.integers(280_000, 620_000),
                   st.integers(0, 300_000) | st.integers(140_000, 250_000))


def check_money(decision) -> None:
    for line in decision.lines:
        assert line.fund_millimes >= 0 and line.patient_millimes >= 0
        assert line.fund_millimes + line.patient_millimes == line.billed_millimes
        assert 0 <= line.ceiling_charged_millimes <= line.fund_millimes
    assert decision.fund_millimes == sum(line.fund_millimes for line in decision.lines)
    assert decision.billed_millimes == sum(line.billed_millimes for line in decision.lines)
    assert decision.fund_millimes + decision.patient_millimes == decision.billed_millimes
    assert decision.ceiling_charged_millimes == sum(line.ceiling_charged_millimes for line in decision.lines)
    if not decision.accepted:
        assert decision.fund_millimes == 0 and decision.reasons


@settings(max_examples=400, deadline=None)
@given(claims(), patients(), providers(), usages)
def test_shares_add_up_and_are_never_negative(claim, patient, provider, usage):
    decision = adjudicate(claim, patient, provider, usage, ruleset(claim.care_date))
    check_money(decision)
    assert json.loads(json.dumps(decision.to_dict()))["billed_millimes"] == decision.billed_millimes
    if decision.accepted:
        for line in decision.lines:  # the patient's share is exactly its three parts
            assert line.patient_millimes == (line.copay_millimes + line.above_tariff_millimes
                                             + line.ceiling_cut_millimes)


@settings(max_examples=400, deadline=None)
@given(claims(), patients(), providers(), usages)
def test_the_fund_never_spends_more_than_the_ceiling_leaves(claim, patient, provider, usage):
    rules = ruleset(claim.care_date)
    decision = adjudicate(claim, patient, provider, usage, rules)
    ceiling = family_ceiling_millimes(patient, rules)
    remaining = max(0, ceiling - usage.ceiling_used_millimes)
    assert decision.ceiling_charged_millimes <= remaining
    if usage.ceiling_used_millimes <= ceiling:
        assert usage.ceiling_used_millimes + decision.ceiling_charged_millimes <= ceiling
    in_ceiling = [line for line in decision.lines if not line.outside_ceiling]
    if decision.accepted and patient.scheme in rules.ceiling.schemes and decision.chronic_disease is None \
            and claim.kind not in rules.ceiling.claim_kinds_outside:
        assert sum(line.fund_millimes for line in in_ceiling) == decision.ceiling_charged_millimes <= remaining
    else:
        assert decision.ceiling_charged_millimes == 0


@settings(max_examples=300, deadline=None)
@given(claims(), patients(), providers(), usages)
def test_copayments_respect_the_yearly_and_the_stay_caps(claim, patient, provider, usage):
    rules = ruleset(claim.care_date)
    decision = adjudicate(claim, patient, provider, usage, rules)
    if decision.copay_charged_millimes:
        cap = rules.copay_yearly_cap_millimes[patient.regime]
        assert decision.copay_charged_millimes <= max(0, cap - usage.copay_used_millimes)
    if decision.accepted and claim.kind == "hospital":
        assert sum(line.copay_millimes for line in decision.lines) <= rules.hospital_stay_copay_cap_millimes


@settings(max_examples=200, deadline=None)
@given(claims(), patients(), providers(), usages, st.integers(1, 200_000))
def test_more_usage_never_raises_the_fund_share(claim, patient, provider, usage, more):
    rules = ruleset(claim.care_date)
    spent = Usage(usage.ceiling_used_millimes + more, usage.copay_used_millimes)
    assert (adjudicate(claim, patient, provider, spent, rules).fund_millimes
            <= adjudicate(claim, patient, provider, usage, rules).fund_millimes)


@st.composite
def family_days(draw) -> tuple[date, list[tuple[Claim, PatientContext, ProviderContext]]]:
    care = draw(care_dates)
    entries = [(draw(claims(care=care, number=draw(st.sampled_from(("BS-1", "BS-2", "BS-3", "BS-4"))))),
                draw(patients()), draw(providers())) for _ in range(draw(st.integers(2, 4)))]
    return care, entries


@settings(max_examples=150, deadline=None)
@given(family_days(), usages)
def test_a_day_decides_the_same_whatever_the_arrival_order(day, usage):
    care, entries = day
    rules = ruleset(care)
    expected = adjudicate_day(entries, usage, rules)
    for order in permutations(entries):
        assert adjudicate_day(list(order), usage, rules) == expected
    assert [d.claim_number for d in expected] == sorted(d.claim_number for d in expected)
    for decision in expected:
        check_money(decision)
    # Each sheet charges at most what the ceiling leaves after the ones before, so the day never overspends.
    ceiling = max(family_ceiling_millimes(p, rules) for _, p, _ in entries)
    assert sum(d.ceiling_charged_millimes for d in expected) <= max(0, ceiling - usage.ceiling_used_millimes)
    numbers = [d.claim_number for d in expected]
    assert all(d.reasons == ("R11",) for i, d in enumerate(expected) if d.claim_number in numbers[:i])


@settings(max_examples=150, deadline=None)
@given(family_days(), usages)
def test_a_day_threads_usage_claim_by_claim(day, usage):
    care, entries = day
    rules = ruleset(care)
    numbers = [claim.number for claim, _, _ in entries]
    running = usage
    for decision, (claim, patient, provider) in zip(adjudicate_day(entries, usage, rules),
                                                    sorted(entries, key=lambda e: e[0].number), strict=True):
        assert decision.claim_number == claim.number
        if numbers.count(claim.number) == 1:  # sheets sharing a number are ordered by content, not checked here
            alone = adjudicate(claim, patient, provider, running, rules)
            assert (alone.fund_millimes, alone.ceiling_charged_millimes) == (decision.fund_millimes,
                                                                             decision.ceiling_charged_millimes)
        running = running.after(decision)
