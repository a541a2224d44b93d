"""The point of care as tests see it: a clinic, a pharmacy, a health centre, their professionals' cards,
families with their Labes cards, and terminals that talk to the API in-process."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

import pytest

from labes.cards import service as cards
from labes.cards.crypto import load_authority
from labes.cards.models import PickupPoint
from labes.cards.tokens import VirtualCard
from labes.registry import providers
from labes.registry.models import Facility, Member, Professional
from labes.terminal import Terminal
from tests import factories

PIN = "2468"


@dataclass
class World:
    session: object
    client: object
    authority: object
    point: PickupPoint
    clinic: Facility
    pharmacy: Facility
    second_pharmacy: Facility
    health_centre: Facility
    doctor: Professional
    specialist: Professional
    pharmacist: Professional
    second_pharmacist: Professional
    member: Member
    cards: dict[str, VirtualCard] = field(default_factory=dict)

    def card_for(self, name: str, *, person_id=None, licence: str | None = None, pin: str | None = None,
                 card_type: str = "labes") -> VirtualCard:
        """Issue a card on the spot (so it is delivered) and return it as a virtual card."""
        holder = cards.resolve_holder(self.session, card_type="professional" if licence else card_type,
                                      person_id=person_id, licence=licence)
        issued = cards.issue_card(self.session, actor=factories.ACTOR, authority=self.authority, holder=holder,
                                  pin=pin, on_the_spot_at=self.point)
        card = VirtualCard.from_bytes(issued.card_file, pin=pin)
        self.cards[name] = card
        return card

    def terminal(self, card: str, facility: Facility, **options) -> Terminal:
        return Terminal(facility=facility.code, card=self.cards[card], client=self.client, **options)

    @property
    def doctor_at_clinic(self) -> Terminal:
        return self.terminal("doctor", self.clinic)

    @property
    def pharmacy_terminal(self) -> Terminal:
        return self.terminal("pharmacist", self.pharmacy)


@pytest.fixture
def world(session, client, keys_dir) -> World:
    return build_world(session, client, keys_dir)


def build_world(session, client, keys_dir) -> World:
    """Build the point-of-care world in `session` (flushed, not committed) with terminals over `client`."""
    point = PickupPoint(code=f"CSFX{uuid.uuid4().hex[:6].upper()}", kind="fund_centre", name_ar="المركز الجهوي بصفاقس", name_fr="Centre régional CNAM de Sfax",
                        governorate="SFX")
    session.add(point)
    clinic = factories.facility(session, kind="private_clinic", name_lat="Cabinet El Amal", sector="private",
                                contract_number="CT-0001", contract_status="active", contract_start=date(2020, 1, 1))
    pharmacy = factories.facility(session, kind="pharmacy", name_lat="Pharmacie Ennour", sector="private",
                                  contract_number="CT-0002", contract_status="active", contract_start=date(2020, 1, 1))
    second_pharmacy = factories.facility(session, kind="pharmacy", name_lat="Pharmacie du Centre", sector="private",
                                         contract_number="CT-0003", contract_status="active", contract_start=date(2020, 1, 1))
    health_centre = factories.facility(session)
    doctor = factories.professional(session, name_lat="Dr Sami Trabelsi", contract_start=date(2020, 1, 1))
    specialist = factories.professional(session, kind="specialist", specialty="cardiology", family_doctor=False,
                                        name_lat="Dr Leila Gharbi", contract_start=date(2020, 1, 1))
    pharmacist = factories.professional(session, kind="pharmacist", family_doctor=False, name_lat="Amel Jebali",
                                        contract_start=date(2020, 1, 1))
    second_pharmacist = factories.professional(session, kind="pharmacist", family_doctor=False, name_lat="Karim Ayari",
                                               contract_start=date(2020, 1, 1))
    for professional, facility in ((doctor, clinic), (doctor, health_centre), (specialist, clinic),
                                   (pharmacist, pharmacy), (second_pharmacist, second_pharmacy)):
        providers.add_practice(session, actor=factories.ACTOR, licence=professional.licence, facility_code=facility.code)
    member = factories.member(session, scheme="private", doctor=doctor.licence)
    session.flush()
    w = World(session, client, load_authority(keys_dir), point, clinic, pharmacy, second_pharmacy, health_centre,
              doctor, specialist, pharmacist, second_pharmacist, member)
    w.card_for("doctor", licence=doctor.licence, pin=PIN)
    w.card_for("specialist", licence=specialist.licence, pin=PIN)
    w.card_for("pharmacist", licence=pharmacist.licence, pin=PIN)
    w.card_for("second_pharmacist", licence=second_pharmacist.licence, pin=PIN)
    w.card_for("patient", person_id=member.person_id)
    session.flush()
    return w
