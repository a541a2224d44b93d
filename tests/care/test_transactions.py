"""The point-of-care gate refuses, through the API, every transaction it must: forged, replayed, stale, signed by
the wrong card, or from the wrong place.

Each refusal is checked for its status, its problem type and that nothing was written.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from labes.cards import service as cards
from labes.cards.models import Card
from labes.cards.tokens import VirtualCard
from labes.care import protocol
from labes.care.models import (
    CareSheet, CareSheetRevision, Dispensation, Prescription, PrescriptionLine, UsedChallenge, Visit,
)
from labes.care.transactions import challenge_secret
from labes.registry import providers
from tests import factories
from tests.care.helpers import problem, row_counts
from tests.care.conftest import PIN

API = "/api/v1/care"
TABLES = (CareSheet, CareSheetRevision, Visit, Prescription, PrescriptionLine, Dispensation, UsedChallenge)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def counts(session) -> dict[str, int]:
    return row_counts(session, TABLES)



def fields(body: dict) -> set[str]:
    return {error["field"] for error in body.get("errors", [])}


def utc_now() -> datetime:
    return datetime.now(UTC)


def prescription() -> dict:
    return {"kind": "medicines", "diagnoses": ["J01.9"], "lines": [{"code": "500118", "quantity": 2}]}


def consultation(**overrides) -> dict:
    content = {"client_key": uuid.uuid4().hex, "kind": "consultation", "care_date": utc_now().date().isoformat(),
               "diagnoses": ["J06.9"], "lines": [{"code": "CMF", "quantity": 1}]}
    content.update(overrides)
    return content


def sign(terminal, action: str, content: dict, *, patient=None, challenge: str | None = None, **options) -> dict:
    """Sign `content` for `action` with a fresh challenge unless one is given."""
    return terminal.sign(action, content, patient_card=patient, challenge=challenge or terminal.challenge(),
                         client_key=content.get("client_key"), **options)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def flip_signature(body: dict, index: int) -> dict:
    signature = body["transaction"]["signatures"][index]
    raw = bytearray(base64.urlsafe_b64decode(signature["signature"] + "=" * (-len(signature["signature"]) % 4)))
    raw[7] ^= 0x40
    signature["signature"] = b64(bytes(raw))
    return body


class Impostor:
    """A card that signs with its own key but presents another card's serial."""

    def __init__(self, serial: str, signer: VirtualCard) -> None:
        self.serial, self._signer = serial, signer

    def certificate(self):
        return self._signer.certificate()

    def sign(self, data: bytes) -> bytes:
        return self._signer.sign(data)


@pytest.fixture
def secret(keys_dir) -> bytes:
    return challenge_secret(keys_dir.resolve())


@pytest.fixture
def other_patient(world) -> VirtualCard:
    """A second insured person of the private scheme, with a delivered card."""
    member = factories.member(world.session, scheme="private", doctor=world.doctor.licence)
    world.session.flush()
    return world.card_for("other_patient", person_id=member.person_id)


def card_state(session, serial: str) -> str:
    session.expire_all()
    return session.scalar(select(Card.state).where(Card.serial == serial))


class TestSignatures:
    @pytest.mark.parametrize("index", [0, 1], ids=["patient", "professional"])
    def test_a_flipped_signature_byte_is_refused_and_nothing_written(self, world, session, index):
        before = counts(session)
        body = flip_signature(sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"]),
                              index)
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert "transaction.signatures" in fields(answer)
        assert counts(session) == before
        assert card_state(session, world.cards["patient"].serial) == "delivered"  # not even a first use

    def test_content_altered_after_signing_is_refused_and_nothing_stored(self, world, session):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"])
        body["content"]["lines"][0]["quantity"] = 20
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"content"}
        assert counts(session) == before

    def test_content_added_after_signing_is_refused(self, world, session):
        before = counts(session)
        content = consultation()
        body = sign(world.doctor_at_clinic, "care-sheet", content, patient=world.cards["patient"])
        body["content"]["lines"].append({"code": "CS", "quantity": 1})
        problem(world.client.post(f"{API}/care-sheets", json=body), 403, "invalid-transaction")
        assert counts(session) == before

    def test_a_transaction_signed_for_another_action_is_refused(self, world, session):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "rights-check", prescription(), patient=world.cards["patient"])
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"transaction.payload.action"}
        assert counts(session) == before

    def test_the_genuine_body_is_accepted(self, world, session):
        # The control for the refusals above: the same signing, untouched, goes through.
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"])
        response = world.client.post(f"{API}/prescriptions", json=body)
        assert response.status_code == 201, response.text
        assert counts(session)["prescription"] == before["prescription"] + 1
        assert card_state(session, world.cards["patient"].serial) == "in_use"


class TestChallenges:
    def test_the_same_signed_body_twice_is_refused_the_second_time(self, world, session):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"])
        assert world.client.post(f"{API}/prescriptions", json=body).status_code == 201
        after_first = counts(session)
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert "already been used" in answer["detail"]
        assert counts(session) == after_first
        assert after_first["prescription"] == before["prescription"] + 1

    def test_a_replayed_care_sheet_body_is_refused_and_stored_once(self, world, session):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "care-sheet", consultation(), patient=world.cards["patient"])
        assert world.client.post(f"{API}/care-sheets", json=body).status_code == 201
        problem(world.client.post(f"{API}/care-sheets", json=body), 403, "invalid-transaction")
        assert counts(session)["care_sheet"] == before["care_sheet"] + 1

    def test_a_used_challenge_spelled_differently_is_still_a_replay(self, world, session):
        terminal = world.doctor_at_clinic
        challenge = terminal.challenge()
        first = sign(terminal, "prescribe", prescription(), patient=world.cards["patient"], challenge=challenge)
        assert world.client.post(f"{API}/prescriptions", json=first).status_code == 201
        # The token's last character carries two unused bits: another spelling of the same bytes.
        respelled = challenge[:-1] + _ALPHABET[_ALPHABET.index(challenge[-1]) ^ 1]
        assert respelled != challenge
        before = counts(session)
        second = sign(terminal, "prescribe", prescription(), patient=world.cards["patient"], challenge=respelled)
        problem(world.client.post(f"{API}/prescriptions", json=second), 403, "invalid-transaction")
        assert counts(session) == before

    def test_an_expired_challenge_is_refused(self, world, session, secret):
        before = counts(session)
        stale = protocol.issue_challenge(secret, now=utc_now() - timedelta(minutes=10))
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"],
                    challenge=stale.token)
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"challenge"} and "expired" in answer["detail"]
        assert counts(session) == before

    def test_a_challenge_still_valid_by_a_second_is_accepted(self, world, session, secret):
        almost = protocol.issue_challenge(secret, now=utc_now() - timedelta(seconds=protocol.CHALLENGE_SECONDS - 30))
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"],
                    challenge=almost.token)
        assert world.client.post(f"{API}/prescriptions", json=body).status_code == 201

    def test_a_challenge_the_fund_did_not_issue_is_refused(self, world, session):
        before = counts(session)
        forged = protocol.issue_challenge(os.urandom(32), now=utc_now())
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"],
                    challenge=forged.token)
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"challenge"}
        assert counts(session) == before

    def test_a_transaction_without_a_challenge_is_refused(self, world, session):
        before = counts(session)
        body = world.doctor_at_clinic.sign("prescribe", prescription(), patient_card=world.cards["patient"])
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 400, "invalid-input")
        assert fields(answer) == {"transaction.payload.challenge"}
        assert counts(session) == before

    def test_a_client_key_does_not_replace_the_challenge_outside_care_sheets(self, world, session):
        before = counts(session)
        body = world.doctor_at_clinic.sign("prescribe", prescription(), patient_card=world.cards["patient"],
                                           client_key=uuid.uuid4().hex)
        problem(world.client.post(f"{API}/prescriptions", json=body), 400, "invalid-input")
        assert counts(session) == before

    @pytest.mark.parametrize("minutes", [-10, 10])
    def test_a_terminal_clock_ten_minutes_off_is_refused(self, world, session, minutes):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"],
                    now=utc_now() + timedelta(minutes=minutes))
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"transaction.payload.time"}
        assert counts(session) == before

    def test_an_offline_care_sheet_dated_in_the_future_is_refused(self, world, session):
        before = counts(session)
        content = consultation()
        body = world.doctor_at_clinic.sign("care-sheet", content, patient_card=world.cards["patient"],
                                           client_key=content["client_key"], now=utc_now() + timedelta(minutes=10))
        answer = problem(world.client.post(f"{API}/care-sheets", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"transaction.payload.time"}
        assert counts(session) == before


class TestCards:
    def test_a_transaction_naming_one_patient_card_signed_by_another_is_refused(self, world, session, other_patient):
        before = counts(session)
        terminal = world.doctor_at_clinic
        content = prescription()
        tx = protocol.Transaction(action="prescribe", professional_card=terminal.card.serial, facility=world.clinic.code,
                                  time=utc_now().replace(microsecond=0), content_digest=protocol.content_digest(content),
                                  patient_card=world.cards["patient"].serial, challenge=terminal.challenge())
        body = protocol.envelope(tx, content, [other_patient, terminal.card])
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"transaction.signatures"}
        assert counts(session) == before

    def test_a_card_whose_key_signed_under_another_serial_is_refused(self, world, session, other_patient):
        before = counts(session)
        impostor = Impostor(world.cards["patient"].serial, other_patient)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=impostor)
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert "does not verify" in answer["detail"]
        assert counts(session) == before

    def test_a_professional_signing_under_another_professionals_serial_is_refused(self, world, session):
        before = counts(session)
        impostor = Impostor(world.cards["doctor"].serial, world.cards["specialist"])
        terminal = world.doctor_at_clinic
        terminal.card = impostor
        body = sign(terminal, "prescribe", prescription(), patient=world.cards["patient"])
        problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert counts(session) == before

    def test_a_card_the_fund_never_issued_is_refused(self, world, session, other_patient):
        before = counts(session)
        unknown = Impostor("109999999990", other_patient)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=unknown)
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert "no card 109999999990" in answer["detail"]
        assert counts(session) == before

    def test_a_blocked_card_is_refused_then_its_replacement_is_named_and_accepted(self, world, session):
        old = world.cards["patient"]
        session.expire_all()
        cards.block(session, actor=factories.ACTOR, serial=old.serial, reason="lost")
        session.flush()
        before = counts(session)
        answer = problem(world.client.post(f"{API}/prescriptions", json=sign(
            world.doctor_at_clinic, "prescribe", prescription(), patient=old)), 403, "card-refused")
        assert old.serial in answer["detail"] and "blocked" in answer["detail"] and "lost" in answer["detail"]
        assert counts(session) == before

        issued = cards.replace(session, actor=factories.ACTOR, authority=world.authority, serial=old.serial,
                               on_the_spot_at=world.point)
        session.flush()
        new = VirtualCard.from_bytes(issued.card_file)
        answer = problem(world.client.post(f"{API}/prescriptions", json=sign(
            world.doctor_at_clinic, "prescribe", prescription(), patient=old)), 403, "card-refused")
        assert new.serial in answer["detail"]
        assert counts(session) == before

        response = world.client.post(f"{API}/prescriptions", json=sign(
            world.doctor_at_clinic, "prescribe", prescription(), patient=new))
        assert response.status_code == 201, response.text
        assert counts(session)["prescription"] == before["prescription"] + 1

    def test_a_replacement_not_yet_handed_over_is_refused(self, world, session):
        old = world.cards["patient"]
        issued = cards.replace(session, actor=factories.ACTOR, authority=world.authority, serial=old.serial,
                               reason="damaged")
        session.flush()
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=VirtualCard.from_bytes(issued.card_file))
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "card-refused")
        assert "handed to its holder" in answer["detail"]
        assert counts(session) == before

    def test_a_blocked_professional_card_is_refused(self, world, session):
        cards.block(session, actor=factories.ACTOR, serial=world.cards["doctor"].serial, reason="stolen")
        session.flush()
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"])
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "card-refused")
        assert "stolen" in answer["detail"]
        assert counts(session) == before
        assert card_state(session, world.cards["patient"].serial) == "delivered"

    def test_a_patient_card_not_yet_delivered_is_refused(self, world, session):
        member = factories.member(session, scheme="private", doctor=world.doctor.licence)
        holder = cards.resolve_holder(session, card_type="labes", person_id=member.person_id)
        issued = cards.issue_card(session, actor=factories.ACTOR, authority=world.authority, holder=holder)
        session.flush()
        assert issued.card.state == "printed"
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=VirtualCard.from_bytes(issued.card_file))
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "card-refused")
        assert "printed" in answer["detail"]
        assert counts(session) == before
        assert card_state(session, issued.card.serial) == "printed"

    def test_a_professional_card_not_yet_delivered_is_refused(self, world, session):
        newcomer = factories.professional(session, name_lat="Dr Nour Ben Amor")
        providers.add_practice(session, actor=factories.ACTOR, licence=newcomer.licence, facility_code=world.clinic.code)
        holder = cards.resolve_holder(session, card_type="professional", licence=newcomer.licence)
        issued = cards.issue_card(session, actor=factories.ACTOR, authority=world.authority, holder=holder, pin=PIN)
        session.flush()
        terminal = world.doctor_at_clinic
        terminal.card = VirtualCard.from_bytes(issued.card_file, pin=PIN)
        before = counts(session)
        body = sign(terminal, "prescribe", prescription(), patient=world.cards["patient"])
        problem(world.client.post(f"{API}/prescriptions", json=body), 403, "card-refused")
        assert counts(session) == before

    def test_a_pharmacists_card_cannot_prescribe(self, world, session):
        before = counts(session)
        body = sign(world.pharmacy_terminal, "prescribe", prescription(), patient=world.cards["patient"])
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"transaction.payload.professional_card"} and "pharmacist" in answer["detail"]
        assert counts(session) == before

    def test_a_doctors_card_cannot_dispense(self, world, session):
        issued = world.doctor_at_clinic.prescribe(world.cards["patient"], prescription())
        before = counts(session)
        content = {"client_key": uuid.uuid4().hex, "prescription": issued["number"],
                   "lines": [{"line_no": 1, "quantity": 1}]}
        body = sign(world.doctor_at_clinic, "dispense", content, patient=world.cards["patient"])
        problem(world.client.post(f"{API}/dispensations", json=body), 403, "invalid-transaction")
        assert counts(session) == before

    def test_a_professional_where_they_do_not_practise_is_refused(self, world, session):
        before = counts(session)
        terminal = world.terminal("specialist", world.health_centre)
        body = sign(terminal, "prescribe", prescription(), patient=world.cards["patient"])
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"transaction.payload.facility"} and world.health_centre.code in answer["detail"]
        assert counts(session) == before

    def test_an_unknown_facility_is_refused(self, world, session):
        before = counts(session)
        terminal = world.doctor_at_clinic
        terminal.facility = "FSFX99999"
        body = sign(terminal, "prescribe", prescription(), patient=world.cards["patient"])
        problem(world.client.post(f"{API}/prescriptions", json=body), 404, "not-found")
        assert counts(session) == before

    def test_a_professional_card_in_the_patient_slot_is_refused(self, world, session):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["specialist"])
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"transaction.payload.patient_card"}
        assert counts(session) == before

    def test_the_professionals_own_card_in_the_patient_slot_is_refused(self, world, session):
        before = counts(session)
        terminal = world.doctor_at_clinic
        content = prescription()
        tx = protocol.Transaction(action="prescribe", professional_card=terminal.card.serial, facility=world.clinic.code,
                                  time=utc_now().replace(microsecond=0), content_digest=protocol.content_digest(content),
                                  patient_card=terminal.card.serial, challenge=terminal.challenge())
        body = protocol.envelope(tx, content, [terminal.card])
        problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert counts(session) == before

    def test_a_patient_card_in_the_professional_slot_is_refused(self, world, session, other_patient):
        before = counts(session)
        terminal = world.doctor_at_clinic
        terminal.card = other_patient
        body = sign(terminal, "prescribe", prescription(), patient=world.cards["patient"])
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"transaction.payload.professional_card"}
        assert counts(session) == before

    def test_a_prescription_without_the_patients_card_is_refused(self, world, session):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription())
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert fields(answer) == {"transaction.payload.patient_card"}
        assert counts(session) == before

    def test_a_patient_card_on_a_professional_only_action_is_refused(self, world, session):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "care-sheet-status", {"numbers": []}, patient=world.cards["patient"])
        problem(world.client.post(f"{API}/care-sheets/status", json=body), 400, "invalid-input")
        assert counts(session) == before


class TestBodies:
    def test_malformed_json_is_a_422_problem(self, world, session):
        before = counts(session)
        response = world.client.post(f"{API}/prescriptions", content=b'{"transaction": {"payload": ',
                                     headers={"content-type": "application/json"})
        problem(response, 422, "malformed-request")
        assert counts(session) == before

    @pytest.mark.parametrize("body", [{}, {"content": {}}, {"transaction": {}}, [], "text"])
    def test_a_body_that_is_not_an_envelope_is_a_422_problem(self, world, session, body):
        before = counts(session)
        problem(world.client.post(f"{API}/prescriptions", json=body), 422, "malformed-request")
        assert counts(session) == before

    @pytest.mark.parametrize("path", ["/rights-checks", "/care-sheets/CS-2026-00000001/corrections"])
    def test_another_method_on_a_card_signed_path_is_405_naming_post(self, world, path):
        # Card-signed routes are dispatched by plain routes tried first (care.deps.dispatched_first): a GET, PUT or
        # DELETE on their path answers as FastAPI's own route would, and reaches no handler.
        for method in ("GET", "PUT", "DELETE"):
            response = world.client.request(method, f"{API}{path}")
            assert response.status_code == 405 and response.headers["allow"] == "POST", (method, response.text)

    def test_an_extra_member_beside_the_envelope_is_refused(self, world, session):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"])
        answer = problem(world.client.post(f"{API}/prescriptions", json={**body, "note": "unsigned"}), 422,
                         "malformed-request")
        assert fields(answer) == {"note"}
        assert counts(session) == before

    @pytest.mark.parametrize("transaction", [{"payload": "e30"}, {"payload": "e30", "signatures": []},
                                             {"payload": "bm90IGpzb24", "signatures": [{"protected": "e30"}]}])
    def test_a_transaction_that_is_not_a_jws_is_refused(self, world, session, transaction):
        before = counts(session)
        body = {"transaction": transaction, "content": prescription()}
        problem(world.client.post(f"{API}/prescriptions", json=body), 400, "invalid-input")
        assert counts(session) == before

    @pytest.mark.parametrize(("change", "field"), [
        ({"urgent": True}, "content.urgent"),
        ({"diagnoses": ["J06.9", "diabetes"]}, "content.diagnoses"),
        ({"lines": [{"code": "CMF", "quantity": -1}]}, "content.lines.0.quantity"),
        ({"lines": [{"code": "CMF", "quantity": 1, "price": 5}]}, "content.lines.0.price"),
        ({"care_date": "30/11/2026"}, "content.care_date"),
        ({"client_key": "short"}, "content.client_key"),
    ])
    def test_care_sheet_content_that_fails_its_schema_is_a_422_naming_the_field(self, world, session, change, field):
        before = counts(session)
        content = consultation(**change)
        body = sign(world.doctor_at_clinic, "care-sheet", content, patient=world.cards["patient"])
        answer = problem(world.client.post(f"{API}/care-sheets", json=body), 422, "malformed-request")
        assert field in fields(answer), answer
        assert counts(session) == before  # the challenge is not used up either
        assert card_state(session, world.cards["patient"].serial) == "delivered"

    @pytest.mark.parametrize(("line", "field"), [
        ({"code": "500118", "quantity": -2}, "content.lines.0.quantity"),
        ({"code": "500118", "quantity": 1, "renewals": 12}, "content.lines.0.renewals"),
        ({"code": "500118", "quantity": "two"}, "content.lines.0.quantity"),
    ])
    def test_prescription_content_that_fails_its_schema_is_a_422_naming_the_field(self, world, session, line, field):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", {**prescription(), "lines": [line]},
                    patient=world.cards["patient"])
        answer = problem(world.client.post(f"{API}/prescriptions", json=body), 422, "malformed-request")
        assert field in fields(answer), answer
        assert counts(session) == before

    @pytest.mark.parametrize("number", ["1e400", "12345678901234567890"])
    def test_content_with_a_number_json_cannot_carry_exactly_is_refused(self, world, session, number):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"])
        raw = json.dumps(body).replace('"quantity": 2', f'"quantity": {number}')
        response = world.client.post(f"{API}/prescriptions", content=raw.encode(),
                                     headers={"content-type": "application/json"})
        answer = problem(response, 400, "invalid-input")
        assert fields(answer) == {"content"}
        assert counts(session) == before

    def test_content_re_spelled_in_another_json_form_keeps_its_digest(self, world, session):
        # The digest is of the RFC 8785 form: 2.0 and 2 are one number, member order and spacing do not count.
        before = counts(session)
        body = sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"])
        content = json.dumps(dict(reversed(body["content"].items())), indent=2).replace('"quantity": 2', '"quantity": 2.0')
        raw = f'{{"content": {content}, "transaction": {json.dumps(body["transaction"])}}}'
        response = world.client.post(f"{API}/prescriptions", content=raw.encode(),
                                     headers={"content-type": "application/json"})
        assert response.status_code == 201, response.text
        assert response.json()["lines"][0]["quantity"] == 2
        assert counts(session)["prescription"] == before["prescription"] + 1


    @pytest.mark.parametrize("media_type", ["text/plain", "application/x-www-form-urlencoded"])
    def test_an_envelope_not_sent_as_json_is_a_422_problem(self, world, session, media_type):
        before = counts(session)
        body = sign(world.doctor_at_clinic, "rights-check", {}, patient=world.cards["patient"])
        response = world.client.post(f"{API}/rights-checks", content=json.dumps(body).encode(),
                                     headers={"content-type": media_type})
        answer = problem(response, 422, "malformed-request")
        assert media_type in answer["detail"]
        assert counts(session) == before

    def test_json_under_a_json_suffix_media_type_is_read(self, world, session):
        body = sign(world.doctor_at_clinic, "rights-check", {}, patient=world.cards["patient"])
        response = world.client.post(f"{API}/rights-checks", content=json.dumps(body).encode(),
                                     headers={"content-type": "application/vnd.labes+json; charset=utf-8"})
        assert response.status_code == 200, response.text


class TestWhereHandlersRun:
    """`LABES_WORKER_THREADS=0` runs each request's unit of work on the process's event loop, to its commit."""

    @staticmethod
    def _spy(monkeypatch, module, name) -> list[bool]:
        import asyncio

        on_loop: list[bool] = []
        original = getattr(module, name)

        def spy(*args, **kwargs):
            try:
                asyncio.get_running_loop()
                on_loop.append(True)
            except RuntimeError:  # a request thread has no running loop
                on_loop.append(False)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
        return on_loop

    @pytest.mark.parametrize(("threads", "expected"), [(40, False), (1, False), (0, True)])
    def test_a_signed_request_runs_where_the_settings_say(self, world, session, app_for, factory, monkeypatch,
                                                           threads, expected):
        from starlette.testclient import TestClient

        from labes.care import rights

        on_loop = self._spy(monkeypatch, rights, "check")
        body = sign(world.doctor_at_clinic, "rights-check", {}, patient=world.cards["patient"])
        with TestClient(app_for(factory, worker_threads=threads)) as client:
            response = client.post(f"{API}/rights-checks", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["card"] == world.cards["patient"].serial
        assert on_loop == [expected]

    @pytest.mark.parametrize(("threads", "expected"), [(40, False), (0, True)])
    def test_an_agents_request_runs_where_the_settings_say(self, session, app_for, factory, monkeypatch, threads,
                                                            expected):
        from starlette.testclient import TestClient

        from labes.care import sheets

        on_loop = self._spy(monkeypatch, sheets, "get_or_raise")
        token = factories.agent_token(session, "reviewer")
        session.commit()
        with TestClient(app_for(factory, worker_threads=threads)) as client:
            response = client.get(f"{API}/care-sheets/CS-2026-00000001", headers={"Authorization": f"Bearer {token}"})
        problem(response, 404, "not-found")
        assert on_loop == [expected]

    def test_a_refused_request_on_the_loop_writes_nothing(self, world, session, app_for, factory):
        from starlette.testclient import TestClient

        before = counts(session)
        body = flip_signature(sign(world.doctor_at_clinic, "prescribe", prescription(), patient=world.cards["patient"]), 0)
        with TestClient(app_for(factory, worker_threads=0)) as client:
            problem(client.post(f"{API}/prescriptions", json=body), 403, "invalid-transaction")
        assert counts(session) == before
        assert card_state(session, world.cards["patient"].serial) == "delivered"


def test_card_signed_routes_document_their_envelope_and_path(client):
    paths = client.get("/openapi.json").json()["paths"]
    rights = paths[f"{API}/rights-checks"]["post"]
    schema = rights["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"transaction", "content"} and rights["x-permission"] == "card-signed"
    assert "201" in paths[f"{API}/care-sheets"]["post"]["responses"]
    correction = paths[f"{API}/care-sheets/{{number}}/corrections"]["post"]
    assert [(p["name"], p["in"]) for p in correction["parameters"]] == [("number", "path")]
    assert rights["description"].startswith("Check the rights of the patient")
    # The content each action takes is written out, nested models included (no reference left to resolve).
    sheet = paths[f"{API}/care-sheets"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    content = sheet["properties"]["content"]
    assert {"client_key", "kind", "care_date", "lines"} <= set(content["required"])
    assert content["properties"]["lines"]["items"]["properties"]["code"]["maxLength"] == 12
    assert "$ref" not in json.dumps(sheet)
    assert set(schema["properties"]["content"]["properties"]) == {"act"}


def test_purge_forgets_only_expired_challenges(cli_runner, committed):
    from datetime import UTC, datetime, timedelta

    from labes.cli import app
    from labes.care.models import UsedChallenge

    now = datetime.now(UTC)
    with committed() as session:
        session.add_all([UsedChallenge(nonce="expired-nonce", expires_at=now - timedelta(seconds=1)),
                         UsedChallenge(nonce="live-nonce", expires_at=now + timedelta(seconds=100))])
        session.commit()

    result = cli_runner.invoke(app, ["care", "purge-challenges"])

    assert result.exit_code == 0, result.output
    assert "1 expired challenges forgotten" in result.output
    with committed() as session:
        assert session.scalars(select(UsedChallenge.nonce)).all() == ["live-nonce"]
