"""The registry's rules at their edges: the day before, of and after each limit."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from labes.registry import rules
from labes.registry.identifiers import (
    IdentifierError, make_social_id, masked_iban, normalize_cin, normalize_iban, normalize_social_id,
    social_id_check_digits,
)
from labes.registry.text import fold, fold_arabic, fold_latin, search_key

RULES = rules.dependant_rules(date(2026, 1, 1))
BORN = date(2006, 6, 15)
CHILD_LIMIT = date(2006 + RULES.child_age_limit, 6, 15)
STUDENT_LIMIT = date(2006 + RULES.student_age_limit, 6, 15)


def child(on: date, **kwargs) -> rules.Eligibility:
    kwargs.setdefault("sex", "M")
    return rules.dependant_eligibility(relationship="child", birth_date=BORN, on=on, **kwargs)


class TestChildAgeLimit:
    def test_rule_data_is_versioned_with_a_source(self):
        assert RULES.effective_from <= date(2026, 1, 1)
        assert "2004-71" in RULES.source

    def test_day_before_the_birthday_is_covered_and_says_until_when(self):
        result = child(CHILD_LIMIT - timedelta(days=1))
        assert result.covered
        assert result.until == CHILD_LIMIT - timedelta(days=1)

    def test_on_the_birthday_coverage_has_ended(self):
        result = child(CHILD_LIMIT)
        assert not result.covered
        assert CHILD_LIMIT.isoformat() in result.reason

    def test_day_after_the_birthday_is_not_covered(self):
        assert not child(CHILD_LIMIT + timedelta(days=1)).covered


class TestStudents:
    certificate = STUDENT_LIMIT + timedelta(days=300)

    def test_student_is_covered_past_the_child_limit(self):
        result = child(CHILD_LIMIT, student_until=self.certificate)
        assert result.covered
        assert result.until == STUDENT_LIMIT - timedelta(days=1)

    def test_day_before_the_student_limit(self):
        assert child(STUDENT_LIMIT - timedelta(days=1), student_until=self.certificate).covered

    def test_on_and_after_the_student_limit(self):
        assert not child(STUDENT_LIMIT, student_until=self.certificate).covered
        assert not child(STUDENT_LIMIT + timedelta(days=1), student_until=self.certificate).covered

    def test_expired_certificate_needs_a_new_one(self):
        on = CHILD_LIMIT + timedelta(days=100)
        assert child(on, student_until=on).covered
        result = child(on, student_until=on - timedelta(days=1))
        assert not result.covered
        assert "certificate expired" in result.reason

    def test_coverage_ends_with_the_certificate_when_it_ends_first(self):
        end = CHILD_LIMIT + timedelta(days=30)
        assert child(CHILD_LIMIT, student_until=end).until == end


class TestExceptions:
    def test_disabled_child_has_no_age_limit(self):
        result = child(date(2070, 1, 1), disabled=True)
        assert result.covered
        assert "no age limit" in result.reason

    def test_unmarried_daughter_without_income_has_no_age_limit(self):
        assert child(date(2050, 1, 1), sex="F", unmarried_no_income=True).covered

    def test_the_unmarried_daughter_rule_does_not_apply_to_sons(self):
        assert not child(date(2050, 1, 1), sex="M", unmarried_no_income=True).covered

    def test_spouse_and_parents_are_covered(self):
        for relationship in ("spouse", "father", "mother"):
            assert rules.dependant_eligibility(relationship=relationship, sex="F", birth_date=date(1950, 1, 1),
                                               on=date(2026, 1, 1)).covered

    def test_ended_dependant_is_covered_on_the_end_date_and_not_after(self):
        end = date(2026, 3, 31)
        kwargs = {"relationship": "spouse", "sex": "F", "birth_date": date(1980, 1, 1), "end_date": end}
        assert rules.dependant_eligibility(on=end, **kwargs).covered
        assert not rules.dependant_eligibility(on=end + timedelta(days=1), **kwargs).covered

    def test_death_ends_coverage(self):
        assert not child(date(2010, 1, 1), death_date=date(2009, 12, 31)).covered

    def test_unknown_relationship_is_refused(self):
        with pytest.raises(ValueError):
            rules.dependant_eligibility(relationship="cousin", sex="M", birth_date=BORN, on=date(2010, 1, 1))


class TestBirthdays:
    def test_29_february_birthday_falls_on_1_march_in_common_years(self):
        assert rules.birthday(date(2004, 2, 29), 20) == date(2024, 2, 29)
        assert rules.birthday(date(2004, 2, 29), 21) == date(2025, 3, 1)

    def test_age_on(self):
        assert rules.age_on(BORN, date(2026, 6, 14)) == 19
        assert rules.age_on(BORN, date(2026, 6, 15)) == 20


class TestMemberRights:
    kwargs = {"affiliation_start": date(2020, 1, 1), "affiliation_end": date(2026, 6, 30)}

    def test_active_within_dates(self):
        assert rules.member_rights(status="active", on=date(2026, 6, 30), **self.kwargs).covered

    def test_not_before_start_nor_after_end(self):
        assert not rules.member_rights(status="active", on=date(2019, 12, 31), **self.kwargs).covered
        result = rules.member_rights(status="active", on=date(2026, 7, 1), **self.kwargs)
        assert not result.covered and "2026-06-30" in result.reason

    def test_suspended_and_ended(self):
        assert "suspended" in rules.member_rights(status="suspended", on=date(2024, 1, 1), **self.kwargs).reason
        assert not rules.member_rights(status="ended", on=date(2024, 1, 1), **self.kwargs).covered


class TestAmen:
    def test_validity_edges(self):
        kwargs = {"level": "free", "valid_from": date(2024, 1, 1), "valid_to": date(2028, 12, 31)}
        assert not rules.amen_eligibility(on=date(2023, 12, 31), **kwargs).covered
        assert rules.amen_eligibility(on=date(2028, 12, 31), **kwargs).covered
        assert not rules.amen_eligibility(on=date(2029, 1, 1), **kwargs).covered


class TestIdentifiers:
    def test_cin_accepts_arabic_indic_digits(self):
        assert normalize_cin("٠٨١٢٣٤٥٦") == "08123456"
        assert normalize_cin(" 0812 3456 ") == "08123456"

    @pytest.mark.parametrize("bad", ["1234567", "123456789", "1234567a", ""])
    def test_cin_refuses_bad_lengths_and_letters(self, bad):
        with pytest.raises(IdentifierError):
            normalize_cin(bad)

    def test_social_id_check_digits_iso_7064_mod_97_10(self):
        social_id = make_social_id("012345678")
        assert int(social_id) % 97 == 1
        assert normalize_social_id(social_id) == social_id
        assert social_id_check_digits("012345678") == social_id[-2:]

    def test_every_single_digit_error_is_caught(self):
        social_id = make_social_id("031415926")
        for position in range(11):
            for digit in "0123456789":
                if digit == social_id[position]:
                    continue
                altered = social_id[:position] + digit + social_id[position + 1:]
                with pytest.raises(IdentifierError):
                    normalize_social_id(altered)

    def test_adjacent_transpositions_are_caught(self):
        social_id = make_social_id("027182818")
        for i in range(10):
            swapped = social_id[:i] + social_id[i + 1] + social_id[i] + social_id[i + 2:]
            if swapped != social_id:
                with pytest.raises(IdentifierError):
                    normalize_social_id(swapped)

    @pytest.mark.parametrize("text", [
        "TN59 1000 6035 1835 9847 8831", "TN5910006035183598478831", "tn59 1000 6035 1835 9847 8831",
        "TN59-1000-6035-1835-9847-8831", " TN5910006035183598478831 ", "TN٥٩ ١٠٠٠ ٦٠٣٥ ١٨٣٥ ٩٨٤٧ ٨٨٣١",
        "10006035183598478831", "10 006 0351835984788 31", "١٠٠٠٦٠٣٥١٨٣٥٩٨٤٧٨٨٣١", "۱۰۰۰۶۰۳۵۱۸۳۵۹۸۴۷۸۸۳۱",
    ], ids=["spaced", "compact", "lower-case", "dashes", "blanks-around", "arabic-indic", "rib", "rib-spaced",
            "rib-arabic-indic", "rib-eastern-arabic-indic"])
    def test_iban_and_rib_as_people_write_them_give_the_compact_iban(self, text):
        assert normalize_iban(text) == "TN5910006035183598478831"

    @pytest.mark.parametrize(("bad", "hint"), [
        ("FR7630006000011234567890189", "Tunisian accounts only"),
        ("TN5910006035183598478832", "IBAN check digits are wrong"),
        ("TN3210006035183598478832", "RIB key"),  # the IBAN's own check digits are right
        ("10006035183598478832", "RIB key"),
        ("TN591000603518359847883", "24 characters"),
        ("TN59100060351835984788310", "24 characters"),
        ("TN59", "20 digits of the RIB"),
        ("1000603518359847883", "20-digit RIB"),
        ("abc", "Tunisian accounts only"),
        ("", "Tunisian accounts only"),
    ], ids=["foreign", "iban-check-digits", "rib-key", "rib-key-of-a-rib", "too-short", "too-long", "truncated",
            "19-digit-rib", "letters", "empty"])
    def test_iban_refusals_say_what_is_wrong(self, bad, hint):
        with pytest.raises(IdentifierError, match=hint) as refused:
            normalize_iban(bad)
        assert isinstance(refused.value, ValueError)
        assert repr(bad) in str(refused.value)

    def test_masked_iban_shows_only_the_country_check_digits_and_last_four(self):
        masked = masked_iban("TN5910006035183598478831")
        assert masked == "TN59 •••• 8831"
        assert "10006035" not in masked and "1835984788" not in masked


class TestFolding:
    def test_latin_case_accents_punctuation(self):
        assert fold_latin("  BÉN-Sälah ") == "ben salah"

    def test_arabic_diacritics_and_letter_variants(self):
        assert fold_arabic("أَحْمَد") == fold_arabic("احمد")
        assert fold_arabic("فاطمة") == fold_arabic("فاطمه")
        assert fold_arabic("مصطفى") == fold_arabic("مصطفي")
        assert fold_arabic("محـــمد") == "محمد"

    def test_fold_picks_the_script(self):
        assert fold("Émna") == "emna"
        assert fold("إيمان") == "ايمان"

    def test_search_key_is_last_then_first(self):
        assert search_key("Mohamed", "Ben Salah", arabic=False) == "ben salah mohamed"
