"""The claims rule data: every row parses, versions switch on their dates, the tables are complete."""

from __future__ import annotations

import csv
import json
import re
from datetime import date, timedelta
from importlib import resources
from pathlib import Path

import pytest

from labes.claims import adjudication, ruleset as ruleset_module
from labes.claims.ruleset import (
    ACT_KINDS, LINE_KINDS, PROVIDER_CATEGORIES, Act, icd10_in_ranges, load_acts, load_drugs, load_rejection_reasons,
    ruleset,
)

RULES = resources.files("labes.rules")
ON = date(2025, 6, 2)


def raw_rows(name: str) -> list[dict[str, str]]:
    with RULES.joinpath(name).open("r", encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


class TestActs:
    def test_every_row_parses_with_a_source(self):
        acts = load_acts()
        assert len(acts) == len(raw_rows("acts.csv"))
        assert {a.kind for a in acts} == set(ACT_KINDS)
        assert all(a.source and a.label_fr and a.label_ar for a in acts)

    def test_consultation_tariffs_come_from_rules_md(self):
        acts = ruleset(ON).acts
        assert acts["C"].tariff_millimes == 18000
        assert acts["CS"].tariff_millimes == 30000 and acts["CS"].specialist_only
        assert (acts["CD"].tariff_millimes, acts["CDS"].tariff_millimes) == (30000, 45000)

    def test_ct_mri_and_cardiac_imaging_need_approval_and_stay_outside_the_ceiling(self):
        acts = ruleset(ON).acts
        for code in ("TDM", "IRM", "SCINTI-MYO"):
            assert acts[code].prior_approval and acts[code].outside_ceiling
        assert acts["ANGIO-COR"].prior_approval and acts["HEMODIALYSE"].outside_ceiling

    def test_amounts_without_a_source_are_marked_default(self):
        for act in load_acts():
            if act.code not in ("C", "CS", "CD", "CDS"):
                assert "(default)" in act.source or "tariff (default)" in act.source, act.code

    def test_a_row_is_in_force_from_its_first_to_its_last_day(self):
        first = Act("X", "x", "x", "lab", 1, False, False, False, date(2020, 1, 1), date(2020, 12, 31), "test")
        later = Act("X", "x", "x", "lab", 2, False, False, False, date(2021, 1, 1), None, "test")
        in_force = ruleset_module._in_force((first, later), date(2020, 12, 31))
        assert in_force["X"].tariff_millimes == 1
        assert ruleset_module._in_force((first, later), date(2021, 1, 1))["X"].tariff_millimes == 2
        assert ruleset_module._in_force((first, later), date(2019, 12, 31)) == {}

    def test_two_rows_of_one_code_may_not_overlap(self):
        first = Act("X", "x", "x", "lab", 1, False, False, False, date(2020, 1, 1), None, "test")
        later = Act("X", "x", "x", "lab", 2, False, False, False, date(2021, 1, 1), None, "test")
        with pytest.raises(ValueError, match="two rows are in force"):
            ruleset_module._check_periods((first, later), "Act")


class TestDrugs:
    def test_every_row_parses(self):
        drugs = load_drugs()
        assert len(drugs) == len(raw_rows("drugs.csv")) >= 60
        assert len({d.code for d in drugs}) == len(drugs)
        assert all(re.fullmatch(r"\d{6}", d.code) for d in drugs)

    def test_reference_tariff_is_the_cheapest_of_the_group_and_never_above_the_price(self):
        groups: dict[str, list] = {}
        for drug in load_drugs():
            groups.setdefault(drug.generic_group, []).append(drug)
            assert drug.reference_tariff_millimes <= drug.public_price_millimes, drug.code
        for group, members in groups.items():
            cheapest = min(d.public_price_millimes for d in members)
            assert {d.reference_tariff_millimes for d in members} == {cheapest}, group
            assert len({(d.inn, d.strength, d.category) for d in members}) == 1, group

    def test_brands_have_generics_and_specific_drugs_need_approval(self):
        groups = {d.generic_group for d in load_drugs()}
        with_generics = {g for g in groups if sum(d.generic_group == g for d in load_drugs()) > 1}
        assert len(with_generics) >= 20
        specific = [d for d in load_drugs() if d.prior_approval]
        assert len(specific) >= 2 and all(d.outside_ceiling and d.category == "V" for d in specific)

    def test_the_list_starts_on_its_effective_date(self):
        assert ruleset(date(2024, 12, 31)).drugs == {}
        assert len(ruleset(date(2025, 1, 1)).drugs) == len(load_drugs())


class TestRejectionReasons:
    def test_codes_are_unique_and_labelled_in_three_languages(self):
        rows = raw_rows("rejection_reasons.csv")
        assert len({r["code"] for r in rows}) == len(rows)
        assert all(r["label_fr"] and r["label_ar"] and r["label_en"] for r in rows)
        assert set(load_rejection_reasons()) == {r["code"] for r in rows}

    def test_every_code_adjudication_uses_is_published(self):
        sources = "".join(Path(m.__file__).read_text("utf-8") for m in (adjudication,))
        used = set(re.findall(r'"(R\d\d)"', sources))
        assert used and used <= set(load_rejection_reasons())

    def test_the_required_reasons_are_there(self):
        labels = " ".join(r.label_en.lower() for r in load_rejection_reasons().values())
        for words in ("not covered", "card does not match", "after the deadline", "without a referral",
                      "prior approval", "active contract", "amen card", "nomenclature", "medicine not on",
                      "above the prescription", "duplicate", "in the future"):
            assert words in labels, words


class TestRuleVersions:
    def test_no_rules_before_the_first_version(self):
        with pytest.raises(LookupError, match="2008-06-02"):
            ruleset(date(2008, 6, 2))

    @pytest.mark.parametrize(("on", "grid"), [
        (date(2008, 6, 3), (200000, 250000, 300000, 350000, 400000)),
        (date(2023, 8, 11), (200000, 250000, 300000, 350000, 400000)),
        (date(2023, 8, 12), (300000, 375000, 450000, 525000, 600000)),
        (date(2026, 1, 1), (300000, 375000, 450000, 525000, 600000)),
    ])
    def test_the_ceiling_grid_in_force(self, on, grid):
        rules = ruleset(on)
        assert rules.ceiling.by_family_size_millimes == grid
        assert rules.tables["annual_ceiling"].effective_from == (date(2008, 6, 3) if grid[0] == 200000
                                                                 else date(2023, 8, 12))

    def test_every_table_in_force_has_a_date_and_a_source(self):
        for on in (date(2008, 6, 3), ON, date(2025, 12, 8)):
            rules = ruleset(on)
            assert all(v.source and v.effective_from <= on for v in rules.tables.values())

    def test_tables_cover_every_kind_and_category(self):
        rules = ruleset(ON)
        assert set(rules.act_rate_percent) >= set(ACT_KINDS)
        assert set(rules.copayments["public"]) >= set(LINE_KINDS)
        assert set(rules.copayments["private"]) >= set(ACT_KINDS)
        assert set(rules.amen_reduced_fee_millimes) >= set(LINE_KINDS)
        assert set(rules.payment_due_days) >= {*PROVIDER_CATEGORIES, "insured"}
        assert (rules.payment_due_days["pharmacy"], rules.payment_due_days["doctor"],
                rules.payment_due_days["clinic"]) == (7, 15, 21)
        assert rules.care_sheet_deadline_days == 60
        assert rules.hospital_stay_copay_cap_millimes == 80000
        assert {k: int(v) for k, v in rules.drug_rate_percent.items()} == {"V": 100, "E": 85, "I": 40}
        assert {k: int(v) for k, v in rules.tax_withheld_percent.items()} == {"actual": 3, "flat": 10}

    def test_a_specific_act_copayment_overrides_its_kind(self):
        rules = ruleset(ON)
        assert rules.copayment("private", kind="consultation", code="CS").amount_millimes == 8000
        assert rules.copayment("private", kind="consultation", code="C").amount_millimes == 5000

    def test_the_pharmacists_suspension_has_two_periods(self):
        assert ruleset(date(2025, 10, 26)).suspensions == ()
        periods = ruleset(date(2025, 10, 27)).suspensions
        assert [(p.start, p.end, p.scope) for p in periods] == [
            (date(2025, 10, 27), date(2025, 12, 7), "ordinary"), (date(2025, 12, 8), None, "all")]

    def test_the_data_files_are_packaged_and_listed_in_sources(self):
        for name in ("acts.csv", "drugs.csv", "claims.json", "rejection_reasons.csv"):
            assert RULES.joinpath(name).is_file()
        sources = json.loads(RULES.joinpath("sources.json").read_text("utf-8"))
        assert {"acts", "drugs", "claims", "rejection_reasons"} <= set(sources)


class TestIcd10Ranges:
    @pytest.mark.parametrize(("code", "inside"), [
        ("E10", True), ("E14.9", True), ("e119", True), ("E09.9", False), ("E15", False), ("E1", False),
    ])
    def test_a_category_range(self, code, inside):
        assert icd10_in_ranges(code, ("E10-E14",)) is inside

    @pytest.mark.parametrize(("code", "inside"), [
        ("D69.3", True), ("D69.31", True), ("D69", False), ("D69.2", False), ("B18.2", True), ("B19", False),
    ])
    def test_subcategories_and_single_categories(self, code, inside):
        assert icd10_in_ranges(code, ("D69.3", "B18")) is inside

    def test_every_chronic_disease_has_ranges(self):
        ranges = ruleset(ON).chronic_disease_icd10
        assert sorted(ranges) == [f"{n:02d}" for n in range(1, 25)]
        assert all(ranges.values())
        assert icd10_in_ranges("I21.0", ranges["08"]) and icd10_in_ranges("Q21.1", ranges["06"])


def test_rules_are_cached_per_day():
    assert ruleset(ON) is ruleset(ON)
    assert ruleset(ON + timedelta(days=1)).on == ON + timedelta(days=1)
