"""What the FHIR facade reads and sends: look-ups by FHIR id or identifier, and the signed point-of-care calls.

Plain functions taking a session first; indexed look-ups by primary key or unique number only. They
return FHIR models built by `mapping`, `billing` and `medication`, so the routes stay HTTP only.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.coverageeligibilityrequest import CoverageEligibilityRequest
from sqlalchemy import select
from sqlalchemy.orm import Session

from labes.care import prescriptions as rx
from labes.care import rights, sheets
from labes.care.models import CareSheet, Dispensation, Prescription, Visit
from labes.care.patients import patient_file
from labes.care.transactions import Verified
from labes.claims.ruleset import ruleset
from labes.errors import LabesError, NotFound
from labes.fhir import billing, mapping, medication
from labes.fhir.mapping import CIN, SOCIAL_ID
from labes.fhir.outcomes import InvalidResource
from labes.registry import providers
from labes.registry.models import CoveragePeriod, Facility, Member, Person, Professional


# ---------------------------------------------------------------- registry


def get_person(session: Session, resource_id: str) -> Person:
    """Return the person whose Patient id is `resource_id`, or raise NotFound."""
    try:
        person = session.get(Person, uuid.UUID(resource_id))
    except ValueError:
        person = None
    if person is None:
        raise NotFound(f"No Patient/{resource_id}. A Patient id is the person's id; search by identifier "
                       f"({CIN}|<CIN>) to find it.", field="id")
    return person


def _social_id(session: Session, person: Person) -> str | None:
    return session.scalar(select(Member.social_id).where(Member.person_id == person.id))


def patient(session: Session, resource_id: str):
    """Return Patient/`resource_id`."""
    person = get_person(session, resource_id)
    return mapping.patient(person, social_id=_social_id(session, person))


def search_patients(session: Session, *, identifier: str | None) -> list[Any]:
    """Return the Patients with `identifier` (`<system>|<value>`, or a bare CIN or social identifier)."""
    if not identifier:
        raise InvalidResource(f"Search Patients by identifier: identifier={CIN}|<CIN> or {SOCIAL_ID}|<social id>.",
                              field="identifier")
    system, _, value = identifier.rpartition("|")
    value = value.strip()
    if system not in ("", CIN, SOCIAL_ID):
        raise InvalidResource(f"Unknown identifier system {system}; use {CIN} or {SOCIAL_ID}.", field="identifier")
    found: Person | None = None
    if system in ("", CIN) and value:
        found = session.scalar(select(Person).where(Person.cin == value))
    if found is None and system in ("", SOCIAL_ID) and value:
        found = session.scalar(select(Person).join(Member, Member.person_id == Person.id).where(Member.social_id == value))
    return [mapping.patient(found, social_id=_social_id(session, found))] if found is not None else []


def coverages(session: Session, *, beneficiary: str | None, on: date) -> list[Any]:
    """Return the Coverages of a patient on `on`: the family's care scheme, and the Amen programme if any."""
    if not beneficiary:
        raise InvalidResource("Search Coverage by beneficiary=Patient/<id>.", field="beneficiary")
    resource_id = beneficiary.removeprefix("Patient/")
    try:
        person = session.get(Person, uuid.UUID(resource_id))
    except ValueError:
        person = None
    if person is None:
        return []
    file = patient_file(session, person=person, on=on)
    out = []
    if file.member is not None:
        period = session.scalar(select(CoveragePeriod).where(CoveragePeriod.member_id == file.member.id,
                                                             CoveragePeriod.start_date <= on)
                                .order_by(CoveragePeriod.start_date.desc()).limit(1))
        doctor = session.get(Professional, period.family_doctor_id) if period and period.family_doctor_id else None
        out.append(mapping.coverage(person, member=file.member, role=file.role, rank=file.rank, covered=file.covered,
                                    reason=file.reason, covered_until=file.covered_until,
                                    scheme=period.scheme if period else None, family_doctor=doctor))
    if file.amen is not None:
        out.append(mapping.amen_coverage(person, household=file.amen, covered=file.amen_covered))
    return out


def coverage(session: Session, resource_id: str, *, on: date):
    """Return Coverage/`resource_id` (`<patient id>` for the family's scheme, `amen-<patient id>` for Amen)."""
    wanted = resource_id.removeprefix("amen-")
    found = [c for c in coverages(session, beneficiary=wanted, on=on) if c.id == resource_id]
    if not found:
        raise NotFound(f"No Coverage/{resource_id}. Search Coverage?beneficiary=Patient/<id>.", field="id")
    return found[0]


def practitioner(session: Session, licence: str):
    """Return Practitioner/`licence`."""
    return mapping.practitioner(providers.get_professional_or_raise(session, licence=licence))


def organization(session: Session, code: str):
    """Return Organization/`code`: a facility, or the fund itself."""
    if code == mapping.FUND_ID:
        return mapping.fund()
    return mapping.organization(providers.get_facility_or_raise(session, code=code))


# ---------------------------------------------------------------- care sheets


def _sheet_parties(session: Session, sheet: CareSheet) -> tuple[Person, Professional, Facility]:
    return (session.get(Person, sheet.patient_person_id), session.get(Professional, sheet.professional_id),
            session.get(Facility, sheet.facility_id))


def claim(session: Session, number: str):
    """Return Claim/`number`: the care sheet as received."""
    sheet = sheets.get_or_raise(session, number)
    person, professional, facility = _sheet_parties(session, sheet)
    inputs = billing.stored_inputs(sheet.content)
    diagnoses, prescription = inputs["diagnoses"], None
    if sheet.visit_id is not None:
        diagnoses = list(session.get(Visit, sheet.visit_id).diagnoses)
    if sheet.dispensation_id is not None:
        order = session.get(Prescription, session.get(Dispensation, sheet.dispensation_id).prescription_id)
        diagnoses, prescription = list(order.diagnoses), order.number
    coverage_id = str(person.id) if sheet.member_id is not None or sheet.amen_household_id is None else f"amen-{person.id}"
    return billing.claim(sheet, patient_id=str(person.id), patient_name=mapping.person_name(person),
                         licence=professional.licence, facility_code=facility.code, facility_name=facility.name_lat,
                         coverage_id=coverage_id, diagnoses=diagnoses, approval=inputs["approval"],
                         prescription=prescription, rules=ruleset(sheet.care_date))


def claim_response(session: Session, number: str | CareSheet):
    """Return ClaimResponse/`number`: the fund's decision on the care sheet."""
    sheet = number if isinstance(number, CareSheet) else sheets.get_or_raise(session, number)
    professional = session.get(Professional, sheet.professional_id)
    return billing.claim_response(sheet, patient_id=str(sheet.patient_person_id), licence=professional.licence,
                                  rules=ruleset(sheet.care_date))


def check_rights(session: Session, *, verified: Verified):
    """Answer a signed CoverageEligibilityRequest with a CoverageEligibilityResponse."""
    request = billing.parse(CoverageEligibilityRequest, verified.content)
    person = verified.patient
    billing.check_parties("CoverageEligibilityRequest", patient=request.patient, provider=request.provider,
                          patient_id=str(person.id), cin=person.cin, licence=verified.professional.licence,
                          facility=verified.facility.code)
    content = billing.rights_check_input(request, care_day=verified.care_day)
    try:
        answer = rights.check(session, verified=verified, act=content.act)
    except LabesError as exc:
        if exc.field == "content.act":
            exc.field = "CoverageEligibilityRequest.item[0].productOrService"
        raise
    return billing.eligibility_response(answer, request=request, patient_id=str(person.id),
                                        licence=verified.professional.licence,
                                        content_digest=verified.transaction.content_digest, care_day=verified.care_day)


def submit_claim(session: Session, *, verified: Verified) -> tuple[CareSheet, bool]:
    """Receive a signed Claim as a care sheet, adjudicated at once; return it and whether it was new."""
    request = billing.parse(Claim, verified.content)
    person = verified.patient
    billing.check_parties("Claim", patient=request.patient, provider=request.provider, patient_id=str(person.id),
                          cin=person.cin, licence=verified.professional.licence, facility=verified.facility.code)
    content = billing.care_sheet_input(request)
    try:
        return sheets.receive(session, verified=verified, content=content)
    except LabesError as exc:
        exc.field = billing.claim_field(exc.field)
        raise


# ---------------------------------------------------------------- e-prescriptions


def _medicines(session: Session, number: str) -> Prescription | None:
    prescription = session.scalar(select(Prescription).where(Prescription.number == number.strip().upper()))
    return prescription if prescription is not None and prescription.kind == "medicines" else None


def _requests(session: Session, prescription: Prescription, *, today: date, line_no: int | None = None) -> list[Any]:
    prescriber = session.get(Professional, prescription.prescriber_id)
    dispenser = session.get(Facility, prescription.dispenser_facility_id) if prescription.dispenser_facility_id else None
    rules = ruleset(prescription.issued_at.date())
    return [medication.medication_request(prescription, line, patient_id=str(prescription.patient_person_id),
                                          prescriber=prescriber.licence, dispenser=dispenser.code if dispenser else None,
                                          rules=rules, today=today)
            for line in rx.lines_of(session, prescription) if line_no is None or line.line_no == line_no]


def medication_request(session: Session, resource_id: str, *, today: date):
    """Return MedicationRequest/`<prescription number>-<line>`."""
    parts = medication.split_line_id(resource_id)
    prescription = _medicines(session, parts[0]) if parts else None
    found = _requests(session, prescription, today=today, line_no=parts[1]) if prescription else []
    if not found:
        raise NotFound(f"No MedicationRequest/{resource_id}. Its id is <prescription number>-<line number>, "
                       "e.g. RX-2026-00000001-1, for a prescription of medicines.", field="id")
    return found[0]


def search_medication_requests(session: Session, *, identifier: str | None, today: date) -> list[Any]:
    """Return the MedicationRequests (one per line) of the prescription numbered `identifier`."""
    if not identifier:
        raise InvalidResource("Search MedicationRequest by identifier=<prescription number>.", field="identifier")
    system, _, number = identifier.rpartition("|")
    if system not in ("", mapping.PRESCRIPTION):
        return []
    prescription = _medicines(session, number)
    return _requests(session, prescription, today=today) if prescription else []


def medication_dispenses(session: Session, *, prescription: str | None) -> list[Any]:
    """Return the MedicationDispenses of a prescription (its number), or of one line (MedicationRequest/<id>)."""
    if not prescription:
        raise InvalidResource("Search MedicationDispense by prescription=<prescription number> "
                              "or prescription=MedicationRequest/<id>.", field="prescription")
    wanted = prescription.removeprefix("MedicationRequest/")
    order, line_no = _medicines(session, wanted), None
    if order is None and (parts := medication.split_line_id(wanted)) is not None:
        order, line_no = _medicines(session, parts[0]), parts[1]
    if order is None:
        return []
    rules = ruleset(order.issued_at.date())
    out = []
    for dispensation in session.scalars(select(Dispensation).where(Dispensation.prescription_id == order.id)
                                        .order_by(Dispensation.at, Dispensation.number)):
        pharmacist = session.get(Professional, dispensation.professional_id)
        pharmacy = session.get(Facility, dispensation.facility_id)
        out += medication.medication_dispenses(dispensation, order, patient_id=str(order.patient_person_id),
                                               pharmacist=pharmacist.licence, pharmacy=pharmacy.code, rules=rules,
                                               line_no=line_no)
    return out
