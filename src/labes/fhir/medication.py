"""E-prescriptions in FHIR: one MedicationRequest per prescription line, one MedicationDispense per line dispensed.

A MedicationRequest's id is `<prescription number>-<line number>`; the lines of one prescription share its
number as `groupIdentifier`. Pure functions of the rows.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fhir.resources.R4B.medicationdispense import MedicationDispense
from fhir.resources.R4B.medicationrequest import MedicationRequest

from labes.care.models import Dispensation, Prescription, PrescriptionLine
from labes.claims.ruleset import RuleSet
from labes.fhir.mapping import DISPENSATION, FACILITY, ICD10, PCT, PRESCRIPTION, coding, concept, hl7, instant, ref

UCUM = "http://unitsofmeasure.org"


def line_id(number: str, line_no: int) -> str:
    """Return the id of the MedicationRequest for one prescription line."""
    return f"{number}-{line_no}"


def split_line_id(resource_id: str) -> tuple[str, int] | None:
    """Return (prescription number, line number) from a MedicationRequest id, or None if it is not one."""
    number, _, line_no = resource_id.strip().upper().rpartition("-")
    return (number, int(line_no)) if number and line_no.isdigit() else None


def medication(rules: RuleSet, code: str) -> dict[str, Any]:
    """Return the medicine as a CodeableConcept of the national list (PCT code), with its name when listed."""
    drug = rules.drugs.get(code)
    label = f"{drug.brand} {drug.strength} ({drug.form})" if drug else None
    return concept(coding(PCT, code, label), text=label)


def _status(prescription: Prescription, line: PrescriptionLine, today: date) -> tuple[str, str | None]:
    if prescription.state == "cancelled":
        return "cancelled", prescription.cancel_reason
    if line.dispensed >= line.quantity * line.fills:
        return "completed", None
    if prescription.state == "expired" or prescription.valid_until < today:
        return "stopped", f"Expired on {prescription.valid_until.isoformat()}"
    if prescription.state == "completed":
        return "completed", None
    return "active", None


def medication_request(prescription: Prescription, line: PrescriptionLine, *, patient_id: str, prescriber: str,
                       dispenser: str | None, rules: RuleSet, today: date) -> MedicationRequest:
    """Return the MedicationRequest for one line of an e-prescription (renewals = fills − 1)."""
    status, why = _status(prescription, line, today)
    dispense: dict[str, Any] = {
        "validityPeriod": {"start": prescription.issued_at.date(), "end": prescription.valid_until},
        "numberOfRepeatsAllowed": line.fills - 1,
        "quantity": {"value": line.quantity, "unit": "box"},
    }
    if line.duration_days:
        dispense["expectedSupplyDuration"] = {"value": line.duration_days, "unit": "days", "system": UCUM, "code": "d"}
    if dispenser:
        dispense["performer"] = ref("Organization", dispenser)
    return MedicationRequest.model_validate({
        "resourceType": "MedicationRequest", "id": line_id(prescription.number, line.line_no),
        "identifier": [{"use": "official", "system": PRESCRIPTION, "value": prescription.number}],
        "groupIdentifier": {"system": PRESCRIPTION, "value": prescription.number},
        "status": status, "statusReason": concept(text=why) if why else None,
        "intent": "order",
        "medicationCodeableConcept": medication(rules, line.code),
        "subject": ref("Patient", patient_id),
        "authoredOn": instant(prescription.issued_at),
        "requester": ref("Practitioner", prescriber),
        "reasonCode": [concept(coding(ICD10, code)) for code in prescription.diagnoses] or None,
        "dosageInstruction": [{"sequence": 1, "text": line.dose}] if line.dose else None,
        "dispenseRequest": dispense,
        "substitution": {"allowedBoolean": line.substitutable},
    })


def medication_dispenses(dispensation: Dispensation, prescription: Prescription, *, patient_id: str, pharmacist: str,
                         pharmacy: str, rules: RuleSet, line_no: int | None = None) -> list[MedicationDispense]:
    """Return one MedicationDispense per line delivered by a dispensation (only prescription line `line_no` if given)."""
    out = []
    for line in dispensation.lines:
        if line_no is not None and line["line_no"] != line_no:
            continue
        substituted = line["code"] != line["prescribed_code"]
        out.append(MedicationDispense.model_validate({
            "resourceType": "MedicationDispense", "id": f"{dispensation.number}-{line['line_no']}",
            "identifier": [{"use": "official", "system": DISPENSATION, "value": dispensation.number}],
            "status": "completed",
            "medicationCodeableConcept": medication(rules, line["code"]),
            "subject": ref("Patient", patient_id),
            "performer": [{"actor": ref("Practitioner", pharmacist)}, {"actor": ref("Organization", pharmacy)}],
            "location": {"identifier": {"system": FACILITY, "value": pharmacy}},
            "authorizingPrescription": [ref("MedicationRequest", line_id(prescription.number, line["line_no"]))],
            "quantity": {"value": line["quantity"], "unit": "box"},
            "whenHandedOver": instant(dispensation.at),
            "substitution": {"wasSubstituted": substituted,
                             "type": concept(hl7("v3-ActCode", "G", "generic composition")) if substituted else None},
        }))
    return out
