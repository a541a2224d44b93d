"""Every write at the point of care leaves a tagged audit event by the professional (or the insured) who signed it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from sqlalchemy import select

from labes.security.models import AuditEvent
from labes.terminal import Insured
from tests import factories

TODAY = date.today().isoformat()


def _consultation(world, **extra):
    return world.doctor_at_clinic.send_care_sheet(
        world.cards["patient"], {"kind": "consultation", "care_date": TODAY, "diagnoses": ["J06.9"],
                                 "lines": [{"code": "CMF"}], **extra})


def _prescription(world):
    return world.doctor_at_clinic.prescribe(world.cards["patient"], {"lines": [{"code": "500118", "quantity": 2}]})


def _correction(world):
    # A sheet billing an act the nomenclature does not know is rejected; its correction bills the right one.
    sheet = world.doctor_at_clinic.send_care_sheet(
        world.cards["patient"], {"kind": "consultation", "care_date": TODAY, "lines": [{"code": "CX9"}]})
    assert sheet["status"] == "rejected", sheet
    return world.doctor_at_clinic.correct_care_sheet(sheet["number"], world.cards["patient"],
                                                     {"kind": "consultation", "care_date": TODAY, "lines": [{"code": "CMF"}]})


def _decision(world):
    request = world.terminal("doctor", world.clinic).request_approval(
        world.cards["patient"], code="IRM", justification="Suspected disc herniation, L4-L5.")
    token = factories.agent_token(world.session, "reviewer")
    response = world.client.post(f"/api/v1/claims/approvals/{request['number']}/decision",
                                 json={"approve": True}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def _fhir_claim(world):
    from tests.fhir.test_fhir import claim_content, post_claim

    response = post_claim(world.client, world, claim_content(world))
    assert response.status_code == 201, response.text


def _fhir_eligibility(world):
    from tests.fhir.test_fhir import eligibility_content, signed

    body = signed(world.doctor_at_clinic, "rights-check", eligibility_content(world), world.cards["patient"])
    response = world.client.post("/fhir/CoverageEligibilityRequest", json=body,
                                 headers={"content-type": "application/fhir+json"})
    assert response.status_code == 200, response.text


# route → (how to do it, the tag expected, who signs: the card's name in the world).
SIGNED_WRITES: dict[str, tuple[Callable, str, str]] = {
    "POST /api/v1/care/rights-checks": (lambda w: w.doctor_at_clinic.rights_check(w.cards["patient"]),
                                        "care:rights:check", "doctor"),
    "POST /api/v1/care/care-sheets": (_consultation, "care:care-sheet:submit", "doctor"),
    "POST /api/v1/care/care-sheets/{number}/corrections": (_correction, "care:care-sheet:correct", "doctor"),
    "POST /api/v1/care/prescriptions": (_prescription, "care:prescription:issue", "doctor"),
    "POST /api/v1/care/prescriptions/open": (
        lambda w: w.pharmacy_terminal.open_prescription(_prescription(w)["number"], patient_card=w.cards["patient"]),
        "care:prescription:open", "pharmacist"),
    "POST /api/v1/care/prescriptions/cancel": (
        lambda w: w.doctor_at_clinic.cancel_prescription(_prescription(w)["number"], "Wrong strength"),
        "care:prescription:cancel", "doctor"),
    "POST /api/v1/care/dispensations": (
        lambda w: w.pharmacy_terminal.dispense(_prescription(w)["number"], [{"line_no": 1, "quantity": 1}],
                                               patient_card=w.cards["patient"]),
        "care:prescription:dispense", "pharmacist"),
    "POST /api/v1/care/approvals": (
        lambda w: w.doctor_at_clinic.request_approval(w.cards["patient"], code="IRM",
                                                      justification="Suspected disc herniation, L4-L5."),
        "claims:approval:request", "doctor"),
    "POST /api/v1/claims/approvals/{number}/decision": (_decision, "claims:approval:approve", "reviewer"),
    "POST /fhir/Claim": (_fhir_claim, "care:care-sheet:submit", "doctor"),
    "POST /fhir/CoverageEligibilityRequest": (_fhir_eligibility, "care:rights:check", "doctor"),
    "POST /api/v1/care/insured/care-sheets": (lambda w: Insured(client=w.client, card=w.cards["patient"]).care_sheets(),
                                              "care:care-sheet:insured-read", "patient"),
}


@pytest.mark.parametrize("route", sorted(SIGNED_WRITES))
def test_signed_write_leaves_a_tagged_event_by_its_signer(world, session, route):
    call, action, who = SIGNED_WRITES[route]

    call(world)

    actors = {e.actor for e in session.scalars(select(AuditEvent).where(AuditEvent.action == action))}
    if who == "reviewer":
        assert any(actor.startswith("agent:") for actor in actors), actors
    elif who == "patient":  # the insured, with their own card
        assert f"insured:card {world.cards['patient'].serial}" in actors, actors
    else:
        professional = {"doctor": world.doctor, "pharmacist": world.pharmacist}[who]
        facility = world.clinic if who == "doctor" else world.pharmacy
        assert f"professional:{professional.licence}@{facility.code}" in actors, actors


def test_an_agent_reading_a_care_sheet_is_audited(world, session):
    number = _consultation(world)["number"]
    token = factories.agent_token(world.session, "reviewer")

    response = world.client.get(f"/api/v1/care/care-sheets/{number}", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200, response.text
    reads = session.scalars(select(AuditEvent).where(AuditEvent.action == "care:care-sheet:read",
                                                     AuditEvent.entity_id == number)).all()
    assert len(reads) == 1 and reads[0].actor.startswith("agent:")


def test_a_refused_transaction_leaves_a_log_line_naming_the_cards(world, caplog):
    import logging


    body = world.doctor_at_clinic.sign("rights-check", {}, patient_card=world.cards["patient"],
                                       challenge=world.doctor_at_clinic.challenge())
    body["content"] = {"act": "CS"}  # altered after signing

    with caplog.at_level(logging.WARNING, logger="labes.care.refused"):
        response = world.client.post("/api/v1/care/rights-checks", json=body)

    assert response.status_code == 403
    [record] = [r for r in caplog.records if r.name == "labes.care.refused"]
    assert record.fields["professional_card"] == world.cards["doctor"].serial
    assert record.fields["patient_card"] == world.cards["patient"].serial
    assert record.fields["problem"] == "invalid-transaction"


def test_a_replayed_rights_check_leaves_a_log_line_too(world, caplog):
    """A reading request learns it is a replay at its last statement (where its challenge is spent with its
    audit event); that refusal is logged like the gate's own."""
    import logging

    body = world.doctor_at_clinic.sign("rights-check", {}, patient_card=world.cards["patient"],
                                       challenge=world.doctor_at_clinic.challenge())
    assert world.client.post("/api/v1/care/rights-checks", json=body).status_code == 200

    with caplog.at_level(logging.WARNING, logger="labes.care.refused"):
        response = world.client.post("/api/v1/care/rights-checks", json=body)

    assert response.status_code == 403
    [record] = [r for r in caplog.records if r.name == "labes.care.refused"]
    assert record.fields["action"] == "rights-check"
    assert "already been used" in record.fields["reason"]
    assert record.fields["patient_card"] == world.cards["patient"].serial
