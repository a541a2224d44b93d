"""Adjudication rule by rule, at its edges: the day before, of and after; exactly reached and one millime over."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from labes.claims.adjudication import (
    Claim, ClaimLine, PatientContext, Usage, adjudicate_day, family_ceiling_millimes, tax_withheld_millimes,
)
from labes.claims.ruleset import ruleset
from tests.claims.builders import (
    ON, act, approval, clinic, decide, dentist, drug, family_doctor, health_centre, imaging_centre, laboratory,
    other_gp, patient, pharmacy, provider, public_hospital, sheet, specialist,
)

CLAMOXYL, AMOXICILLIN_GENERIC, LANTUS, DOLIPRANE, HERCEPTIN = "500118", "500129", "500817", "500419", "502914"


def rejected_with(decision, *codes):
    assert decision.status == "rejected" and decision.reasons == tuple(sorted(codes)), decision.explanation
    assert decision.fund_millimes == 0 and decision.patient_millimes == decision.billed_millimes
    assert decision.payee is None and decision.payment_due_days is None


class TestDates:
    def test_day_60_after_the_last_date_of_care_is_in_time(self):
        claim = sheet(act("C"), care=ON, submitted=ON + timedelta(days=60))
        assert decide(claim, patient(), family_doctor()).accepted

    def test_day_61_is_late(self):
        decision = decide(sheet(act("C"), care=ON, submitted=ON + timedelta(days=61)), patient(), family_doctor())
        rejected_with(decision, "R03")
        assert "61 days" in decision.explanation[0].text

    def test_the_deadline_runs_from_the_last_date_of_care(self):
        claim = sheet(act("HOSP-JOUR", 12), kind="hospital", care=ON - timedelta(days=11), last=ON,
                      submitted=ON + timedelta(days=60))
        assert decide(claim, patient(), clinic()).accepted

    def test_care_after_the_submission_is_in_the_future(self):
        claim = sheet(act("C"), care=ON, submitted=ON - timedelta(days=1))
        rejected_with(decide(claim, patient(), family_doctor()), "R12")

    def test_care_submitted_the_same_day_is_not_in_the_future(self):
        assert decide(sheet(act("C"), care=ON, submitted=ON), patient(), family_doctor()).accepted


class TestWhoAndWhat:
    def test_rights_closed_on_the_date_of_care(self):
        rejected_with(decide(sheet(act("C")), patient(covered=False), family_doctor()), "R01")

    def test_neither_a_scheme_nor_an_amen_card(self):
        rejected_with(decide(sheet(act("C")), patient(None), health_centre()), "R01")

    def test_provider_without_an_active_contract(self):
        rejected_with(decide(sheet(act("C")), patient(), provider(contract=False)), "R06")

    def test_unknown_act_and_unknown_medicine(self):
        claim = sheet(ClaimLine("ZZZ", "act", 1, 1000), ClaimLine("999999", "drug", 1, 1000), kind="pharmacy")
        decision = decide(claim, patient(), pharmacy())
        rejected_with(decision, "R08", "R09")
        assert [line.kind for line in decision.lines] == ["act", "drug"]

    def test_a_medicine_before_the_list_starts_is_unknown(self):
        line = ClaimLine(CLAMOXYL, "drug", 1, 9450)
        claim = sheet(line, kind="pharmacy", care=date(2024, 12, 31))
        rejected_with(decide(claim, patient(), pharmacy()), "R09")

    def test_quantity_above_the_prescription(self):
        rejected_with(decide(sheet(act("B-GLY", 2, prescribed=1), kind="lab"), patient(), laboratory()), "R10")
        assert decide(sheet(act("B-GLY", 2, prescribed=2), kind="lab"), patient(), laboratory()).accepted

    def test_a_specialist_act_billed_without_a_specialty(self):
        rejected_with(decide(sheet(act("CS")), patient(), family_doctor()), "R15")

    def test_every_reason_is_reported_at_once(self):
        claim = sheet(act("CS"), submitted=ON + timedelta(days=90))
        decision = decide(claim, patient(covered=False), provider(contract=False))
        rejected_with(decision, "R01", "R03", "R06", "R15")
        assert [s.rule for s in decision.explanation[:4]] == [f"rejection.{c}" for c in ("R01", "R03", "R06", "R15")]


class TestPriorApproval:
    def mri(self, *approvals, cited="AP-1", by=None):
        claim = sheet(act("IRM"), kind="imaging", approvals=approvals, cited_approval=cited)
        return decide(claim, patient(), by or imaging_centre())

    def test_missing(self):
        rejected_with(self.mri(cited=None), "R05")

    def test_valid_from_its_first_to_its_last_day(self):
        assert self.mri(approval("IRM", valid_from=ON, valid_to=ON + timedelta(days=30))).accepted
        assert self.mri(approval("IRM", valid_from=ON - timedelta(days=30), valid_to=ON)).accepted

    def test_expired_the_day_before_or_not_yet_valid(self):
        rejected_with(self.mri(approval("IRM", valid_from=ON - timedelta(days=30), valid_to=ON - timedelta(days=1))),
                      "R05")
        rejected_with(self.mri(approval("IRM", valid_from=ON + timedelta(days=1), valid_to=ON + timedelta(days=9))),
                      "R05")

    def test_for_another_code_or_another_number(self):
        rejected_with(self.mri(approval("TDM")), "R05")
        rejected_with(self.mri(approval("IRM", number="AP-2")), "R05")

    def test_one_number_may_cover_several_codes(self):
        claim = sheet(act("IRM"), act("TDM"), kind="imaging", approvals=(approval("IRM"), approval("TDM")),
                      cited_approval="AP-1")
        assert decide(claim, patient(), imaging_centre()).accepted

    def test_not_asked_in_a_public_facility(self):
        claim = sheet(act("IRM"), kind="imaging")
        assert decide(claim, patient("public"), imaging_centre("public")).accepted

    def test_a_specific_medicine_needs_one(self):
        claim = sheet(drug(HERCEPTIN), kind="pharmacy")
        rejected_with(decide(claim, patient(), pharmacy()), "R05")


class TestPrivateScheme:
    def test_the_family_doctor_is_paid_third_party_and_the_patient_pays_the_copayment(self):
        decision = decide(sheet(act("C")), patient(), family_doctor())
        assert (decision.fund_millimes, decision.patient_millimes) == (13000, 5000)
        assert (decision.payee, decision.payment_due_days, decision.route) == ("provider", 15, "third_party")
        assert decision.lines[0].rule == "copayments.private.consultation"
        assert decision.ceiling_charged_millimes == 13000

    def test_another_gp_needs_a_referral(self):
        rejected_with(decide(sheet(act("C")), patient(), other_gp()), "R13")
        assert decide(sheet(act("C"), referral=True), patient(), other_gp()).accepted

    def test_a_specialist_needs_a_referral(self):
        rejected_with(decide(sheet(act("CS")), patient(), specialist()), "R04")
        decision = decide(sheet(act("CS"), referral=True), patient(), specialist())
        assert (decision.fund_millimes, decision.patient_millimes) == (22000, 8000)

    @pytest.mark.parametrize("specialty", ["gynaecology", "ophthalmology", "paediatrics"])
    def test_direct_access_specialties(self, specialty):
        assert decide(sheet(act("CS")), patient(), specialist(specialty)).accepted

    def test_dental_care_is_direct_and_reimbursed_to_the_insured(self):
        decision = decide(sheet(act("CD"), kind="dental"), patient(), dentist())
        assert (decision.payee, decision.route, decision.fund_millimes) == ("insured", "reimbursement", 24000)
        assert decision.payment_due_days == ruleset(ON).payment_due_days["insured"]

    def test_outpatient_care_in_a_public_facility_is_outside_the_scheme(self):
        rejected_with(decide(sheet(act("C")), patient(), health_centre()), "R14")

    def test_a_lab_pays_a_percentage_copayment(self):
        decision = decide(sheet(act("B-HBA1C"), kind="lab"), patient(), laboratory())
        assert (decision.fund_millimes, decision.lines[0].copay_millimes) == (16000, 4000)


class TestPublicScheme:
    def test_the_fund_pays_the_facility_and_the_patient_the_copayment(self):
        decision = decide(sheet(act("C")), patient("public"), health_centre())
        assert (decision.fund_millimes, decision.patient_millimes, decision.copay_charged_millimes) == (13000, 5000,
                                                                                                       5000)
        assert (decision.payee, decision.ceiling_charged_millimes) == ("facility", 0)

    @pytest.mark.parametrize(("used", "copay"), [(244999, 5000), (245000, 5000), (245001, 4999), (250000, 0),
                                                 (400000, 0)])
    def test_the_yearly_copayment_cap(self, used, copay):
        decision = decide(sheet(act("C")), patient("public"), health_centre(), Usage(copay_used_millimes=used))
        assert decision.copay_charged_millimes == copay
        assert decision.fund_millimes == 18000 - copay

    def test_the_cap_depends_on_the_regime(self):
        usage = Usage(copay_used_millimes=148000)
        decision = decide(sheet(act("C")), patient("public", regime="PENSION"), health_centre(), usage)
        assert decision.copay_charged_millimes == 2000

    def test_a_private_provider_is_outside_the_scheme(self):
        rejected_with(decide(sheet(act("C")), patient("public"), family_doctor()), "R14")

    def test_chronic_disease_medicines_at_a_private_pharmacy(self):
        claim = sheet(drug(LANTUS), kind="pharmacy", diagnoses=("E10.9",))
        decision = decide(claim, patient("public", chronic_diseases={"01"}), pharmacy())
        assert (decision.payee, decision.route, decision.chronic_disease) == ("provider", "third_party", "01")


class TestHospitalStay:
    @pytest.mark.parametrize(("days", "copay"), [(8, 80000), (9, 80000), (1, 10000)])
    def test_public_hospital_copayment_is_capped_per_stay(self, days, copay):
        claim = sheet(act("HOSP-JOUR", days), kind="hospital", care=ON - timedelta(days=days - 1), last=ON)
        decision = decide(claim, patient("public"), public_hospital())
        assert decision.copay_charged_millimes == copay and decision.payee == "facility"
        assert decision.patient_millimes == copay

    def test_a_stay_follows_the_same_rules_in_every_scheme(self):
        claim = sheet(act("HOSP-JOUR", 9), kind="hospital", care=ON - timedelta(days=8), last=ON)
        for scheme in ("private", "reimbursement"):
            decision = decide(claim, patient(scheme), public_hospital())
            assert (decision.payee, decision.patient_millimes, decision.copay_charged_millimes) == (
                "facility", 80000, 0)

    def test_a_clinic_stay_is_third_party_with_the_cap(self):
        claim = sheet(act("ANGIO-COR"), act("HOSP-JOUR", 3), kind="hospital", approvals=(approval("ANGIO-COR"),),
                      cited_approval="AP-1")
        decision = decide(claim, patient("reimbursement"), clinic())
        assert (decision.payee, decision.payment_due_days) == ("provider", 21)
        assert decision.patient_millimes == 80000  # 10% of 3,860 TND, capped
        assert decision.ceiling_charged_millimes == 0


class TestReimbursementScheme:
    def test_the_fund_reimburses_its_rate_to_the_insured(self):
        decision = decide(sheet(act("C")), patient("reimbursement"), other_gp())
        assert (decision.payee, decision.fund_millimes, decision.payment_due_days) == ("insured", 14400, 30)

    def test_above_the_tariff_is_the_patients(self):
        decision = decide(sheet(act("CS", price=40000)), patient("reimbursement"), specialist())
        line = decision.lines[0]
        assert (line.fund_millimes, line.above_tariff_millimes, line.patient_millimes) == (24000, 10000, 16000)

    def test_public_and_private_providers_alike(self):
        assert decide(sheet(act("C")), patient("reimbursement"), health_centre()).payee == "insured"


class TestMedicines:
    def test_a_dearer_brand_leaves_the_difference_to_the_patient(self):
        decision = decide(sheet(drug(CLAMOXYL, 2), kind="pharmacy"), patient(), pharmacy())
        line = decision.lines[0]
        assert (line.billed_millimes, line.fund_millimes) == (18900, 11560)  # 85% of 2 × 6.800
        assert line.above_tariff_millimes == 5300 and line.patient_millimes == 7340

    def test_the_generic_at_the_reference_tariff(self):
        decision = decide(sheet(drug(AMOXICILLIN_GENERIC), kind="pharmacy"), patient(), pharmacy())
        assert (decision.fund_millimes, decision.patient_millimes) == (5780, 1020)

    @pytest.mark.parametrize(("code", "fund"), [(LANTUS, 84200), (DOLIPRANE, 560)])
    def test_rates_by_category(self, code, fund):
        assert decide(sheet(drug(code), kind="pharmacy"), patient(), pharmacy()).fund_millimes == fund

    @pytest.mark.parametrize(("unit", "fund"), [(10, 9), (1430, 1216), (1, 1), (3, 3)])
    def test_rounding_is_half_up_once_per_line(self, unit, fund):
        # 85% of 10 = 8.5 → 9; of 1,430 = 1,215.5 → 1,216; of 1 = 0.85 → 1; of 3 = 2.55 → 3
        decision = decide(sheet(drug(CLAMOXYL, price=unit), kind="pharmacy"), patient(), pharmacy())
        assert decision.fund_millimes == fund

    def test_rounding_applies_to_the_line_not_the_unit(self):
        # 85% of 3 × 10 = 25.5 → 26, where three rounded units would give 27.
        decision = decide(sheet(drug(CLAMOXYL, 3, price=10), kind="pharmacy"), patient(), pharmacy())
        assert decision.fund_millimes == 26

    def test_a_specific_medicine_is_outside_the_ceiling(self):
        claim = sheet(drug(HERCEPTIN), kind="pharmacy", approvals=(approval(HERCEPTIN),), cited_approval="AP-1")
        decision = decide(claim, patient(), pharmacy(), Usage(ceiling_used_millimes=10**7))
        assert decision.fund_millimes == 1420000 and decision.ceiling_charged_millimes == 0


class TestChronicDisease:
    def test_covered_in_full_outside_the_ceiling(self):
        claim = sheet(act("C"), diagnoses=("E11.9",))
        decision = decide(claim, patient(chronic_diseases={"01"}), family_doctor(), Usage(ceiling_used_millimes=10**6))
        assert (decision.fund_millimes, decision.patient_millimes, decision.ceiling_charged_millimes) == (18000, 0, 0)
        assert decision.lines[0].rule == "chronic_disease.01"

    def test_a_diagnosis_outside_the_approved_diseases(self):
        claim = sheet(act("C"), diagnoses=("I10",))
        assert decide(claim, patient(chronic_diseases={"01"}), family_doctor()).chronic_disease is None

    def test_a_diagnosis_without_an_approved_file(self):
        assert decide(sheet(act("C"), diagnoses=("E11.9",)), patient(), family_doctor()).chronic_disease is None

    def test_the_callers_finding_overrides_the_diagnoses(self):
        who = patient(chronic_diseases={"05"}, chronic_icd10_covered=True)
        assert decide(sheet(act("C")), who, family_doctor()).chronic_disease == "05"
        who = patient(chronic_diseases={"01"}, chronic_icd10_covered=False)
        assert decide(sheet(act("C"), diagnoses=("E11",)), who, family_doctor()).chronic_disease is None

    def test_a_dearer_brand_still_costs_the_difference(self):
        claim = sheet(drug(CLAMOXYL), kind="pharmacy", diagnoses=("J45.9",))
        decision = decide(claim, patient(chronic_diseases={"11"}), pharmacy())
        assert (decision.fund_millimes, decision.patient_millimes) == (6800, 2650)


class TestAnnualCeiling:
    @pytest.mark.parametrize(("size", "ceiling"), [(1, 300000), (2, 375000), (3, 450000), (4, 525000),
                                                   (5, 600000), (6, 600000), (9, 600000)])
    def test_the_2023_grid_by_number_of_beneficiaries(self, size, ceiling):
        assert family_ceiling_millimes(patient(family_size=size), ruleset(ON)) == ceiling

    @pytest.mark.parametrize(("size", "parents", "ceiling"), [(3, 2, 450000), (5, 2, 600000), (6, 1, 675000),
                                                              (6, 2, 675000), (7, 2, 750000), (8, 2, 750000)])
    def test_parents_add_when_they_bring_the_family_above_five(self, size, parents, ceiling):
        who = patient(family_size=size, dependent_parents=parents)
        assert family_ceiling_millimes(who, ruleset(ON)) == ceiling

    def test_pregnancy_follow_up(self):
        assert family_ceiling_millimes(patient(family_size=2, pregnancy=True), ruleset(ON)) == 525000

    @pytest.mark.parametrize(("on", "size", "ceiling"), [
        (date(2023, 8, 11), 1, 200000), (date(2023, 8, 11), 5, 400000), (date(2023, 8, 11), 6, 400000),
        (date(2023, 8, 12), 1, 300000), (date(2008, 6, 3), 3, 300000),
    ])
    def test_the_2008_grid_until_the_2023_one(self, on, size, ceiling):
        who = patient(family_size=size, dependent_parents=1 if size > 5 else 0, pregnancy=True)
        expected = ceiling + (0 if on < date(2023, 8, 12) else 150000)
        assert family_ceiling_millimes(who, ruleset(on)) == expected

    def test_exactly_reached(self):
        decision = decide(sheet(act("C")), patient(), family_doctor(), Usage(ceiling_used_millimes=300000 - 13000))
        assert (decision.fund_millimes, decision.ceiling_charged_millimes) == (13000, 13000)
        assert "annual_ceiling" not in {line.rule for line in decision.lines}

    def test_exceeded_by_one_millime(self):
        decision = decide(sheet(act("C")), patient(), family_doctor(), Usage(ceiling_used_millimes=300000 - 12999))
        line = decision.lines[0]
        assert (line.fund_millimes, line.ceiling_cut_millimes, line.patient_millimes) == (12999, 1, 5001)
        assert line.rule == "annual_ceiling" and decision.ceiling_charged_millimes == 12999

    def test_used_up(self):
        decision = decide(sheet(act("C")), patient(), family_doctor(), Usage(ceiling_used_millimes=350000))
        assert decision.accepted and decision.fund_millimes == 0 and decision.patient_millimes == 18000

    def test_the_cut_goes_in_line_order(self):
        claim = sheet(act("B-GLY"), act("B-CREAT"), kind="lab")
        decision = decide(claim, patient(), laboratory(), Usage(ceiling_used_millimes=300000 - 3000))
        assert [line.fund_millimes for line in decision.lines] == [2400, 600]

    def test_outside_ceiling_acts_are_not_charged(self):
        claim = sheet(act("IRM"), act("R-THORAX"), kind="imaging", approvals=(approval("IRM"),),
                      cited_approval="AP-1")
        decision = decide(claim, patient(), imaging_centre(), Usage(ceiling_used_millimes=300000))
        assert [line.fund_millimes for line in decision.lines] == [240000, 0]
        assert decision.ceiling_charged_millimes == 0

    def test_the_public_scheme_has_no_ceiling(self):
        decision = decide(sheet(act("C")), patient("public"), health_centre(), Usage(ceiling_used_millimes=10**7))
        assert decision.fund_millimes == 13000 and decision.ceiling_charged_millimes == 0


class TestAmen:
    def test_free_care_in_a_public_facility(self):
        decision = decide(sheet(act("C")), patient(None, amen_level="free"), health_centre())
        assert (decision.fund_millimes, decision.patient_millimes, decision.payee) == (18000, 0, "facility")

    def test_reduced_fee(self):
        decision = decide(sheet(act("C")), patient(None, amen_level="reduced"), health_centre())
        assert (decision.fund_millimes, decision.patient_millimes) == (16500, 1500)

    def test_reduced_fee_of_a_stay_is_capped_too(self):
        claim = sheet(act("HOSP-JOUR", 20), kind="hospital", care=ON - timedelta(days=19), last=ON)
        decision = decide(claim, patient(None, amen_level="reduced"), public_hospital())
        assert decision.patient_millimes == 80000

    def test_outside_a_public_facility(self):
        rejected_with(decide(sheet(act("C")), patient(None, amen_level="free"), family_doctor()), "R07")


class TestThirdPartySuspension:
    def pharmacy_sheet(self, on, *, chronic=False):
        return sheet(drug(AMOXICILLIN_GENERIC, on=on), kind="pharmacy", care=on,
                     diagnoses=("E11.9",) if chronic else ("J02.9",))

    def who(self):
        return patient(chronic_diseases={"01"})

    @pytest.mark.parametrize(("on", "ordinary", "chronic"), [
        (date(2025, 10, 26), "provider", "provider"),
        (date(2025, 10, 27), "insured", "provider"),
        (date(2025, 12, 7), "insured", "provider"),
        (date(2025, 12, 8), "insured", "insured"),
        (date(2027, 3, 1), "insured", "insured"),
    ])
    def test_pharmacies_on_each_side_of_each_period(self, on, ordinary, chronic):
        assert decide(self.pharmacy_sheet(on), self.who(), pharmacy()).payee == ordinary
        assert decide(self.pharmacy_sheet(on, chronic=True), self.who(), pharmacy()).payee == chronic

    def test_the_fund_share_is_the_same(self):
        before = decide(self.pharmacy_sheet(date(2025, 10, 26)), self.who(), pharmacy())
        during = decide(self.pharmacy_sheet(date(2025, 10, 27)), self.who(), pharmacy())
        assert (before.fund_millimes, before.patient_millimes) == (during.fund_millimes, during.patient_millimes)
        assert (before.payment_due_days, during.payment_due_days) == (7, 30)
        assert "third_party_suspensions" in {step.rule for step in during.explanation}
        # The sheet became a reimbursement file: reports by route count it so.
        assert (before.route, during.route) == ("third_party", "reimbursement")

    def test_other_providers_and_public_pharmacies_are_not_suspended(self):
        on = date(2025, 12, 8)
        assert decide(sheet(act("C"), care=on), patient(), family_doctor()).payee == "provider"
        claim = self.pharmacy_sheet(on)
        assert decide(claim, patient("public"), pharmacy("public")).payee == "facility"


class TestDay:
    def test_the_lower_number_spends_the_ceiling_first(self):
        later = sheet(act("C"), number="BS-0002")
        first = sheet(act("B-GLY"), kind="lab", number="BS-0001")
        usage = Usage(ceiling_used_millimes=300000 - 14000)
        decisions = adjudicate_day([(later, patient(), family_doctor()), (first, patient(), laboratory())], usage,
                                   ruleset(ON))
        assert [d.claim_number for d in decisions] == ["BS-0001", "BS-0002"]
        assert [d.fund_millimes for d in decisions] == [2400, 11600]

    def test_a_repeated_number_is_a_duplicate(self):
        claim = sheet(act("C"))
        decisions = adjudicate_day([(claim, patient(), family_doctor())] * 2, Usage(), ruleset(ON))
        assert decisions[0].accepted
        rejected_with(decisions[1], "R11")
        assert decisions[1].lines[0].kind == "consultation"

    def test_public_copayments_are_threaded_too(self):
        claims = [(sheet(act("C"), number=f"BS-{n}"), patient("public"), health_centre()) for n in range(3)]
        decisions = adjudicate_day(claims, Usage(copay_used_millimes=241000), ruleset(ON))
        assert [d.copay_charged_millimes for d in decisions] == [5000, 4000, 0]


class TestDecision:
    def test_to_dict_is_json(self):
        decision = decide(sheet(drug(CLAMOXYL), kind="pharmacy"), patient(), pharmacy())
        data = json.loads(json.dumps(decision.to_dict()))
        assert data["fund_millimes"] + data["patient_millimes"] == data["billed_millimes"]
        assert data["rules_on"] == ON.isoformat() and data["lines"][0]["rule"] == "drug_rates.E"
        assert all(step["rule"] and step["text"] for step in data["explanation"])

    def test_every_accepted_decision_ends_with_who_is_paid_what(self):
        decision = decide(sheet(act("C")), patient(), family_doctor())
        assert decision.explanation[-1].rule == "payment_deadlines"
        assert decision.explanation[-1].amount_millimes == decision.fund_millimes

    @pytest.mark.parametrize(("gross", "regime", "tax"), [(1000, "actual", 30), (50, "actual", 2), (49, "actual", 1),
                                                          (1000, "flat", 100), (0, "flat", 0)])
    def test_tax_withheld_at_source(self, gross, regime, tax):
        assert tax_withheld_millimes(gross, regime, ruleset(ON)) == tax


class TestMalformedInput:
    def test_lines_need_a_quantity_and_a_price(self):
        with pytest.raises(ValueError, match="at least 1"):
            ClaimLine("C", "act", 0, 18000)
        with pytest.raises(ValueError, match="not negative"):
            ClaimLine("C", "act", 1, -1)

    def test_a_sheet_needs_lines_and_ordered_dates(self):
        with pytest.raises(ValueError, match="no line"):
            Claim("BS-1", ON, ON, ON, "consultation", ())
        with pytest.raises(ValueError, match="before the first"):
            Claim("BS-1", ON, ON - timedelta(days=1), ON, "consultation", (act("C"),))

    def test_a_family_has_a_beneficiary_and_parents_belong_to_it(self):
        with pytest.raises(ValueError):
            PatientContext("private", "CNSS", True, family_size=0)
        with pytest.raises(ValueError):
            PatientContext("private", "CNSS", True, family_size=2, dependent_parents=2)

    def test_a_public_scheme_patient_needs_a_known_regime(self):
        with pytest.raises(ValueError, match="regime"):
            decide(sheet(act("C")), patient("public", regime="OTHER"), health_centre())
