"""The FHIR R4 facade: every resource it emits parses with its `fhir.resources` model, the signed
eligibility and claim round trips work as the REST API's do, and every refusal is an OperationOutcome."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.claimresponse import ClaimResponse
from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.coverageeligibilityresponse import CoverageEligibilityResponse
from fhir.resources.R4B.medicationdispense import MedicationDispense
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from sqlalchemy import func, select

from labes.care.models import CareSheet
from labes.claims.ruleset import ruleset
from labes.fhir.mapping import ACT, CARE_SHEET_KIND, CIN, CLIENT_KEY, ICD10, PCT, REJECTION_REASON, SOCIAL_ID
from labes.fhir.routes import router
from labes.registry.models import Person
from labes.security import service as security_service
from tests import factories
from tests.care import conftest as point_of_care

FHIR = "application/fhir+json"
HL7 = "http://terminology.hl7.org/CodeSystem/"
DRUG = "500118"  # Clamoxyl 1 g, on the national list

world = point_of_care.world  # the clinic, pharmacy, doctors, patient and their cards


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    from argon2 import PasswordHasher

    monkeypatch.setattr(security_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def fhir(client):
    """The test client, with the facade mounted if the app does not include it yet."""
    if not any(getattr(route, "path", "").startswith("/fhir/") for route in client.app.routes):
        client.app.include_router(router)
    return client


@pytest.fixture
def reviewer(session) -> dict[str, str]:
    return {"Authorization": f"Bearer {factories.agent_token(session, 'reviewer')}"}


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def outcome(response, status: int) -> OperationOutcome:
    """Assert an OperationOutcome with `status` and return it parsed."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR)
    return OperationOutcome.model_validate(response.json())


def resource(response, model, status: int = 200):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR)
    return model.model_validate(response.json())


def claim_content(world, *, key: str | None = None, code: str = "CMF", practitioner=None, diagnoses=("J06.9",),
                  **changes) -> dict:
    patient_id = str(world.member.person_id)
    content = {
        "resourceType": "Claim", "status": "active", "use": "claim", "created": today(),
        "identifier": [{"system": CLIENT_KEY, "value": key or uuid.uuid4().hex}],
        "type": {"coding": [{"system": HL7 + "claim-type", "code": "professional"},
                            {"system": CARE_SHEET_KIND, "code": "consultation"}]},
        "patient": {"reference": f"Patient/{patient_id}"},
        "provider": {"reference": f"Practitioner/{(practitioner or world.doctor).licence}"},
        "priority": {"coding": [{"system": HL7 + "processpriority", "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": f"Coverage/{patient_id}"}}],
        "billablePeriod": {"start": today()},
        "diagnosis": [{"sequence": i, "diagnosisCodeableConcept": {"coding": [{"system": ICD10, "code": c}]}}
                      for i, c in enumerate(diagnoses, start=1)],
        "item": [{"sequence": 1, "productOrService": {"coding": [{"system": ACT, "code": code}]}, "quantity": {"value": 1}}],
    }
    content.update(changes)
    return {k: v for k, v in content.items() if v is not None}


def eligibility_content(world, *, act: str | None = None) -> dict:
    content = {"resourceType": "CoverageEligibilityRequest", "id": "check-1", "status": "active",
               "purpose": ["validation", "benefits"], "patient": {"reference": f"Patient/{world.member.person_id}"},
               "created": today(), "insurer": {"reference": "Organization/cnam"},
               "provider": {"reference": f"Practitioner/{world.doctor.licence}"}}
    if act:
        content["item"] = [{"productOrService": {"coding": [{"system": ACT, "code": act}]}}]
    return content


def signed(terminal, action: str, content: dict, patient_card, *, client_key: str | None = None) -> dict:
    return terminal.sign(action, content, patient_card=patient_card, challenge=terminal.challenge(), client_key=client_key)


def post_claim(fhir, world, content: dict, *, terminal=None):
    terminal = terminal or world.doctor_at_clinic
    key = next(i["value"] for i in content["identifier"] if i["system"] == CLIENT_KEY)
    return fhir.post("/fhir/Claim", json=signed(terminal, "care-sheet", content, world.cards["patient"], client_key=key),
                     headers={"content-type": FHIR})


class TestMetadata:
    def test_capability_statement_is_public_and_lists_the_resources(self, fhir):
        statement = resource(fhir.get("/fhir/metadata"), CapabilityStatement)

        served = {r.type for r in statement.rest[0].resource}
        assert {"Patient", "Coverage", "Claim", "ClaimResponse", "CoverageEligibilityRequest", "MedicationRequest",
                "MedicationDispense", "Practitioner", "Organization"} <= served
        assert statement.fhirVersion.startswith("4.")

    def test_an_unknown_resource_type_is_a_404_outcome(self, fhir):
        issue = outcome(fhir.get("/fhir/Observation/1"), 404).issue[0]

        assert issue.code == "not-found" and "Observation" in issue.diagnostics

    def test_an_interaction_not_offered_is_a_405_outcome(self, fhir, reviewer):
        assert outcome(fhir.delete("/fhir/Patient/1", headers=reviewer), 405).issue[0].code == "not-supported"


class TestRegistry:
    def test_patient_read_and_search_by_cin_and_social_id(self, fhir, world, reviewer, session):
        person = session.get(Person, world.member.person_id)
        read = resource(fhir.get(f"/fhir/Patient/{person.id}", headers=reviewer), Patient)

        assert {(i.system, i.value) for i in read.identifier} == {(CIN, person.cin), (SOCIAL_ID, world.member.social_id)}
        assert read.name[0].family == person.last_name_lat and read.name[1].family == person.last_name_ar
        assert read.birthDate == person.birth_date and read.gender == "male"
        for query in (f"{CIN}|{person.cin}", f"{SOCIAL_ID}|{world.member.social_id}", person.cin):
            bundle = resource(fhir.get("/fhir/Patient", params={"identifier": query}, headers=reviewer), Bundle)
            assert bundle.type == "searchset" and bundle.total == 1
            assert Patient.model_validate(bundle.entry[0].resource.model_dump()).id == str(person.id)

    def test_patient_search_without_a_match_is_an_empty_bundle(self, fhir, world, reviewer):
        bundle = resource(fhir.get("/fhir/Patient", params={"identifier": f"{CIN}|99999999"}, headers=reviewer), Bundle)

        assert bundle.total == 0 and not bundle.entry

    def test_patient_search_needs_an_identifier(self, fhir, reviewer):
        assert outcome(fhir.get("/fhir/Patient", headers=reviewer), 400).issue[0].expression == ["identifier"]

    def test_coverage_of_the_insured_and_of_a_child(self, fhir, world, reviewer, session):
        child = factories.dependant(session, world.member.social_id)
        session.flush()
        bundle = resource(fhir.get("/fhir/Coverage", params={"beneficiary": f"Patient/{world.member.person_id}"},
                                   headers=reviewer), Bundle)

        assert bundle.total == 1
        cover = Coverage.model_validate(bundle.entry[0].resource.model_dump())
        assert cover.status == "active" and cover.payor[0].reference == "Organization/cnam"
        assert cover.relationship.coding[0].code == "self" and cover.subscriberId == world.member.social_id
        plan = next(c for c in cover.class_fhir if c.type.coding[0].code == "plan")
        assert plan.value == "private"
        assert cover.extension[0].valueReference.reference == f"Practitioner/{world.doctor.licence}"

        theirs = resource(fhir.get(f"/fhir/Coverage/{child.person_id}", headers=reviewer), Coverage)
        assert theirs.relationship.coding[0].code == "child" and theirs.dependent == "1"
        assert theirs.subscriber.reference == f"Patient/{world.member.person_id}"

    def test_practitioner_and_organizations(self, fhir, world, reviewer):
        doctor = resource(fhir.get(f"/fhir/Practitioner/{world.doctor.licence}", headers=reviewer), Practitioner)
        clinic = resource(fhir.get(f"/fhir/Organization/{world.clinic.code}", headers=reviewer), Organization)
        the_fund = resource(fhir.get("/fhir/Organization/cnam", headers=reviewer), Organization)

        assert doctor.identifier[0].value == world.doctor.licence
        assert clinic.name == "Cabinet El Amal"
        assert the_fund.type[0].coding[0].code == "pay"

    @pytest.mark.parametrize("path", ["/fhir/Patient/{uuid}", "/fhir/Patient/not-a-uuid", "/fhir/Coverage/{uuid}",
                                      "/fhir/Practitioner/NOPE", "/fhir/Organization/NOPE", "/fhir/Claim/CS-2020-00000001",
                                      "/fhir/ClaimResponse/NOPE", "/fhir/MedicationRequest/RX-2020-00000001-1"])
    def test_an_unknown_id_is_a_404_outcome(self, fhir, world, reviewer, path):
        response = fhir.get(path.format(uuid=uuid.uuid4()), headers=reviewer)

        assert outcome(response, 404).issue[0].code == "not-found"


class TestAccess:
    def test_a_read_without_a_token_is_401(self, fhir, world):
        response = fhir.get(f"/fhir/Patient/{world.member.person_id}")

        assert outcome(response, 401).issue[0].code == "login"
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("path", ["/fhir/Patient/{person}", "/fhir/Coverage?beneficiary=Patient/{person}",
                                      "/fhir/Claim/CS-2020-00000001", "/fhir/MedicationRequest?identifier=RX"])
    def test_the_wrong_role_is_403(self, fhir, world, session, path):
        finance = {"Authorization": f"Bearer {factories.agent_token(session, 'finance')}"}

        issue = outcome(fhir.get(path.format(person=world.member.person_id), headers=finance), 403).issue[0]

        assert issue.code == "forbidden" and "permission" in issue.diagnostics


class TestEligibility:
    def test_round_trip_with_the_signed_envelope(self, fhir, world):
        body = signed(world.doctor_at_clinic, "rights-check", eligibility_content(world), world.cards["patient"])

        answer = resource(fhir.post("/fhir/CoverageEligibilityRequest", json=body, headers={"content-type": FHIR}),
                          CoverageEligibilityResponse)

        assert answer.outcome == "complete" and answer.patient.reference == f"Patient/{world.member.person_id}"
        assert answer.request.reference == "CoverageEligibilityRequest/check-1"
        insurance = answer.insurance[0]
        assert insurance.inforce is True
        act, ceiling = insurance.item
        assert act.productOrService.coding[0].code == "CMF"  # the family doctor's consultation
        shares = {b.type.coding[0].code: b.allowedMoney for b in act.benefit}
        assert shares["benefit"].currency == "TND"
        assert shares["benefit"].value + shares["copay"].value == Decimal("18.000")
        assert ceiling.benefit[0].type.coding[0].code == "benefit"
        assert ceiling.benefit[0].allowedMoney.value > 0 and ceiling.benefit[0].usedMoney.value == 0

    def test_pricing_another_act(self, fhir, world):
        body = signed(world.doctor_at_clinic, "rights-check", eligibility_content(world, act="C"), world.cards["patient"])

        answer = resource(fhir.post("/fhir/CoverageEligibilityRequest", json=body), CoverageEligibilityResponse)

        assert answer.insurance[0].item[0].productOrService.coding[0].code == "C"

    def test_an_act_off_the_nomenclature_names_the_item(self, fhir, world):
        body = signed(world.doctor_at_clinic, "rights-check", eligibility_content(world, act="NOPE"), world.cards["patient"])

        issue = outcome(fhir.post("/fhir/CoverageEligibilityRequest", json=body), 400).issue[0]

        assert issue.expression == ["CoverageEligibilityRequest.item[0].productOrService"] and "NOPE" in issue.diagnostics

    def test_a_request_for_another_patient_is_refused(self, fhir, world, session):
        content = eligibility_content(world)
        content["patient"] = {"reference": f"Patient/{uuid.uuid4()}"}
        body = signed(world.doctor_at_clinic, "rights-check", content, world.cards["patient"])

        assert outcome(fhir.post("/fhir/CoverageEligibilityRequest", json=body), 403).issue[0].expression == [
            "CoverageEligibilityRequest.patient"]


class TestClaim:
    def test_round_trip_then_read_back(self, fhir, world, reviewer):
        response = post_claim(fhir, world, claim_content(world))

        answer = resource(response, ClaimResponse, 201)
        assert answer.outcome == "complete" and not answer.error
        number = answer.id
        assert response.headers["location"].endswith(f"/fhir/Claim/{number}")
        totals = {t.category.coding[0].code: t.amount for t in answer.total}
        assert totals["submitted"].value == Decimal("18.000") and totals["submitted"].currency == "TND"
        assert totals["benefit"].value + totals["patient-share"].value == Decimal("18.000")
        line = {a.category.coding[0].code: a.amount.value for a in answer.item[0].adjudication}
        assert line["submitted"] == Decimal("18.000") and line["benefit"] == totals["benefit"].value
        assert answer.processNote and answer.processNote[0].text

        claim = resource(fhir.get(f"/fhir/Claim/{number}", headers=reviewer), Claim)
        assert claim.item[0].productOrService.coding[0].code == "CMF"
        assert claim.diagnosis[0].diagnosisCodeableConcept.coding[0].code == "J06.9"
        assert claim.total.value == Decimal("18.000")
        again = resource(fhir.get(f"/fhir/ClaimResponse/{number}", headers=reviewer), ClaimResponse)
        assert again.model_dump() == answer.model_dump()

    def test_a_claim_queued_offline_needs_no_challenge(self, fhir, world):
        content = claim_content(world)
        key = content["identifier"][0]["value"]
        body = world.doctor_at_clinic.sign("care-sheet", content, patient_card=world.cards["patient"], client_key=key)

        assert resource(fhir.post("/fhir/Claim", json=body), ClaimResponse, 201).outcome == "complete"

    def test_a_claim_naming_another_provider_is_refused(self, fhir, world):
        content = claim_content(world, practitioner=world.specialist)

        assert outcome(post_claim(fhir, world, content), 403).issue[0].expression == ["Claim.provider"]

    def test_the_date_of_care_may_come_from_the_items(self, fhir, world, reviewer):
        content = claim_content(world, billablePeriod=None)
        content["item"][0]["servicedDate"] = today()

        answer = resource(post_claim(fhir, world, content), ClaimResponse, 201)

        claim = resource(fhir.get(f"/fhir/Claim/{answer.id}", headers=reviewer), Claim)
        assert claim.billablePeriod.start.isoformat() == today()

    def test_the_same_client_key_returns_the_same_answer(self, fhir, world):
        content = claim_content(world)
        first = resource(post_claim(fhir, world, content), ClaimResponse, 201)

        second = resource(post_claim(fhir, world, content), ClaimResponse, 200)

        assert second.id == first.id

    def test_the_same_client_key_with_another_claim_is_a_conflict(self, fhir, world):
        key = uuid.uuid4().hex
        resource(post_claim(fhir, world, claim_content(world, key=key)), ClaimResponse, 201)

        response = post_claim(fhir, world, claim_content(world, key=key, diagnoses=("J20.9",)))

        assert outcome(response, 409).issue[0].code == "conflict"

    def test_a_rejected_claim_carries_the_coded_reasons(self, fhir, world):
        # A specialist seen without the family doctor's referral, in the private scheme.
        content = claim_content(world, code="CS", practitioner=world.specialist)

        answer = resource(post_claim(fhir, world, content, terminal=world.terminal("specialist", world.clinic)),
                          ClaimResponse, 201)

        assert answer.outcome == "error"
        assert {(e.code.coding[0].system, e.code.coding[0].code) for e in answer.error} == {(REJECTION_REASON, "R04")}
        assert {t.category.coding[0].code: t.amount.value for t in answer.total}["benefit"] == 0

    def test_a_care_sheet_sent_through_the_rest_api_reads_as_a_claim(self, fhir, world, reviewer):
        sent = world.doctor_at_clinic.send_care_sheet(world.cards["patient"], {
            "kind": "consultation", "care_date": today(), "diagnoses": ["J06.9"], "lines": [{"code": "CMF"}]})

        claim = resource(fhir.get(f"/fhir/Claim/{sent['number']}", headers=reviewer), Claim)
        answer = resource(fhir.get(f"/fhir/ClaimResponse/{sent['number']}", headers=reviewer), ClaimResponse)

        assert claim.diagnosis[0].diagnosisCodeableConcept.coding[0].code == "J06.9"
        assert {t.category.coding[0].code: t.amount.value for t in answer.total}["benefit"] == \
            Decimal(sent["fund_millimes"]).scaleb(-3)


class TestRefusals:
    def test_malformed_json_is_400(self, fhir):
        issue = outcome(fhir.post("/fhir/Claim", content=b'{"transaction": ', headers={"content-type": FHIR}), 400).issue[0]

        assert issue.code == "invalid" and "not JSON" in issue.diagnostics

    def test_a_body_that_is_not_the_envelope_is_400(self, fhir, world):
        issue = outcome(fhir.post("/fhir/Claim", json=claim_content(world)), 400).issue[0]

        assert issue.code == "invalid"

    def test_a_claim_missing_a_required_element_is_400(self, fhir, world):
        content = claim_content(world)
        del content["insurance"]

        result = outcome(post_claim(fhir, world, content), 400)

        assert "Claim.insurance" in {e for issue in result.issue for e in issue.expression or []}

    def test_a_claim_without_a_client_key_is_400(self, fhir, world):
        content = claim_content(world, identifier=[{"system": "urn:other", "value": "x"}])
        body = signed(world.doctor_at_clinic, "care-sheet", content, world.cards["patient"])

        assert outcome(fhir.post("/fhir/Claim", json=body), 400).issue[0].expression == ["Claim.identifier"]

    def test_a_line_off_the_nomenclature_names_the_item(self, fhir, world):
        content = claim_content(world)
        content["item"][0]["productOrService"]["coding"][0]["system"] = "urn:other"

        assert outcome(post_claim(fhir, world, content), 400).issue[0].expression == ["Claim.item[0].productOrService"]

    def test_a_partial_date_of_care_is_400(self, fhir, world):
        content = claim_content(world, billablePeriod={"start": today()[:4]})

        assert outcome(post_claim(fhir, world, content), 400).issue[0].expression == ["Claim.billablePeriod.start"]

    def test_content_altered_after_signing_is_403(self, fhir, world):
        content = claim_content(world)
        body = signed(world.doctor_at_clinic, "care-sheet", content, world.cards["patient"])
        body["content"]["item"][0]["quantity"]["value"] = 2

        issue = outcome(fhir.post("/fhir/Claim", json=body), 403).issue[0]

        assert issue.code == "security" and "altered" in issue.diagnostics

    def test_a_wrong_signature_is_403(self, fhir, world):
        body = signed(world.doctor_at_clinic, "rights-check", eligibility_content(world), world.cards["patient"])
        signature = base64.urlsafe_b64decode(body["transaction"]["signatures"][0]["signature"] + "==")
        forged = bytes([signature[0] ^ 1]) + signature[1:]
        body["transaction"]["signatures"][0]["signature"] = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()

        issue = outcome(fhir.post("/fhir/CoverageEligibilityRequest", json=body), 403).issue[0]

        assert issue.code == "security" and issue.details.coding[0].code == "invalid-transaction"

    def test_a_claim_signed_for_another_action_is_403(self, fhir, world):
        content = claim_content(world)
        body = signed(world.doctor_at_clinic, "rights-check", content, world.cards["patient"])

        assert outcome(fhir.post("/fhir/Claim", json=body), 403).issue[0].code == "security"

    def test_a_refused_claim_writes_nothing_and_leaves_its_challenge_unused(self, fhir, world, session):
        terminal, card = world.doctor_at_clinic, world.cards["patient"]
        challenge = terminal.challenge()
        before = session.scalar(select(func.count()).select_from(CareSheet))
        too_old = claim_content(world, billablePeriod={"start": "1999-01-01"})
        key = too_old["identifier"][0]["value"]

        refused = fhir.post("/fhir/Claim", json=terminal.sign("care-sheet", too_old, patient_card=card,
                                                              challenge=challenge, client_key=key))

        assert outcome(refused, 422).issue[0].code == "business-rule"
        assert session.scalar(select(func.count()).select_from(CareSheet)) == before
        corrected = claim_content(world, key=key)
        accepted = fhir.post("/fhir/Claim", json=terminal.sign("care-sheet", corrected, patient_card=card,
                                                               challenge=challenge, client_key=key))
        assert resource(accepted, ClaimResponse, 201).outcome == "complete"


class TestPrescriptions:
    def test_lines_dispensing_and_status(self, fhir, world, reviewer):
        issued = world.doctor_at_clinic.prescribe(world.cards["patient"], {
            "kind": "medicines", "diagnoses": ["J06.9"],
            "lines": [{"code": DRUG, "quantity": 2, "renewals": 1, "dose": "1 comprimé matin et soir", "duration_days": 7},
                      {"code": "500215", "quantity": 1}]})
        number = issued["number"]

        first = resource(fhir.get(f"/fhir/MedicationRequest/{number}-1", headers=reviewer), MedicationRequest)
        assert first.status == "active" and first.intent == "order"
        assert first.subject.reference == f"Patient/{world.member.person_id}"
        assert first.requester.reference == f"Practitioner/{world.doctor.licence}"
        medicine = first.medicationCodeableConcept.coding[0]
        drug = ruleset(datetime.now(UTC).date()).drugs[DRUG]
        assert (medicine.system, medicine.code) == (PCT, DRUG) and drug.brand in medicine.display
        assert first.dispenseRequest.numberOfRepeatsAllowed == 1 and first.dispenseRequest.quantity.value == 2
        assert first.dosageInstruction[0].text == "1 comprimé matin et soir"
        assert first.groupIdentifier.value == number

        bundle = resource(fhir.get("/fhir/MedicationRequest", params={"identifier": number}, headers=reviewer), Bundle)
        assert bundle.total == 2
        assert [MedicationRequest.model_validate(e.resource.model_dump()).id for e in bundle.entry] == [
            f"{number}-1", f"{number}-2"]

        dispensed = world.pharmacy_terminal.dispense(number, [{"line_no": 2, "quantity": 1}],
                                                    patient_card=world.cards["patient"])
        dispenses = resource(fhir.get("/fhir/MedicationDispense", params={"prescription": number}, headers=reviewer),
                             Bundle)
        assert dispenses.total == 1
        given = MedicationDispense.model_validate(dispenses.entry[0].resource.model_dump())
        assert given.status == "completed" and given.quantity.value == 1
        assert given.authorizingPrescription[0].reference == f"MedicationRequest/{number}-2"
        assert given.identifier[0].value == dispensed["dispensation"]
        second = resource(fhir.get(f"/fhir/MedicationRequest/{number}-2", headers=reviewer), MedicationRequest)
        assert second.status == "completed"
        by_line = resource(fhir.get("/fhir/MedicationDispense", params={"prescription": f"MedicationRequest/{number}-1"},
                                    headers=reviewer), Bundle)
        assert by_line.total == 0

        pharmacy_claim = resource(fhir.get(f"/fhir/Claim/{dispensed['care_sheet']['number']}", headers=reviewer), Claim)
        assert pharmacy_claim.item[0].productOrService.coding[0].system == PCT
        assert pharmacy_claim.prescription.identifier.value == number

    def test_searches_need_their_parameter(self, fhir, reviewer):
        assert outcome(fhir.get("/fhir/MedicationRequest", headers=reviewer), 400).issue[0].expression == ["identifier"]
        assert outcome(fhir.get("/fhir/MedicationDispense", headers=reviewer), 400).issue[0].expression == ["prescription"]


def test_error_answers_are_operation_outcomes_not_problem_json(fhir, world):
    response = fhir.post("/fhir/CoverageEligibilityRequest", content=json.dumps([1, 2]), headers={"content-type": FHIR})

    assert outcome(response, 400).get_resource_type() == "OperationOutcome"
    assert not response.headers["content-type"].startswith("application/problem+json")
