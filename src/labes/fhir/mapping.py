"""Registry rows as FHIR R4 resources (R4B models of `fhir.resources`): Patient, Coverage, Practitioner,
Organization, and the shared pieces — identifier systems, money, references, search bundles.

Pure functions: rows and plain values in, validated `fhir.resources` models out.
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner

from labes.fhir.outcomes import FHIR_JSON, InvalidResource
from labes.registry.models import AmenHousehold, Facility, Member, Person, Professional

FHIR_VERSION = "4.3.0"  # R4B, which the R4 resources served here share

# Our identifier systems and code systems.
SID = "https://labes.tn/fhir/sid/"
CIN = SID + "cin"
SOCIAL_ID = SID + "social-id"
LICENCE = SID + "licence"
FACILITY = SID + "facility"
ORGANIZATION = SID + "organization"
AMEN_HOUSEHOLD = SID + "amen-household"
CLIENT_KEY = SID + "client-key"
CARE_SHEET = SID + "care-sheet"
PRESCRIPTION = SID + "prescription"
DISPENSATION = SID + "dispensation"
CONTENT_DIGEST = SID + "content-digest"
CODES = "https://labes.tn/fhir/CodeSystem/"
ACT = CODES + "act"
PCT = CODES + "pct"
REJECTION_REASON = CODES + "rejection-reason"
CARE_SHEET_KIND = CODES + "care-sheet-kind"
CARE_SCHEME = CODES + "care-scheme"
REGIME = CODES + "regime"
FACILITY_KIND = CODES + "facility-kind"
PROFESSIONAL_KIND = CODES + "professional-kind"
LABES_ADJUDICATION = CODES + "adjudication"
EXTENSIONS = "https://labes.tn/fhir/StructureDefinition/"
FAMILY_DOCTOR_EXTENSION = EXTENSIONS + "family-doctor"
REFERRAL_TO_EXTENSION = EXTENSIONS + "referral-to"
# HL7 systems.
ICD10 = "http://hl7.org/fhir/sid/icd-10"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
LANGUAGE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/language"

FUND_ID = "cnam"
FUND_NAME = "Caisse Nationale d'Assurance Maladie"
CURRENCY = "TND"
SCHEME_NAMES = {"public": "Public scheme (filière publique)",
                "private": "Private scheme with a family doctor (filière privée)",
                "reimbursement": "Reimbursement scheme (système de remboursement)"}
AMEN_NAMES = {"free": "Amen: free care in public facilities (AMG1)",
              "reduced": "Amen: reduced-fee care in public facilities (AMG2)"}
_RELATIONSHIP = {"insured": "self", "spouse": "spouse", "child": "child", "father": "parent", "mother": "parent"}


# ---------------------------------------------------------------- shared pieces


def money(millimes: int) -> dict[str, Any]:
    """Return a FHIR Money in dinars with three decimals (18000 millimes → 18.000 TND)."""
    return {"value": Decimal(millimes).scaleb(-3), "currency": CURRENCY}


def millimes_of(value: Any, *, currency: str | None, where: str) -> int:
    """Return the millimes of a FHIR Money value, refusing another currency or a fraction of a millime."""
    if currency not in (None, CURRENCY):
        raise InvalidResource(f"Amounts are in Tunisian dinars ({CURRENCY}); got {currency}.", field=where)
    amount = Decimal(str(value)) * 1000
    if amount != amount.to_integral_value() or amount < 0:
        raise InvalidResource(f"{value} is not an amount of dinars with at most three decimals.", field=where)
    return int(amount)


def instant(value: datetime | None) -> datetime | None:
    """Return `value` as an aware UTC time (SQLite gives back naive UTC datetimes; FHIR wants a zone)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def ref(resource_type: str, resource_id: Any, display: str | None = None) -> dict[str, Any]:
    """Return a literal reference, e.g. `Patient/<id>`."""
    out: dict[str, Any] = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        out["display"] = display
    return out


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"system": system, "code": code, **({"display": display} if display else {})}


def concept(*codings: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    return {"coding": list(codings), **({"text": text} if text else {})}


def hl7(code_system: str, code: str, display: str | None = None) -> dict[str, Any]:
    """Return a coding of an HL7 terminology code system, e.g. `hl7("claim-type", "oral")`."""
    return coding(TERMINOLOGY + code_system, code, display)


def narrative(text: str) -> dict[str, Any]:
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{html.escape(text)}</div>'}


def fund_reference() -> dict[str, Any]:
    return ref("Organization", FUND_ID, FUND_NAME)


def _arabic(name: dict[str, Any]) -> dict[str, Any]:
    return {**name, "extension": [{"url": LANGUAGE_EXTENSION, "valueCode": "ar"}]}


def _address(row: Any) -> list[dict[str, Any]]:
    address = {"line": [row.address] if row.address else None, "district": row.delegation, "state": row.governorate,
               "country": "TN"}
    return [{k: v for k, v in address.items() if v}]


def person_name(person: Person) -> str:
    return f"{person.first_name_lat} {person.last_name_lat}"


def searchset(base_url: str, self_url: str, resources: list[Any]) -> Bundle:
    """Return a search result Bundle of `resources` (every one a match)."""
    return Bundle.model_validate({
        "resourceType": "Bundle", "type": "searchset", "total": len(resources),
        "link": [{"relation": "self", "url": self_url}],
        "entry": [{"fullUrl": f"{base_url}/{r.get_resource_type()}/{r.id}", "resource": r, "search": {"mode": "match"}}
                  for r in resources],
    })


# ---------------------------------------------------------------- registry


def patient(person: Person, *, social_id: str | None = None) -> Patient:
    """Return the Patient for a person (the social identifier only on the insured member's own record)."""
    identifiers = []
    if person.cin:
        identifiers.append({"use": "official", "system": CIN, "value": person.cin})
    if social_id:
        identifiers.append({"use": "official", "system": SOCIAL_ID, "value": social_id})
    return Patient.model_validate({
        "resourceType": "Patient", "id": str(person.id), "identifier": identifiers or None,
        "active": True,
        "name": [{"use": "official", "family": person.last_name_lat, "given": [person.first_name_lat],
                  "text": person_name(person)},
                 _arabic({"use": "official", "family": person.last_name_ar, "given": [person.first_name_ar],
                          "text": f"{person.first_name_ar} {person.last_name_ar}"})],
        "telecom": [{"system": "phone", "value": person.phone, "use": "mobile"}] if person.phone else None,
        "gender": {"M": "male", "F": "female"}.get(person.sex, "unknown"),
        "birthDate": person.birth_date,
        "deceasedDateTime": person.death_date.isoformat() if person.death_date else None,
        "address": _address(person),
        "communication": [{"language": concept(coding("urn:ietf:bcp:47", person.language)), "preferred": True}],
    })


def coverage(person: Person, *, member: Member, role: str, rank: int, covered: bool, reason: str,
             covered_until: date | None, scheme: str | None, family_doctor: Professional | None) -> Coverage:
    """Return the Coverage of a beneficiary by the fund: the family's care scheme, the insured member, the relationship."""
    classes = [{"type": concept(hl7("coverage-class", "group")), "value": member.regime, "name": f"Regime {member.regime}"}]
    if scheme:
        classes.insert(0, {"type": concept(hl7("coverage-class", "plan")), "value": scheme,
                           "name": SCHEME_NAMES.get(scheme, scheme)})
    return Coverage.model_validate({
        "resourceType": "Coverage", "id": str(person.id), "text": narrative(reason),
        "extension": [{"url": FAMILY_DOCTOR_EXTENSION,
                       "valueReference": ref("Practitioner", family_doctor.licence, family_doctor.name_lat)}]
        if family_doctor else None,
        "identifier": [{"system": SOCIAL_ID, "value": member.social_id}],
        "status": "active" if covered else "cancelled",
        "type": concept(hl7("v3-ActCode", "PUBLICPOL", "public healthcare"), coding(REGIME, member.regime)),
        "subscriber": ref("Patient", member.person_id),
        "subscriberId": member.social_id,
        "beneficiary": ref("Patient", person.id, person_name(person)),
        "dependent": str(rank) if role != "insured" else None,
        "relationship": concept(hl7("subscriber-relationship", _RELATIONSHIP.get(role, "other")), text=role),
        "period": {"start": member.affiliation_start, "end": covered_until},
        "payor": [fund_reference()],
        "class": classes,
    })


def amen_coverage(person: Person, *, household: AmenHousehold, covered: bool) -> Coverage:
    """Return the Coverage of an Amen beneficiary (the safety-net programme, public facilities only)."""
    return Coverage.model_validate({
        "resourceType": "Coverage", "id": f"amen-{person.id}",
        "identifier": [{"system": AMEN_HOUSEHOLD, "value": household.number}],
        "status": "active" if covered else "cancelled",
        "type": concept(hl7("v3-ActCode", "PUBLICPOL", "public healthcare"), coding(REGIME, "AMEN")),
        "beneficiary": ref("Patient", person.id, person_name(person)),
        "period": {"start": household.valid_from, "end": household.valid_to},
        "payor": [fund_reference()],
        "class": [{"type": concept(hl7("coverage-class", "plan")), "value": f"amen-{household.level}",
                   "name": AMEN_NAMES.get(household.level, household.level)}],
    })


def practitioner(professional: Professional) -> Practitioner:
    """Return the Practitioner for a health professional, identified by their licence."""
    return Practitioner.model_validate({
        "resourceType": "Practitioner", "id": professional.licence,
        "identifier": [{"use": "official", "system": LICENCE, "value": professional.licence}],
        "active": True,
        "name": [{"text": professional.name_lat}, _arabic({"text": professional.name_ar})],
        "address": _address(professional),
        "qualification": [{"code": concept(coding(PROFESSIONAL_KIND, professional.kind),
                                           text=professional.specialty or professional.kind.replace("_", " "))}],
    })


def organization(facility: Facility) -> Organization:
    """Return the Organization for a facility, identified by its code."""
    return Organization.model_validate({
        "resourceType": "Organization", "id": facility.code,
        "identifier": [{"use": "official", "system": FACILITY, "value": facility.code}],
        "active": facility.contract_status != "terminated",
        "type": [concept(hl7("organization-type", "prov", "Healthcare Provider"), coding(FACILITY_KIND, facility.kind))],
        "name": facility.name_lat, "alias": [facility.name_ar],
        "address": _address(facility),
    })


def fund() -> Organization:
    """Return the fund itself, the payor of every Coverage."""
    return Organization.model_validate({
        "resourceType": "Organization", "id": FUND_ID,
        "identifier": [{"system": ORGANIZATION, "value": "CNAM"}],
        "active": True, "type": [concept(hl7("organization-type", "pay", "Payer"))],
        "name": FUND_NAME, "alias": ["الصندوق الوطني للتأمين على المرض", "CNAM"],
        "address": [{"city": "Tunis", "country": "TN"}],
    })


# ---------------------------------------------------------------- what the server offers


def _resource(kind: str, *, interactions: tuple[str, ...] = ("read",), search: tuple[tuple[str, str, str], ...] = (),
              doc: str | None = None) -> dict[str, Any]:
    return {"type": kind, "interaction": [{"code": i} for i in interactions],
            "searchParam": [{"name": n, "type": t, "documentation": d} for n, t, d in search] or None,
            **({"documentation": doc} if doc else {})}


def capability_statement(*, base_url: str, version: str, today: date) -> CapabilityStatement:
    """Return the CapabilityStatement of the facade: what can be read, searched and sent."""
    signed = ("Sent as the signed point-of-care envelope {\"transaction\": <JWS>, \"content\": <the resource>}: "
              "the cards sign the RFC 8785 digest of the resource (action '%s'). No bearer token.")
    return CapabilityStatement.model_validate({
        "resourceType": "CapabilityStatement", "status": "active", "date": today.isoformat(), "kind": "instance",
        "publisher": FUND_NAME,
        "software": {"name": "Labes", "version": version},
        "implementation": {"description": "Labes FHIR facade", "url": base_url},
        "fhirVersion": FHIR_VERSION, "format": [FHIR_JSON],
        "rest": [{
            "mode": "server",
            "security": {"description": "Reads: 'Authorization: Bearer <token>' of a fund agent (registry:read, "
                                        "providers:read or claims:review). CoverageEligibilityRequest and Claim: "
                                        "signed by the professional's and the patient's cards."},
            "resource": [
                _resource("Patient", interactions=("read", "search-type"),
                          search=(("identifier", "token", f"{CIN}|<CIN> or {SOCIAL_ID}|<social id>"),)),
                _resource("Coverage", interactions=("read", "search-type"),
                          search=(("beneficiary", "reference", "Patient/<id>"),)),
                _resource("Practitioner", doc="id = the professional's licence"),
                _resource("Organization", doc=f"id = the facility code; '{FUND_ID}' is the fund"),
                _resource("CoverageEligibilityRequest", interactions=("create",),
                          doc=(signed % "rights-check") + " Answers a CoverageEligibilityResponse."),
                _resource("Claim", interactions=("read", "create"),
                          doc=(signed % "care-sheet") + " Answers the ClaimResponse; id = the care sheet number."),
                _resource("ClaimResponse", doc="id = the care sheet number"),
                _resource("MedicationRequest", interactions=("read", "search-type"),
                          search=(("identifier", "token", "the prescription number"),),
                          doc="One per prescription line; id = <prescription number>-<line number>"),
                _resource("MedicationDispense", interactions=("search-type",),
                          search=(("prescription", "reference", "the prescription number, or MedicationRequest/<id>"),),
                          doc="One per dispensed line; id = <dispensation number>-<line number>"),
            ],
        }],
    })
