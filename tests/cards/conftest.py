"""Fixtures of the cards tests: the fund's keys in a temporary directory, holders of each kind."""

from __future__ import annotations

from datetime import date

import pytest

from labes.cards.crypto import load_authority
from labes.cards.models import PickupPoint
from labes.registry.schemas import AmenHouseholdCreate
from labes.registry import service as registry
from tests import factories


@pytest.fixture
def authority(keys_dir):
    return load_authority(keys_dir)


@pytest.fixture
def family(session):
    """A member (CIN known) with a child; returns (member, member's CIN, child's person id)."""
    member = factories.member(session)
    child = factories.dependant(session, member.social_id)
    cin = registry.get_person_or_raise(session, person_id=member.person_id).cin
    return member, cin, child.person_id


@pytest.fixture
def amen_cin(session):
    member = factories.member(session)
    cin = registry.get_person_or_raise(session, person_id=member.person_id).cin
    registry.create_amen_household(session, actor=factories.ACTOR, data=AmenHouseholdCreate(
        number=f"A{cin}", level="free", valid_from=date(2024, 1, 1), governorate="KAS", member_cins=[cin]))
    return cin


@pytest.fixture
def doctor(session):
    return factories.professional(session, cin="05123456")


@pytest.fixture
def fund_centre(session):
    point = PickupPoint(code="CKAS01", kind="fund_centre", name_ar="المركز الجهوي للكنام بالقصرين",
                        name_fr="Centre régional CNAM de Kasserine", governorate="KAS", delegation="Kasserine Nord",
                        address_fr="Avenue Habib Bourguiba, Kasserine", hours_fr="8h-17h")
    session.add(point)
    session.flush()
    return point
