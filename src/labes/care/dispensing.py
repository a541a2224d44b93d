"""Dispensing against an e-prescription: partial fills, renewals, generic substitution, never twice.

One signed transaction dispenses and sends its care sheet: the prescription row is locked, each line's
count moves by a guarded UPDATE, so two pharmacies trying at the same moment cannot both succeed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from labes.care import prescriptions as rx
from labes.care.models import CareSheet, Dispensation
from labes.care.patients import patient_file
from labes.care.schemas import DispenseContent, Line
from labes.care.sheets import adjudicate, audit_sheet, find_by_client_key, new_sheet, priced_lines, replayed
from labes.care.transactions import Verified, next_number
from labes.claims.ruleset import ruleset
from labes.errors import Conflict, InvalidInput, NotPermitted, RuleViolation
from labes.registry.models import Person
from labes.security import audit

SHEET_KIND = {"medicines": "pharmacy", "lab": "lab", "imaging": "imaging"}


@dataclass(frozen=True)
class Dispensed:
    dispensation: Dispensation | None
    sheet: CareSheet
    prescription_state: str
    new: bool = True  # False: the client key had already made this dispensation


def dispense(session: Session, *, verified: Verified, content: DispenseContent) -> Dispensed:
    """Dispense lines of a prescription and send the care sheet; the same client key returns the same answer."""
    if (existing := find_by_client_key(session, content.client_key)) is not None:
        sheet = replayed(existing, verified, content.client_key)
        dispensation = session.get(Dispensation, sheet.dispensation_id) if sheet.dispensation_id else None
        prescription = session.get(rx.Prescription, dispensation.prescription_id) if dispensation else None
        return Dispensed(dispensation, sheet, prescription.state if prescription else "unknown", new=False)

    prescription = rx.get_or_raise(session, content.prescription, lock=True)
    rx.expire_if_due(prescription, verified.care_day)
    rx.refuse_closed(prescription)
    if verified.patient is not None:
        if verified.patient.id != prescription.patient_person_id:
            raise NotPermitted("This prescription is not for the holder of the card that signed.", field="content.prescription")
    elif not (prescription.access_code_used and prescription.dispenser_facility_id == verified.facility.id):
        raise NotPermitted("Dispense with the patient's card, or open the prescription here first with the access code "
                           "on its QR code.", field="transaction.payload.patient_card")
    if prescription.dispenser_facility_id not in (None, verified.facility.id):
        raise Conflict(f"Prescription {prescription.number} is being dispensed at another pharmacy.",
                       field="content.prescription")
    sheet_kind = SHEET_KIND[prescription.kind]
    rx.refuse_other_profession(prescription, verified)

    rules = ruleset(verified.care_day)
    by_no = {line.line_no: line for line in rx.lines_of(session, prescription)}
    given: list[Line] = []
    record = []
    seen = set()
    for index, item in enumerate(content.lines):
        line = by_no.get(item.line_no)
        if line is None:
            raise InvalidInput(f"Prescription {prescription.number} has no line {item.line_no}.",
                               field=f"content.lines.{index}.line_no")
        if item.line_no in seen:
            raise InvalidInput(f"Line {item.line_no} appears twice.", field=f"content.lines.{index}.line_no")
        seen.add(item.line_no)
        code = item.code or line.code
        if code != line.code:
            prescribed, substitute = rules.drugs.get(line.code), rules.drugs.get(code)
            if not line.substitutable:
                raise RuleViolation(f"Line {item.line_no}: the prescriber ruled out substitution.",
                                    field=f"content.lines.{index}.code")
            if prescribed is None or substitute is None or substitute.generic_group != prescribed.generic_group:
                raise RuleViolation(f"Line {item.line_no}: {code} is not a generic of the same group as {line.code}.",
                                    field=f"content.lines.{index}.code")
        if not rx.take(session, line=line, quantity=item.quantity):
            left = rx.remaining(line)
            raise Conflict(f"Line {item.line_no}: {item.quantity} asked, {max(left, 0)} left to dispense — never more "
                           "than prescribed, never twice.", field=f"content.lines.{index}.quantity")
        given.append(Line(code=code, quantity=item.quantity, unit_price_millimes=item.unit_price_millimes))
        record.append({"line_no": item.line_no, "code": code, "prescribed_code": line.code, "quantity": item.quantity})

    before = prescription.state
    prescription.state = "completed" if all(rx.remaining(line) == 0 for line in by_no.values()) else "partly_dispensed"
    # A pharmacy holds the prescription while a fill is under way; once every line's fill is complete, the
    # renewals left may be filled at any pharmacy (with the patient's card: the paper's code was used once).
    fill_done = all(line.dispensed % line.quantity == 0 for line in by_no.values())
    prescription.dispenser_facility_id = None if fill_done and prescription.state != "completed" else verified.facility.id
    number = next_number(session, series="DS", year=verified.care_day.year)
    dispensation = Dispensation(number=number, prescription_id=prescription.id, facility_id=verified.facility.id,
                                professional_id=verified.professional.id, at=verified.now, lines=record)
    session.add(dispensation)
    session.flush()

    patient_person = verified.patient or session.get(Person, prescription.patient_person_id)
    patient = patient_file(session, person=patient_person, on=verified.care_day)
    sheet = new_sheet(verified, number=next_number(session, series="CS", year=verified.care_day.year),
                       client_key=content.client_key, kind=sheet_kind, care_date=verified.care_day,
                       last_care_date=verified.care_day, patient=patient)
    sheet.dispensation_id = dispensation.id
    session.add(sheet)
    session.flush()
    adjudicate(session, sheet=sheet, verified=verified, lines=priced_lines(given, on=verified.care_day, kind=sheet_kind),
               diagnoses=list(prescription.diagnoses), approval=content.approval, patient=patient)
    session.flush()
    audit_sheet(session, verified, sheet, "care:care-sheet:submit")
    audit.record(session, actor=verified.actor, action="care:prescription:dispense", entity_type="prescription",
                 entity_id=prescription.number, before={"state": before},
                 after={"state": prescription.state, "dispensation": number, "lines": record})
    return Dispensed(dispensation, sheet, prescription.state)
