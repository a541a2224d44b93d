"""The synthetic population generator: deterministic, in the documented CSV formats, internally consistent."""

from __future__ import annotations

import csv
import re
import tracemalloc
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from labes.registry.generate import REFERENCE_DATE, generate
from labes.registry.importer import BANK_COLUMNS
from labes.registry.identifiers import normalize_cin, normalize_iban, normalize_social_id
from labes.rules import chronic_disease_codes, governorate_codes

DOCS = Path(__file__).resolve().parents[2] / "docs" / "csv-formats.md"
FACILITY_KINDS = {"primary_health_centre", "district_hospital", "regional_hospital", "university_hospital",
                  "cnss_polyclinic", "private_clinic", "pharmacy", "laboratory", "imaging_centre"}
PROFESSIONAL_KINDS = {"general_practitioner", "specialist", "dentist", "pharmacist", "biologist", "radiologist",
                      "physiotherapist"}


def documented_columns(file_name: str) -> list[str]:
    """Return the columns of `file_name` in the order of its table in docs/csv-formats.md."""
    section = DOCS.read_text("utf-8").split(f"## `{file_name}`")[1].split("\n## ")[0]
    columns: list[str] = []
    for line in section.splitlines():
        if line.startswith("| `"):
            columns += re.findall(r"`([a-z_0-9]+)`", line.split("|")[1])
    return columns


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def age_on_reference(birth: str) -> int:
    born = date.fromisoformat(birth)
    return REFERENCE_DATE.year - born.year - ((REFERENCE_DATE.month, REFERENCE_DATE.day) < (born.month, born.day))


def icd10_in(code: str, ranges: str) -> bool:
    for part in ranges.split(";"):
        lo, _, hi = part.partition("-")
        if not hi and code == part:
            return True
        if hi and code[0] == lo[0] and code[1:].isdigit() and int(lo[1:]) <= int(code[1:]) <= int(hi[1:]):
            return True
    return False


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """A 5,000-member population (about 11,500 persons) shared by the read-only tests."""
    result = generate(tmp_path_factory.mktemp("population"), members=5_000, seed=2026)
    return result, read(result.members_path)[1], read(result.providers_path)[1]


class TestDeterminism:
    def test_same_seed_gives_identical_bytes(self, tmp_path):
        first = generate(tmp_path / "a", members=300, seed=11)
        second = generate(tmp_path / "b", members=300, seed=11)
        assert first.members_path.read_bytes() == second.members_path.read_bytes()
        assert first.providers_path.read_bytes() == second.providers_path.read_bytes()

    def test_another_seed_gives_another_population(self, tmp_path):
        first = generate(tmp_path / "a", members=300, seed=11)
        other = generate(tmp_path / "b", members=300, seed=12)
        assert first.members_path.read_bytes() != other.members_path.read_bytes()
        assert first.providers_path.read_bytes() != other.providers_path.read_bytes()

    def test_progress_reports_members_done(self, tmp_path):
        seen: list[int] = []
        generate(tmp_path, members=25_000, seed=3, progress=seen.append)
        assert seen == [10_000, 20_000, 25_000]


class TestFormat:
    def test_headers_are_the_documented_columns_in_order(self, population):
        result, _, _ = population
        # The synthetic members have no bank account: their file leaves the optional column out, as an older feed does.
        assert read(result.members_path)[0] == [c for c in documented_columns("members.csv") if c not in BANK_COLUMNS]
        assert read(result.providers_path)[0] == documented_columns("providers.csv")
        assert len(documented_columns("members.csv")) == 30 and len(documented_columns("providers.csv")) == 21

    def test_counts_match_the_files(self, population):
        result, members, providers = population
        kinds = Counter(row["record_type"] for row in members)
        assert (kinds["member"], kinds["dependant"]) == (result.members, result.dependants)
        assert result.members == 5_000
        assert result.persons == len(members)
        kinds = Counter(row["record_type"] for row in providers)
        assert (kinds["facility"], kinds["professional"]) == (result.facilities, result.professionals)

    def test_enumerated_fields_take_documented_values(self, population):
        _, members, providers = population
        for row in members:
            assert row["sex"] in ("M", "F") and row["language"] in ("ar", "fr")
            assert not row["phone"] or re.fullmatch(r"\+216[2459]\d{7}", row["phone"])
            date.fromisoformat(row["birth_date"])
            if row["record_type"] == "member":
                assert row["relationship"] == "insured" and row["rank"] == "0"
                assert row["regime"] in ("CNSS", "CNRPS", "PENSION")
                assert row["status"] in ("active", "suspended", "ended")
                assert row["care_scheme"] in ("public", "private", "reimbursement")
                assert (row["family_doctor"] != "") == (row["care_scheme"] == "private")
                assert row["affiliation_start"] <= row["scheme_since"] < REFERENCE_DATE.isoformat()
                assert row["disabled"] == row["student_until"] == row["evidence"] == ""
            else:
                assert row["relationship"] in ("spouse", "child", "father", "mother")
                assert row["regime"] == row["status"] == row["care_scheme"] == row["amen"] == ""
                assert row["disabled"] in ("0", "1")
        for row in providers:
            assert row["sector"] in ("public", "private")
            assert row["contract_status"] in ("", "active", "suspended", "terminated")
            if row["record_type"] == "professional":
                assert row["tax_regime"] in ("actual", "flat") and row["family_doctor"] in ("0", "1")
                assert re.fullmatch(r"L\d{6}", row["licence"])
                assert (row["specialty"] != "") == (row["kind"] == "specialist")

    def test_every_governorate_code_is_valid(self, population):
        _, members, providers = population
        codes = governorate_codes()
        assert len(codes) == 24
        assert {row["governorate"] for row in members if row["record_type"] == "member"} <= codes
        assert {row["governorate"] for row in members if row["record_type"] == "dependant"} <= codes | {""}
        assert {row["governorate"] for row in providers} <= codes


class TestIdentifiers:
    def test_every_social_id_has_valid_check_digits(self, population):
        _, members, _ = population
        for row in members:
            assert normalize_social_id(row["social_id"]) == row["social_id"]
        assert len({row["social_id"] for row in members if row["record_type"] == "member"}) == 5_000

    def test_cins_are_eight_digits_and_unique_across_both_files(self, population):
        _, members, providers = population
        cins = [row["cin"] for row in members + providers if row["cin"]]
        assert all(normalize_cin(cin) == cin for cin in cins)
        assert len(cins) == len(set(cins))

    def test_adults_have_a_cin_and_children_under_18_none(self, population):
        _, members, _ = population
        for row in members:
            assert (row["cin"] != "") == (age_on_reference(row["birth_date"]) >= 18), row

    def test_provider_keys_are_unique(self, population):
        _, _, providers = population
        codes = [row["code"] for row in providers if row["record_type"] == "facility"]
        licences = [row["licence"] for row in providers if row["record_type"] == "professional"]
        assert len(codes) == len(set(codes)) and all(re.fullmatch(r"F[A-Z]{3}\d{5}", c) for c in codes)
        assert len(licences) == len(set(licences))


    def test_provider_accounts_are_valid_tunisian_ibans_and_unique(self, population):
        result, _, providers = population
        assert "iban" in read(result.providers_path)[0]
        accounts = [row["iban"] for row in providers if row["iban"]]
        assert accounts
        assert all(normalize_iban(iban) == iban and iban.startswith("TN") for iban in accounts)
        assert len(accounts) == len(set(accounts))

    def test_public_professionals_have_no_account_the_fund_pays_the_others(self, population):
        _, _, providers = population
        public = [row for row in providers if row["record_type"] == "professional" and row["sector"] == "public"]
        payable = [row for row in providers if row not in public]
        assert public and all(row["iban"] == "" for row in public)
        assert sum(row["iban"] != "" for row in payable) >= 0.9 * len(payable)

    def test_a_few_payable_providers_have_no_account_yet(self, tmp_path):
        _, providers = read(generate(tmp_path, members=50_000, seed=8).providers_path)
        payable = [row for row in providers if row["record_type"] == "facility" or row["sector"] == "private"]
        missing = sum(row["iban"] == "" for row in payable)
        assert 0 < missing <= 0.05 * len(payable)  # one in fifty

class TestFamilies:
    def test_every_dependant_follows_its_member(self, population):
        _, members, _ = population
        assert members[0]["record_type"] == "member"
        current = None
        for row in members:
            if row["record_type"] == "member":
                current = row["social_id"]
            else:
                assert row["social_id"] == current

    def test_ranks_and_ages_make_sense(self, population):
        _, members, _ = population
        families: list[list[dict[str, str]]] = []
        for row in members:
            if row["record_type"] == "member":
                families.append([])
            families[-1].append(row)
        for member, *dependants in families:
            children = [d for d in dependants if d["relationship"] == "child"]
            assert [d["rank"] for d in children] == [str(n) for n in range(1, len(children) + 1)]
            member_age = age_on_reference(member["birth_date"])
            assert 20 <= member_age <= 85
            for d in dependants:
                age = age_on_reference(d["birth_date"])
                if d["relationship"] == "child":
                    assert member_age - age >= 18
                    assert age < 20 or d["student_until"] or d["disabled"] == "1" or d["sex"] == "F"
                    assert d["disabled"] == "0" or d["evidence"]
                elif d["relationship"] == "spouse":
                    assert d["rank"] == "1" and d["sex"] != member["sex"] and age >= 18
                else:
                    assert d["rank"] == {"father": "1", "mother": "2"}[d["relationship"]]
                    assert age - member_age >= 18

    def test_persons_per_member_is_near_the_national_ratio(self, population):
        result, _, _ = population
        assert 2.0 <= result.persons / result.members <= 2.6  # 8 M beneficiaries for 3.5 M insured

    def test_governorates_follow_population(self, population):
        _, members, _ = population
        share = Counter(row["governorate"] for row in members if row["record_type"] == "member")
        assert share["TUN"] + share["SFX"] > 3 * (share["TOZ"] + share["TAT"])
        assert len(share) == 24

    def test_chronic_conditions_use_official_codes_within_their_icd10_ranges(self, population):
        _, members, _ = population
        ranges = chronic_disease_codes()
        assert sorted(ranges) == [f"{n:02d}" for n in range(1, 25)]
        seen = 0
        for row in members:
            for item in filter(None, row["chronic"].split(";")):
                code, icd10, valid_from, valid_to = item.split("|")
                assert code in ranges and icd10_in(icd10, ranges[code]), item
                assert row["birth_date"] < valid_from <= valid_to
                seen += 1
        adults = [row for row in members if age_on_reference(row["birth_date"]) >= 18]
        assert 0.05 < sum(1 for row in adults if row["chronic"]) / len(adults) < 0.2
        assert seen

    def test_amen_households_are_well_formed(self, population):
        _, members, _ = population
        amen = [row["amen"].split("|") for row in members if row["amen"]]
        assert amen and len({a[0] for a in amen}) == len(amen)
        for number, level, valid_from, valid_to in amen:
            assert re.fullmatch(r"A\d{9}", number) and level in ("free", "reduced") and valid_from < valid_to
        assert Counter(a[1] for a in amen)["reduced"] > Counter(a[1] for a in amen)["free"]


class TestProviders:
    def test_family_doctors_are_registered_general_practitioners(self, population):
        _, members, providers = population
        doctors = {row["licence"] for row in providers
                   if row["kind"] == "general_practitioner" and row["family_doctor"] == "1"}
        chosen = {row["family_doctor"] for row in members if row["family_doctor"]}
        assert chosen and chosen <= doctors

    def test_professionals_practise_at_facilities_listed_before_them(self, population):
        _, _, providers = population
        seen: set[str] = set()
        for row in providers:
            if row["record_type"] == "facility":
                seen.add(row["code"])
            else:
                places = row["facilities"].split(";")
                assert 1 <= len(places) <= 2 and set(places) <= seen

    @pytest.mark.parametrize("members", [1, 10])
    def test_every_kind_exists_even_for_a_tiny_population(self, tmp_path, members):
        result = generate(tmp_path, members=members, seed=5)
        _, providers = read(result.providers_path)
        assert {row["kind"] for row in providers if row["record_type"] == "facility"} == FACILITY_KINDS
        assert {row["kind"] for row in providers if row["record_type"] == "professional"} == PROFESSIONAL_KINDS
        _, rows = read(result.members_path)
        licences = {row["licence"] for row in providers if row["family_doctor"] == "1"}
        assert {row["family_doctor"] for row in rows if row["family_doctor"]} <= licences

    def test_public_and_polyclinic_facilities(self, population):
        _, _, providers = population
        facilities = [row for row in providers if row["record_type"] == "facility"]
        public = {"primary_health_centre", "district_hospital", "regional_hospital", "university_hospital",
                  "cnss_polyclinic"}
        assert all((row["sector"] == "public") == (row["kind"] in public) for row in facilities)
        assert sum(row["kind"] == "cnss_polyclinic" for row in facilities) == 6

    def test_every_governorate_has_a_regional_hospital_from_10000_members(self, tmp_path):
        _, providers = read(generate(tmp_path, members=10_000, seed=8).providers_path)
        regional = {row["governorate"] for row in providers if row["kind"] == "regional_hospital"}
        assert regional == governorate_codes()


def test_memory_stays_flat_as_the_population_grows(tmp_path):
    generate(tmp_path / "warm", members=100, seed=1)  # reference tables and caches loaded once
    peaks = []
    for members in (300, 3_000):
        tracemalloc.start()
        generate(tmp_path / str(members), members=members, seed=1)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # Rows are streamed: holding 3,000 families (about 7,000 rows) would cost several megabytes more.
    assert peaks[1] - peaks[0] < 1_000_000, peaks
