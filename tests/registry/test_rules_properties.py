"""Property tests of the registry's rules over many dates and identifiers."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from labes.registry import rules
from labes.registry.identifiers import IdentifierError, make_social_id, normalize_social_id

bodies = st.from_regex(r"\A[0-9]{9}\Z", fullmatch=True)
births = st.dates(min_value=date(1930, 1, 1), max_value=date(2026, 1, 1))
days = st.dates(min_value=date(2004, 8, 2), max_value=date(2080, 12, 31))


@given(bodies)
def test_every_generated_social_id_is_valid(body):
    assert normalize_social_id(make_social_id(body)) == make_social_id(body)


@given(bodies, st.integers(min_value=0, max_value=10), st.integers(min_value=1, max_value=9))
def test_any_single_digit_change_is_refused(body, position, shift):
    social_id = make_social_id(body)
    altered = social_id[:position] + str((int(social_id[position]) + shift) % 10) + social_id[position + 1:]
    try:
        normalize_social_id(altered)
    except IdentifierError:
        return
    raise AssertionError(f"{altered} accepted though it differs from {social_id}")


@given(births, days)
def test_a_child_is_covered_exactly_until_the_day_before_the_limit_birthday(born, on):
    result = rules.dependant_eligibility(relationship="child", sex="M", birth_date=born, on=on)
    limit = rules.birthday(born, rules.dependant_rules(on).child_age_limit)
    assert result.covered == (born <= on < limit)
    if result.covered:
        assert result.until == limit - timedelta(days=1)


@given(births, days, st.dates(min_value=date(2004, 8, 2), max_value=date(2080, 12, 31)))
def test_a_student_is_never_covered_past_the_student_limit_or_the_certificate(born, on, certificate):
    result = rules.dependant_eligibility(relationship="child", sex="F", birth_date=born, on=on,
                                         student_until=certificate)
    if result.covered and result.until is not None:
        assert on <= result.until
        assert result.until < rules.birthday(born, rules.dependant_rules(on).student_age_limit)


@given(births, days)
def test_age_on_matches_the_birthday(born, on):
    age = rules.age_on(born, on)
    if on >= born:
        assert rules.birthday(born, age) <= on < rules.birthday(born, age + 1)
