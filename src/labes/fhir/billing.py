"""The point of care in FHIR: CoverageEligibilityRequest/Response for the rights check, Claim/ClaimResponse
for the care sheet.

Pure functions: a validated FHIR request becomes the content our services take (`RightsCheckContent`,
`CareSheetContent`); a rights-check answer or a care sheet with its decision becomes the FHIR answer.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, TypeVar

from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.claimresponse import ClaimResponse
from fhir.resources.R4B.coverageeligibilityrequest import CoverageEligibilityRequest
from fhir.resources.R4B.coverageeligibilityresponse import CoverageEligibilityResponse
from pydantic import BaseModel, ValidationError

from labes.care.models import CareSheet
from labes.care.schemas import CareSheetContent, RightsCheckContent
from labes.claims.decision import tnd
from labes.claims.ruleset import RuleSet
from labes.errors import NotPermitted
from labes.fhir.mapping import (
    ACT, CARE_SHEET, CARE_SHEET_KIND, CLIENT_KEY, CONTENT_DIGEST, FACILITY, ICD10, LABES_ADJUDICATION, PCT,
    PRESCRIPTION, REFERRAL_TO_EXTENSION, REJECTION_REASON, TERMINOLOGY, coding, concept, fund_reference, hl7,
    instant, millimes_of, money, ref,
)
from labes.fhir.outcomes import InvalidResource

M = TypeVar("M", bound=BaseModel)

# Our care-sheet kinds and HL7's claim types (http://terminology.hl7.org/CodeSystem/claim-type).
CLAIM_TYPE_OF_KIND = {"consultation": "professional", "dental": "oral", "pharmacy": "pharmacy", "lab": "professional",
                      "imaging": "professional", "hospital": "institutional", "physio": "professional"}
KIND_OF_CLAIM_TYPE = {"professional": "consultation", "oral": "dental", "institutional": "hospital", "pharmacy": "pharmacy"}
# Where each field of our content comes from in a Claim, to name it in an OperationOutcome.
_CLAIM_PATHS = {"client_key": "Claim.identifier", "kind": "Claim.type", "care_date": "Claim.billablePeriod.start",
                "last_care_date": "Claim.billablePeriod.end", "diagnoses": "Claim.diagnosis", "lines": "Claim.item",
                "approval": "Claim.insurance.preAuthRef", "referral_to": "Claim.extension", "prescription": "Claim.prescription"}
_LINE_PATHS = {"code": "productOrService", "quantity": "quantity", "unit_price_millimes": "unitPrice"}


def fhir_path(resource: str, loc: tuple[Any, ...]) -> str:
    """Return a FHIRPath-like location, e.g. `Claim.item[0].productOrService`."""
    out = resource
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse(model: type[M], content: Any) -> M:
    """Validate signed content as the FHIR resource `model`; refuse it naming every element that is wrong."""
    name = model.get_resource_type()
    if not isinstance(content, dict) or content.get("resourceType") != name:
        raise InvalidResource(f"The content must be a FHIR {name} (\"resourceType\": \"{name}\").",
                              field="content.resourceType")
    try:
        return model.model_validate(content)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            where = fhir_path(name, tuple(p for p in error["loc"] if p != "resource_type"))
            message = "is required" if error["type"] in ("missing", "model_field_validation.missing") else error["msg"]
            errors.append({"field": where, "message": f"{where}: {' '.join(message.split())}"})
        raise InvalidResource(f"The {name} is not valid FHIR R4: " + "; ".join(e["message"] for e in errors),
                              errors=errors) from None


def claim_field(field: str | None) -> str | None:
    """Translate a field of our care-sheet content (`content.lines.0.code`) into its place in the Claim."""
    if not field or not field.startswith("content."):
        return field
    parts = field.removeprefix("content.").split(".")
    if parts[0] == "lines" and len(parts) >= 2 and parts[1].isdigit():
        tail = f".{_LINE_PATHS.get(parts[2], parts[2])}" if len(parts) > 2 else ""
        return f"Claim.item[{parts[1]}]{tail}"
    return _CLAIM_PATHS.get(parts[0], field)


def _validated(model: type[M], data: dict[str, Any], *, resource: str, locate=claim_field) -> M:
    """Validate our content built from a FHIR request, naming each refused element where the request has it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            where = locate("content." + ".".join(map(str, error["loc"]))) if error["loc"] else resource
            errors.append({"field": where, "message": f"{where}: {error['msg'].removeprefix('Value error, ')}"})
        raise InvalidResource("; ".join(e["message"] for e in errors), errors=errors) from None


def _day(value: Any, where: str) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date) or value is None:
        return value
    raise InvalidResource(f"{where} must be a full date (YYYY-MM-DD); got {value}.", field=where)


def _code(concept_: Any, systems: tuple[str, ...]) -> str | None:
    for c in (concept_.coding or []) if concept_ is not None else []:
        if c.system in systems and c.code:
            return c.code
    return None


def check_parties(resource: str, *, patient: Any, provider: Any, patient_id: str, cin: str | None, licence: str,
                  facility: str) -> None:
    """Refuse a request whose patient or provider is not whom the cards that signed it belong to."""
    if patient is not None:
        named = patient.reference
        if named and named != f"Patient/{patient_id}":
            raise NotPermitted(f"{resource}.patient names {named}, but the patient's card that signed is Patient/{patient_id}.",
                               field=f"{resource}.patient")
        identifier = patient.identifier
        if identifier is not None and identifier.value and identifier.value != cin:
            raise NotPermitted(f"{resource}.patient is not the holder of the patient's card that signed.",
                               field=f"{resource}.patient")
    if provider is not None and provider.reference:
        allowed = (f"Practitioner/{licence}", f"Organization/{facility}", f"PractitionerRole/{licence}")
        if provider.reference not in allowed:
            raise NotPermitted(f"{resource}.provider names {provider.reference}, but the professional's card that signed "
                               f"is Practitioner/{licence} at Organization/{facility}.", field=f"{resource}.provider")


# ---------------------------------------------------------------- rights check


def rights_check_input(request: CoverageEligibilityRequest, *, care_day: date) -> RightsCheckContent:
    """Return the rights check a CoverageEligibilityRequest asks for (at most one act to price)."""
    items = request.item or []
    if len(items) > 1:
        raise InvalidResource("Ask for one act at a time (CoverageEligibilityRequest.item has at most one entry); "
                              "without an item the facility's standard act is priced.", field="CoverageEligibilityRequest.item")
    act = None
    if items:
        act = _code(items[0].productOrService, (ACT,))
        if act is None:
            raise InvalidResource(f"CoverageEligibilityRequest.item[0].productOrService needs a code of {ACT}.",
                                  field="CoverageEligibilityRequest.item[0].productOrService")
    serviced = _day(request.servicedDate, "CoverageEligibilityRequest.servicedDate")
    if serviced is not None and serviced != care_day:
        raise InvalidResource(f"A rights check answers for the day it is signed ({care_day.isoformat()}); "
                              f"servicedDate says {serviced.isoformat()}.", field="CoverageEligibilityRequest.servicedDate")
    return _validated(RightsCheckContent, {"act": act}, resource="CoverageEligibilityRequest",
                      locate=lambda field: "CoverageEligibilityRequest.item")


def _price_item(act: dict[str, Any]) -> dict[str, Any]:
    rejected = act["status"] != "accepted"
    item = {
        "category": concept(hl7("ex-benefitcategory", "1", "Medical Care")),
        "productOrService": concept(coding(ACT, act["code"], act["label"])),
        "name": act["label"],
        "excluded": rejected or None,
        "network": concept(hl7("benefit-network", "in", "In Network")),
        "unit": concept(hl7("benefit-unit", "individual", "Individual")),
        "benefit": [
            {"type": concept(hl7("benefit-type", "benefit", "Benefit")), "allowedMoney": money(act["fund_millimes"])},
            {"type": concept(hl7("benefit-type", "copay", "Copayment per service")),
             "allowedMoney": money(act["patient_millimes"])},
        ],
    }
    if rejected:
        item["description"] = "The fund would refuse this act: " + ", ".join(act["reasons"])
    return item


def _ceiling_item(ceiling: dict[str, Any]) -> dict[str, Any]:
    return {
        "category": concept(hl7("ex-benefitcategory", "30", "Health Benefit Plan Coverage")),
        "name": f"Annual family ceiling {ceiling['year']}",
        "description": f"{tnd(ceiling['remaining_millimes'])} remaining of {tnd(ceiling['total_millimes'])}",
        "network": concept(hl7("benefit-network", "in", "In Network")),
        "unit": concept(hl7("benefit-unit", "family", "Family")),
        "term": concept(hl7("benefit-term", "annual", "Annual")),
        "benefit": [{"type": concept(hl7("benefit-type", "benefit", "Benefit")),
                     "allowedMoney": money(ceiling["total_millimes"]), "usedMoney": money(ceiling["used_millimes"])}],
    }


def eligibility_response(answer: dict[str, Any], *, request: CoverageEligibilityRequest, patient_id: str,
                         licence: str, content_digest: str, care_day: date) -> CoverageEligibilityResponse:
    """Return the CoverageEligibilityResponse for a rights check (`labes.care.rights.check`'s answer)."""
    items = []
    if answer["standard_act"] is not None:
        items.append(_price_item(answer["standard_act"]))
    if answer["ceiling"].get("applies"):
        items.append(_ceiling_item(answer["ceiling"]))
    # The family's scheme (when the patient belongs to an insured family) and the Amen programme are two coverages;
    # the prices go with the first one in force.
    insurance = []
    if answer["patient"]["role"] != "amen":
        insurance.append({"coverage": ref("Coverage", patient_id), "inforce": answer["care_scheme"] is not None})
    if answer["amen"] is not None:
        insurance.append({"coverage": ref("Coverage", f"amen-{patient_id}"), "inforce": bool(answer["amen"]["covered"])})
    if insurance and items:
        next((i for i in insurance if i["inforce"]), insurance[0])["item"] = items
    request_ref: dict[str, Any] = {"identifier": {"system": CONTENT_DIGEST, "value": content_digest}}
    if request.id:
        request_ref["reference"] = f"CoverageEligibilityRequest/{request.id}"
    return CoverageEligibilityResponse.model_validate({
        "resourceType": "CoverageEligibilityResponse",
        "identifier": list(request.identifier or []) or None,
        "status": "active", "purpose": list(request.purpose or ["validation", "benefits"]),
        "patient": ref("Patient", patient_id, answer["patient"]["name_lat"]),
        "servicedDate": care_day, "created": answer["checked_at"],
        "requestor": ref("Practitioner", licence), "request": request_ref,
        "outcome": "complete", "disposition": answer["reason"], "insurer": fund_reference(),
        "insurance": insurance or None,
    })


# ---------------------------------------------------------------- care sheets


def care_sheet_input(claim: Claim) -> CareSheetContent:
    """Return the care sheet a Claim sends: client key, kind, dates, diagnoses (ICD-10) and billed lines."""
    if claim.use != "claim":
        raise InvalidResource(f"Only claims are accepted here (Claim.use = 'claim'), not '{claim.use}'.", field="Claim.use")
    client_key = next((i.value for i in claim.identifier or [] if i.system == CLIENT_KEY), None)
    if not client_key:
        raise InvalidResource(f"Give the terminal's client key as a Claim.identifier with the system {CLIENT_KEY}: "
                              "the same key returns the same answer, never a second care sheet.", field="Claim.identifier")
    kind = _code(claim.type, (CARE_SHEET_KIND,))
    if kind is None:
        claim_type = _code(claim.type, (TERMINOLOGY + "claim-type",))
        kind = KIND_OF_CLAIM_TYPE.get(claim_type or "")
        if kind is None:
            raise InvalidResource(f"Claim.type needs a code of {CARE_SHEET_KIND} (consultation, dental, lab, imaging, "
                                  "hospital, physio) or of the HL7 claim-type system.", field="Claim.type")
    lines, served = [], []
    for index, item in enumerate(claim.item or []):
        where = f"Claim.item[{index}]"
        code = _code(item.productOrService, (ACT, PCT))
        if code is None:
            raise InvalidResource(f"{where}.productOrService needs a code of {ACT} (or {PCT} for a medicine).",
                                  field=f"{where}.productOrService")
        quantity = item.quantity.value if item.quantity is not None and item.quantity.value is not None else 1
        if quantity != int(quantity):
            raise InvalidResource(f"{where}.quantity is a whole number of acts or boxes.", field=f"{where}.quantity")
        line: dict[str, Any] = {"code": code, "quantity": int(quantity)}
        if item.unitPrice is not None and item.unitPrice.value is not None:
            line["unit_price_millimes"] = millimes_of(item.unitPrice.value, currency=item.unitPrice.currency,
                                                      where=f"{where}.unitPrice")
        lines.append(line)
        span = item.servicedPeriod
        served += [d for d in (_day(item.servicedDate, f"{where}.servicedDate"),
                               _day(span and span.start, f"{where}.servicedPeriod.start"),
                               _day(span and span.end, f"{where}.servicedPeriod.end")) if d]
    period = claim.billablePeriod
    care_date = _day(period.start, "Claim.billablePeriod.start") if period is not None else None
    last = _day(period.end, "Claim.billablePeriod.end") if period is not None else None
    if care_date is None and served:
        care_date, last = min(served), max(served)
    if care_date is None:
        raise InvalidResource("Give the date of care: Claim.billablePeriod.start or Claim.item.servicedDate.",
                              field="Claim.billablePeriod")
    diagnoses = []
    for index, diagnosis in enumerate(claim.diagnosis or []):
        code = _code(diagnosis.diagnosisCodeableConcept, (ICD10,))
        if code is None:
            raise InvalidResource(f"Claim.diagnosis[{index}] needs an ICD-10 code (system {ICD10}).",
                                  field=f"Claim.diagnosis[{index}]")
        diagnoses.append(code)
    focal = next((i for i in claim.insurance if i.focal), claim.insurance[0])
    referral = next((e.valueCode or e.valueString for e in claim.extension or [] if e.url == REFERRAL_TO_EXTENSION), None)
    data = {"client_key": client_key, "kind": kind, "care_date": care_date, "last_care_date": last if last != care_date else None,
            "diagnoses": diagnoses, "lines": lines, "approval": (focal.preAuthRef or [None])[0], "referral_to": referral}
    return _validated(CareSheetContent, {k: v for k, v in data.items() if v is not None}, resource="Claim")


def stored_inputs(content: dict[str, Any]) -> dict[str, Any]:
    """Return the diagnoses and approval of a stored care sheet's content (a REST content or a FHIR Claim, as signed)."""
    if content.get("resourceType") == "Claim":
        try:
            sheet = care_sheet_input(Claim.model_validate(content))
        except (InvalidResource, ValidationError):
            return {"diagnoses": [], "approval": None}
        return {"diagnoses": sheet.diagnoses, "approval": sheet.approval}
    return {"diagnoses": list(content.get("diagnoses") or []), "approval": content.get("approval")}


def _claim_type(kind: str) -> dict[str, Any]:
    return concept(hl7("claim-type", CLAIM_TYPE_OF_KIND.get(kind, "professional")), coding(CARE_SHEET_KIND, kind))


def _label(rules: RuleSet, code: str) -> tuple[str, str | None]:
    if (drug := rules.drugs.get(code)) is not None:
        return PCT, f"{drug.brand} {drug.strength} ({drug.form})"
    act = rules.acts.get(code)
    return ACT, act.label_fr if act else None


def _identifiers(sheet: CareSheet) -> list[dict[str, Any]]:
    return [{"use": "official", "system": CARE_SHEET, "value": sheet.number},
            {"use": "secondary", "system": CLIENT_KEY, "value": sheet.client_key}]


def claim(sheet: CareSheet, *, patient_id: str, patient_name: str, licence: str, facility_code: str,
          facility_name: str, coverage_id: str, diagnoses: list[str], approval: str | None,
          prescription: str | None, rules: RuleSet) -> Claim:
    """Return the Claim for a care sheet as the fund received it (its lines as billed)."""
    lines = (sheet.decision or {}).get("lines", [])
    items = []
    for sequence, line in enumerate(lines, start=1):
        system, label = _label(rules, line["code"])
        quantity = max(int(line["quantity"]), 1)
        items.append({"sequence": sequence, "productOrService": concept(coding(system, line["code"], label)),
                      "servicedDate": sheet.care_date, "quantity": {"value": quantity},
                      "unitPrice": money(line["billed_millimes"] // quantity), "net": money(line["billed_millimes"])})
    return Claim.model_validate({
        "resourceType": "Claim", "id": sheet.number, "identifier": _identifiers(sheet),
        "status": "active", "type": _claim_type(sheet.kind), "use": "claim",
        "patient": ref("Patient", patient_id, patient_name),
        "billablePeriod": {"start": sheet.care_date, "end": sheet.last_care_date},
        "created": instant(sheet.signed_at), "insurer": fund_reference(),
        "provider": ref("Practitioner", licence),
        "priority": concept(hl7("processpriority", "normal")),
        "prescription": {"identifier": {"system": PRESCRIPTION, "value": prescription}} if prescription else None,
        "facility": {"identifier": {"system": FACILITY, "value": facility_code}, "display": facility_name},
        "diagnosis": [{"sequence": i, "diagnosisCodeableConcept": concept(coding(ICD10, code))}
                      for i, code in enumerate(diagnoses, start=1)] or None,
        "insurance": [{"sequence": 1, "focal": True, "coverage": ref("Coverage", coverage_id),
                       "preAuthRef": [approval] if approval else None}],
        "item": items or None,
        "total": money(sheet.billed_millimes),
    })


def _adjudication(category: dict[str, Any], millimes: int) -> dict[str, Any]:
    return {"category": concept(category), "amount": money(millimes)}


def claim_response(sheet: CareSheet, *, patient_id: str, licence: str, rules: RuleSet) -> ClaimResponse:
    """Return the fund's answer on a care sheet: outcome, amounts per line and in total, coded reasons, the explanation."""
    decision = sheet.decision or {}
    submitted, benefit = hl7("adjudication", "submitted", "Submitted Amount"), hl7("adjudication", "benefit", "Benefit Amount")
    copay = hl7("adjudication", "copay", "CoPay")
    patient_share = coding(LABES_ADJUDICATION, "patient-share", "Paid by the patient")
    items = [{"itemSequence": sequence, "adjudication": [
        _adjudication(submitted, line["billed_millimes"]), _adjudication(benefit, line["fund_millimes"]),
        _adjudication(copay, line["copay_millimes"]), _adjudication(patient_share, line["patient_millimes"])]}
        for sequence, line in enumerate(decision.get("lines", []), start=1)]
    accepted = sheet.status in ("accepted", "paid")
    reasons = rules.rejection_reasons
    if accepted:
        disposition = (f"Accepted: the fund pays {tnd(sheet.fund_millimes)}, the patient {tnd(sheet.patient_millimes)}.")
    elif sheet.status == "rejected":
        disposition = "Rejected: " + "; ".join(f"{code} {reasons[code].label_en}" if code in reasons else code
                                               for code in sheet.reasons)
    else:
        disposition = "Received; not yet decided."
    notes = []
    for number, step in enumerate(decision.get("explanation", []), start=1):
        notes.append({"number": number, "type": "display", "text": f"{step['rule']}: {step['text']}"})
    payment = None
    if accepted and sheet.fund_millimes > 0:
        payment = {"type": concept(hl7("ex-paymenttype", "complete", "Complete")), "amount": money(sheet.fund_millimes),
                   "date": sheet.paid_on or sheet.payment_due_on}
    return ClaimResponse.model_validate({
        "resourceType": "ClaimResponse", "id": sheet.number, "identifier": _identifiers(sheet),
        "status": "active", "type": _claim_type(sheet.kind), "use": "claim",
        "patient": ref("Patient", patient_id), "created": instant(sheet.decided_at or sheet.received_at),
        "insurer": fund_reference(), "requestor": ref("Practitioner", licence),
        "request": {**ref("Claim", sheet.number), "identifier": {"system": CARE_SHEET, "value": sheet.number}},
        "outcome": "complete" if accepted else "error" if sheet.status == "rejected" else "queued",
        "disposition": disposition,
        "payeeType": concept(hl7("payeetype", "subscriber" if sheet.payee == "insured" else "provider"))
        if sheet.payee else None,
        "item": items or None,
        "total": [_adjudication(submitted, sheet.billed_millimes), _adjudication(benefit, sheet.fund_millimes),
                  _adjudication(patient_share, sheet.patient_millimes)],
        "payment": payment,
        "processNote": notes or None,
        "error": [{"code": concept(coding(REJECTION_REASON, code, reasons[code].label_en if code in reasons else None))}
                  for code in sheet.reasons] or None,
    })
