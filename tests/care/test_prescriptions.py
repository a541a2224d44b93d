"""E-prescriptions: their states, never more than prescribed, renewals, generics, one pharmacy at a time, the access
code, cancellation and expiry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from labes.care.models import CareSheet, Dispensation, Prescription, PrescriptionLine, Visit
from labes.care.transactions import local_day
from labes.registry import providers
from labes.terminal import Refused, Terminal
from tests import factories
from tests.care.helpers import row_counts

API = "/api/v1/care"
TABLES = (CareSheet, Visit, Prescription, PrescriptionLine, Dispensation)
AMOXICILLIN_1G, AMOXICILLIN_1G_GENERIC = "500118", "500129"  # one generic group (G001)
AMOXICILLIN_500MG = "500215"  # another group (G002)
PARACETAMOL = "500419"


def counts(session) -> dict[str, int]:
    return row_counts(session, TABLES)


def refused(call, status: int, code: str) -> Refused:
    """Run `call`, expecting the fund to refuse it with `status` and problem type `code`."""
    with pytest.raises(Refused) as caught:
        call()
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.problem
    return caught.value


def today():
    """Today in Tunisia: the day a prescription is issued and counted from (from 23:00 UTC, tomorrow's UTC date)."""
    return local_day(datetime.now(UTC))


def prescribe(world, *lines: dict, **options) -> dict:
    content = {"kind": "medicines", "diagnoses": ["J01.9"],
               "lines": list(lines) or [{"code": AMOXICILLIN_1G, "quantity": 2}]}
    content.update(options)
    return world.doctor_at_clinic.prescribe(world.cards["patient"], content)


def state(session, number: str) -> str:
    session.expire_all()
    return session.scalar(select(Prescription.state).where(Prescription.number == number))


def dispensed(session, number: str) -> list[int]:
    session.expire_all()
    return list(session.scalars(select(PrescriptionLine.dispensed).join(Prescription)
                                .where(Prescription.number == number).order_by(PrescriptionLine.line_no)))


@pytest.fixture
def second_pharmacy(world) -> Terminal:
    return world.terminal("second_pharmacist", world.second_pharmacy)


class TestStates:
    def test_issued_in_progress_partly_dispensed_completed(self, world, session):
        rx = prescribe(world, {"code": AMOXICILLIN_1G, "quantity": 2}, {"code": PARACETAMOL, "quantity": 1})
        assert rx["state"] == "issued" and state(session, rx["number"]) == "issued"
        assert len(rx["access_code"]) == 8 and rx["qr_payload"].endswith(f"|{rx['number']}|{rx['access_code']}")
        pharmacy = world.pharmacy_terminal
        opened = pharmacy.open_prescription(rx["number"], patient_card=world.cards["patient"])
        assert opened["state"] == "in_progress" and opened["issued_at"] == rx["issued_at"]
        first = pharmacy.dispense(rx["number"], [{"line_no": 1, "quantity": 1}], patient_card=world.cards["patient"])
        assert first["prescription_state"] == "partly_dispensed" and first["care_sheet"]["kind"] == "pharmacy"
        second = pharmacy.dispense(rx["number"], [{"line_no": 1, "quantity": 1}, {"line_no": 2, "quantity": 1}],
                                   patient_card=world.cards["patient"])
        assert second["prescription_state"] == "completed" and state(session, rx["number"]) == "completed"
        assert dispensed(session, rx["number"]) == [2, 1]

        before = counts(session)
        refused(lambda: pharmacy.dispense(rx["number"], [{"line_no": 2, "quantity": 1}],
                                          patient_card=world.cards["patient"]), 409, "conflict")
        refused(lambda: pharmacy.open_prescription(rx["number"], patient_card=world.cards["patient"]), 409, "conflict")
        refused(lambda: world.doctor_at_clinic.cancel_prescription(rx["number"], "Trop tard"), 409, "conflict")
        assert counts(session) == before and state(session, rx["number"]) == "completed"

    def test_dispensing_without_opening_first_holds_it_here(self, world, session, second_pharmacy):
        rx = prescribe(world)
        answer = world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}],
                                                  patient_card=world.cards["patient"])
        assert answer["prescription_state"] == "partly_dispensed"
        before = counts(session)
        refused(lambda: second_pharmacy.open_prescription(rx["number"], patient_card=world.cards["patient"]),
                409, "conflict")
        assert counts(session) == before


class TestQuantities:
    def test_never_more_than_prescribed_at_once(self, world, session):
        rx = prescribe(world)
        before = counts(session)
        problem = refused(lambda: world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 3}],
                                                                   patient_card=world.cards["patient"]), 409, "conflict")
        assert "2 left" in problem.problem["detail"]
        assert counts(session) == before and dispensed(session, rx["number"]) == [0]
        assert state(session, rx["number"]) == "issued"

    def test_never_more_than_prescribed_in_several_times(self, world, session):
        rx = prescribe(world)
        world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}], patient_card=world.cards["patient"])
        before = counts(session)
        refused(lambda: world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 2}],
                                                         patient_card=world.cards["patient"]), 409, "conflict")
        assert counts(session) == before and dispensed(session, rx["number"]) == [1]

    def test_one_line_too_many_refuses_the_whole_dispensation(self, world, session):
        rx = prescribe(world, {"code": AMOXICILLIN_1G, "quantity": 2}, {"code": PARACETAMOL, "quantity": 1})
        before = counts(session)
        refused(lambda: world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 2},
                                                                        {"line_no": 2, "quantity": 2}],
                                                         patient_card=world.cards["patient"]), 409, "conflict")
        assert counts(session) == before and dispensed(session, rx["number"]) == [0, 0]

    def test_renewals_allow_the_quantity_times_one_plus_renewals(self, world, session):
        rx = prescribe(world, {"code": AMOXICILLIN_1G, "quantity": 2, "renewals": 2})
        assert rx["lines"][0]["remaining"] == 6
        pharmacy = world.pharmacy_terminal
        for expected in ("partly_dispensed", "partly_dispensed", "completed"):
            answer = pharmacy.dispense(rx["number"], [{"line_no": 1, "quantity": 2}], patient_card=world.cards["patient"])
            assert answer["prescription_state"] == expected
        assert dispensed(session, rx["number"]) == [6]

    def test_a_renewal_may_be_filled_at_another_pharmacy_but_not_a_fill_under_way(self, world, session, second_pharmacy):
        rx = prescribe(world, {"code": AMOXICILLIN_1G, "quantity": 2, "renewals": 1})
        world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}], patient_card=world.cards["patient"])
        refused(lambda: second_pharmacy.dispense(rx["number"], [{"line_no": 1, "quantity": 1}],
                                                 patient_card=world.cards["patient"]), 409, "conflict")
        world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}], patient_card=world.cards["patient"])

        renewal = second_pharmacy.dispense(rx["number"], [{"line_no": 1, "quantity": 2}], patient_card=world.cards["patient"])

        assert renewal["prescription_state"] == "completed" and dispensed(session, rx["number"]) == [4]

    def test_renewals_do_not_allow_one_box_more(self, world, session):
        rx = prescribe(world, {"code": AMOXICILLIN_1G, "quantity": 2, "renewals": 2})
        before = counts(session)
        refused(lambda: world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 7}],
                                                         patient_card=world.cards["patient"]), 409, "conflict")
        assert counts(session) == before
        answer = world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 6}],
                                                  patient_card=world.cards["patient"])
        assert answer["prescription_state"] == "completed"

    @pytest.mark.parametrize("lines", [[{"line_no": 2, "quantity": 1}],
                                       [{"line_no": 1, "quantity": 1}, {"line_no": 1, "quantity": 1}]])
    def test_a_line_that_is_not_there_or_twice_is_refused(self, world, session, lines):
        rx = prescribe(world)
        before = counts(session)
        refused(lambda: world.pharmacy_terminal.dispense(rx["number"], lines, patient_card=world.cards["patient"]),
                400, "invalid-input")
        assert counts(session) == before and dispensed(session, rx["number"]) == [0]

    def test_the_same_client_key_dispenses_once(self, world, session):
        rx = prescribe(world)
        key = uuid.uuid4().hex
        before = counts(session)
        first = world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}],
                                                 patient_card=world.cards["patient"], client_key=key)
        again = world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}],
                                                 patient_card=world.cards["patient"], client_key=key)
        assert again["dispensation"] == first["dispensation"]
        assert again["care_sheet"]["number"] == first["care_sheet"]["number"]
        assert counts(session)["dispensation"] == before["dispensation"] + 1
        assert dispensed(session, rx["number"]) == [1]
        refused(lambda: world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 2}],
                                                         patient_card=world.cards["patient"], client_key=key),
                409, "conflict")
        assert dispensed(session, rx["number"]) == [1]


class TestSubstitution:
    def test_a_generic_of_the_same_group_may_replace_the_brand(self, world, session):
        rx = prescribe(world)
        assert AMOXICILLIN_1G_GENERIC in rx["lines"][0]["generics"]
        answer = world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "code": AMOXICILLIN_1G_GENERIC,
                                                                   "quantity": 2}], patient_card=world.cards["patient"])
        assert answer["lines"] == [{"line_no": 1, "code": AMOXICILLIN_1G_GENERIC, "prescribed_code": AMOXICILLIN_1G,
                                    "quantity": 2}]
        assert answer["care_sheet"]["decision"]["lines"][0]["code"] == AMOXICILLIN_1G_GENERIC

    @pytest.mark.parametrize("code", [AMOXICILLIN_500MG, PARACETAMOL, "999999"])
    def test_a_drug_of_another_group_is_refused(self, world, session, code):
        rx = prescribe(world)
        before = counts(session)
        refused(lambda: world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "code": code, "quantity": 1}],
                                                         patient_card=world.cards["patient"]), 422, "rule-violation")
        assert counts(session) == before and dispensed(session, rx["number"]) == [0]

    def test_no_substitution_when_the_prescriber_ruled_it_out(self, world, session):
        rx = prescribe(world, {"code": AMOXICILLIN_1G, "quantity": 2, "substitutable": False})
        assert rx["lines"][0]["generics"] == []
        before = counts(session)
        problem = refused(lambda: world.pharmacy_terminal.dispense(
            rx["number"], [{"line_no": 1, "code": AMOXICILLIN_1G_GENERIC, "quantity": 1}],
            patient_card=world.cards["patient"]), 422, "rule-violation")
        assert "ruled out" in problem.problem["detail"]
        assert counts(session) == before
        answer = world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "code": AMOXICILLIN_1G, "quantity": 1}],
                                                  patient_card=world.cards["patient"])
        assert answer["lines"][0]["code"] == AMOXICILLIN_1G


class TestOnePharmacy:
    def test_the_second_pharmacy_is_refused_while_the_first_holds_it(self, world, session, second_pharmacy):
        rx = prescribe(world)
        world.pharmacy_terminal.open_prescription(rx["number"], patient_card=world.cards["patient"])
        before = counts(session)
        problem = refused(lambda: second_pharmacy.open_prescription(rx["number"], patient_card=world.cards["patient"]),
                          409, "conflict")
        assert world.pharmacy.name_lat in problem.problem["detail"]
        refused(lambda: second_pharmacy.dispense(rx["number"], [{"line_no": 1, "quantity": 1}],
                                                 patient_card=world.cards["patient"]), 409, "conflict")
        refused(lambda: second_pharmacy.open_prescription(rx["number"], access_code=rx["access_code"]), 409, "conflict")
        assert counts(session) == before and dispensed(session, rx["number"]) == [0]
        # The refusals used nothing up: the first pharmacy still dispenses, and the code still opens it there.
        world.pharmacy_terminal.open_prescription(rx["number"], access_code=rx["access_code"])

    def test_the_second_pharmacy_is_refused_after_a_partial_dispensation(self, world, session, second_pharmacy):
        rx = prescribe(world)
        world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}], patient_card=world.cards["patient"])
        before = counts(session)
        refused(lambda: second_pharmacy.dispense(rx["number"], [{"line_no": 1, "quantity": 1}],
                                                 patient_card=world.cards["patient"]), 409, "conflict")
        assert counts(session) == before and dispensed(session, rx["number"]) == [1]


class TestAccessCode:
    def test_the_code_opens_it_without_the_card_once(self, world, session, second_pharmacy):
        rx = prescribe(world)
        pharmacy = world.pharmacy_terminal
        assert pharmacy.open_prescription(rx["number"], access_code=rx["access_code"].lower())["state"] == "in_progress"
        answer = pharmacy.dispense(rx["number"], [{"line_no": 1, "quantity": 1}], patient_card=None)
        assert answer["prescription_state"] == "partly_dispensed"
        before = counts(session)
        refused(lambda: pharmacy.open_prescription(rx["number"], access_code=rx["access_code"]), 403, "not-permitted")
        refused(lambda: second_pharmacy.open_prescription(rx["number"], access_code=rx["access_code"]),
                403, "not-permitted")
        assert counts(session) == before

    @pytest.mark.parametrize("code", ["AAAAAAAA", "", None])
    def test_a_wrong_or_missing_code_is_refused(self, world, session, code):
        rx = prescribe(world)
        before = counts(session)
        refused(lambda: world.pharmacy_terminal.open_prescription(rx["number"], access_code=code), 403, "not-permitted")
        assert counts(session) == before and state(session, rx["number"]) == "issued"
        session.expire_all()
        assert session.scalar(select(Prescription.access_code_used).where(Prescription.number == rx["number"])) is False

    def test_without_card_or_opening_by_code_nothing_is_dispensed(self, world, session):
        rx = prescribe(world)
        world.pharmacy_terminal.open_prescription(rx["number"], patient_card=world.cards["patient"])
        before = counts(session)
        refused(lambda: world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}], patient_card=None),
                403, "not-permitted")
        assert counts(session) == before

    def test_another_patients_card_opens_nothing(self, world, session):
        member = factories.member(session, scheme="private", doctor=world.doctor.licence)
        session.flush()
        other = world.card_for("other_patient", person_id=member.person_id)
        rx = prescribe(world)
        before = counts(session)
        refused(lambda: world.pharmacy_terminal.open_prescription(rx["number"], patient_card=other), 403, "not-permitted")
        refused(lambda: world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}], patient_card=other),
                403, "not-permitted")
        assert counts(session) == before and state(session, rx["number"]) == "issued"

    def test_an_unknown_prescription_is_not_found(self, world, session):
        before = counts(session)
        refused(lambda: world.pharmacy_terminal.open_prescription("RX-1999-00000001", patient_card=world.cards["patient"]),
                404, "not-found")
        assert counts(session) == before


class TestCancelAndExpiry:
    def test_the_prescriber_cancels_and_nobody_dispenses_it_after(self, world, session):
        rx = prescribe(world)
        answer = world.doctor_at_clinic.cancel_prescription(rx["number"], "Allergie à la pénicilline")
        assert answer["state"] == "cancelled" and state(session, rx["number"]) == "cancelled"
        before = counts(session)
        problem = refused(lambda: world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}],
                                                                   patient_card=world.cards["patient"]),
                          422, "rule-violation")
        assert "pénicilline" in problem.problem["detail"]
        refused(lambda: world.pharmacy_terminal.open_prescription(rx["number"], patient_card=world.cards["patient"]),
                422, "rule-violation")
        refused(lambda: world.doctor_at_clinic.cancel_prescription(rx["number"], "Deux fois"), 422, "rule-violation")
        assert counts(session) == before

    def test_another_doctor_cannot_cancel(self, world, session):
        rx = prescribe(world)
        before = counts(session)
        refused(lambda: world.terminal("specialist", world.clinic).cancel_prescription(rx["number"], "Pas d'accord"),
                403, "not-permitted")
        assert counts(session) == before and state(session, rx["number"]) == "issued"

    def test_a_pharmacist_cannot_cancel(self, world, session):
        rx = prescribe(world)
        before = counts(session)
        refused(lambda: world.pharmacy_terminal.cancel_prescription(rx["number"], "Rupture de stock"),
                403, "invalid-transaction")
        assert counts(session) == before and state(session, rx["number"]) == "issued"

    def expire(self, session, number: str, valid_until) -> None:
        session.execute(update(Prescription).where(Prescription.number == number).values(valid_until=valid_until))
        session.flush()

    def test_an_expired_prescription_cannot_be_dispensed(self, world, session):
        rx = prescribe(world)
        world.pharmacy_terminal.open_prescription(rx["number"], patient_card=world.cards["patient"])
        self.expire(session, rx["number"], today() - timedelta(days=1))
        before = counts(session)
        problem = refused(lambda: world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}],
                                                                   patient_card=world.cards["patient"]),
                          422, "rule-violation")
        assert "expired" in problem.problem["detail"]
        refused(lambda: world.pharmacy_terminal.open_prescription(rx["number"], patient_card=world.cards["patient"]),
                422, "rule-violation")
        assert counts(session) == before and dispensed(session, rx["number"]) == [0]

    def test_a_prescription_is_dispensed_on_its_last_day(self, world, session):
        rx = prescribe(world)
        self.expire(session, rx["number"], today())
        answer = world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 2}],
                                                  patient_card=world.cards["patient"])
        assert answer["prescription_state"] == "completed"

    def test_validity_is_counted_from_the_day_of_issue(self, world, session):
        rx = prescribe(world, valid_days=30)
        assert rx["valid_until"] == (today() + timedelta(days=30)).isoformat()


class TestWhatCanBePrescribed:
    def test_a_drug_not_on_the_list_is_refused(self, world, session):
        before = counts(session)
        problem = refused(lambda: prescribe(world, {"code": AMOXICILLIN_1G, "quantity": 1},
                                            {"code": "999999", "quantity": 1}),
                          400, "invalid-input")
        assert problem.problem["errors"][0]["field"] == "content.lines.1.code"
        assert counts(session) == before

    def test_a_lab_order_names_lab_acts_only(self, world, session):
        before = counts(session)
        refused(lambda: prescribe(world, {"code": AMOXICILLIN_1G}, kind="lab"), 400, "invalid-input")
        refused(lambda: prescribe(world, {"code": "R-THORAX"}, kind="lab"), 400, "invalid-input")
        assert counts(session) == before


class TestWhoPerformsAnOrder:
    @pytest.fixture
    def laboratory(self, world, session) -> Terminal:
        lab = factories.facility(session, kind="laboratory", name_lat="Laboratoire Ibn Sina", sector="private",
                                 contract_number="CT-0004", contract_status="active")
        biologist = factories.professional(session, kind="biologist", family_doctor=False, name_lat="Dr Rim Kallel")
        providers.add_practice(session, actor=factories.ACTOR, licence=biologist.licence, facility_code=lab.code)
        session.flush()
        world.card_for("biologist", licence=biologist.licence, pin="1357")
        return world.terminal("biologist", lab)

    def test_a_biologist_performs_a_lab_order(self, world, session, laboratory):
        rx = prescribe(world, {"code": "B-GLY"}, {"code": "B-HBA1C"}, kind="lab", diagnoses=["E11.9"])
        answer = laboratory.dispense(rx["number"], [{"line_no": 1, "quantity": 1}, {"line_no": 2, "quantity": 1}],
                                     patient_card=world.cards["patient"])
        assert answer["prescription_state"] == "completed" and answer["care_sheet"]["kind"] == "lab"

    def test_a_pharmacist_cannot_perform_a_lab_order(self, world, session):
        rx = prescribe(world, {"code": "B-GLY"}, kind="lab", diagnoses=["E11.9"])
        before = counts(session)
        refused(lambda: world.pharmacy_terminal.dispense(rx["number"], [{"line_no": 1, "quantity": 1}],
                                                         patient_card=world.cards["patient"]), 403, "not-permitted")
        refused(lambda: world.pharmacy_terminal.open_prescription(rx["number"], patient_card=world.cards["patient"]),
                403, "not-permitted")
        assert counts(session) == before and state(session, rx["number"]) == "issued"

    def test_a_biologist_cannot_dispense_medicines(self, world, session, laboratory):
        rx = prescribe(world)
        before = counts(session)
        refused(lambda: laboratory.dispense(rx["number"], [{"line_no": 1, "quantity": 1}],
                                            patient_card=world.cards["patient"]), 403, "not-permitted")
        refused(lambda: laboratory.open_prescription(rx["number"], patient_card=world.cards["patient"]),
                403, "not-permitted")
        assert counts(session) == before and state(session, rx["number"]) == "issued"
