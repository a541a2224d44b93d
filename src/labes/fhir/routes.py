"""HTTP for the FHIR R4 facade at /fhir: parse, call one service function, answer `application/fhir+json`.

Reads are for fund agents with a bearer token. CoverageEligibilityRequest and Claim come in the signed
point-of-care envelope of the REST API, `{"transaction": <JWS>, "content": <the FHIR resource>}`: the
cards sign the digest of the resource itself. Every error leaves as an OperationOutcome (`FhirRoute`).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from labes import __version__
from labes.care.deps import CardSigned, SignedAction, SignedRequest
from labes.errors import NotFound
from labes.fhir import mapping, service
from labes.fhir.outcomes import FHIR_JSON, FhirResponse, FhirRoute, InvalidResource, NotSupported
from labes.security import audit
from labes.security.deps import DbSession, permitted

router = APIRouter(prefix="/fhir", tags=["FHIR R4"], route_class=FhirRoute, default_response_class=FhirResponse)
CARD = {"x-permission": "card-signed",
        "requestBody": {"required": True, "content": {FHIR_JSON: {"schema": {"type": "object", "required": [
            "transaction", "content"], "properties": {"transaction": {"type": "object"}, "content": {"type": "object"}}}}}}}
SUPPORTED = ("Patient", "Coverage", "Practitioner", "Organization", "CoverageEligibilityRequest", "Claim",
             "ClaimResponse", "MedicationRequest", "MedicationDispense", "metadata")

RegistryReader = permitted("registry:read")
ProvidersReader = permitted("providers:read")
ClaimsReviewer = permitted("claims:review")


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidResource(f"The body is not JSON: {exc}.", field="body") from None


class FhirSigned(CardSigned):
    """Dependency: the signed envelope read from any JSON body (`application/fhir+json` too), checked as the REST API does."""

    async def __call__(self, request: Request, body: Annotated[Any, Depends(_json_body)]) -> SignedAction:  # type: ignore[override]
        try:
            envelope = SignedRequest.model_validate(body)
        except ValidationError as exc:
            errors = [{"field": ".".join(map(str, e["loc"])) or "body", "message": e["msg"]} for e in exc.errors()]
            raise InvalidResource("The body must be {\"transaction\": <JWS General JSON>, \"content\": <the FHIR "
                                  "resource>}: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                                  errors=errors) from None
        return self.action_for(request, envelope)


def fhir_signed(action: str, *, freshness: Literal["challenge", "challenge-or-client-key"] = "challenge"):
    return Annotated[SignedAction, Depends(FhirSigned(action, freshness=freshness))]


def _audited_read(session, actor, resource_type: str, key: str) -> None:
    """Record that an agent read health data (claims, prescriptions): the patient may see who did."""
    audit.record(session, actor=actor, action=f"fhir:{resource_type}:read", entity_type=resource_type, entity_id=key[:80])


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


def _bundle(request: Request, resources: list[Any]) -> FhirResponse:
    return FhirResponse(mapping.searchset(_base(request), str(request.url), resources))


@router.get("/metadata", openapi_extra={"x-permission": "public"})
def capability_statement(request: Request) -> FhirResponse:
    """The CapabilityStatement: the resources, interactions and search parameters this server offers."""
    return FhirResponse(mapping.capability_statement(base_url=_base(request), version=__version__, today=date.today()))


# ---------------------------------------------------------------- registry


@router.get("/Patient/{person_id}")
def read_patient(person_id: str, session: DbSession, actor: RegistryReader) -> FhirResponse:
    """A person as a Patient (CIN, social identifier, names in Latin and Arabic script)."""
    return FhirResponse(service.patient(session, person_id))


@router.get("/Patient")
def search_patients(request: Request, session: DbSession, actor: RegistryReader,
                    identifier: str | None = None) -> FhirResponse:
    """Patients by identifier: `https://labes.tn/fhir/sid/cin|<CIN>` or `https://labes.tn/fhir/sid/social-id|<id>`."""
    return _bundle(request, service.search_patients(session, identifier=identifier))


@router.get("/Coverage/{coverage_id}")
def read_coverage(coverage_id: str, session: DbSession, actor: RegistryReader) -> FhirResponse:
    """A beneficiary's coverage today: `<patient id>` (the family's scheme) or `amen-<patient id>`."""
    return FhirResponse(service.coverage(session, coverage_id, on=date.today()))


@router.get("/Coverage")
def search_coverages(request: Request, session: DbSession, actor: RegistryReader,
                     beneficiary: str | None = None) -> FhirResponse:
    """A patient's coverages today (`beneficiary=Patient/<id>`): care scheme, payor, relationship, Amen."""
    return _bundle(request, service.coverages(session, beneficiary=beneficiary, on=date.today()))


@router.get("/Practitioner/{licence}")
def read_practitioner(licence: str, session: DbSession, actor: ProvidersReader) -> FhirResponse:
    """A health professional by licence."""
    return FhirResponse(service.practitioner(session, licence))


@router.get("/Organization/{code}")
def read_organization(code: str, session: DbSession, actor: ProvidersReader) -> FhirResponse:
    """A facility by code, or the fund itself (`cnam`)."""
    return FhirResponse(service.organization(session, code))


# ---------------------------------------------------------------- point of care


@router.post("/CoverageEligibilityRequest", openapi_extra=CARD)
def check_rights(session: DbSession, signed: fhir_signed("rights-check")) -> FhirResponse:
    """A signed CoverageEligibilityRequest; the answer is a CoverageEligibilityResponse (rights, prices, ceiling)."""
    return FhirResponse(service.check_rights(session, verified=signed.accept(session)))


@router.post("/Claim", status_code=201, openapi_extra=CARD)
def submit_claim(request: Request, session: DbSession,
                 signed: fhir_signed("care-sheet", freshness="challenge-or-client-key")) -> FhirResponse:
    """A signed Claim, adjudicated at once; the answer is its ClaimResponse (200 with the same one for a known client key)."""
    sheet, new = service.submit_claim(session, verified=signed.accept(session))
    return FhirResponse(service.claim_response(session, sheet), status_code=201 if new else 200,
                        headers={"Location": f"{_base(request)}/Claim/{sheet.number}"})


@router.get("/Claim/{number}")
def read_claim(number: str, session: DbSession, actor: ClaimsReviewer) -> FhirResponse:
    """A care sheet as a Claim."""
    resource = service.claim(session, number)
    _audited_read(session, actor, "Claim", number)
    return FhirResponse(resource)


@router.get("/ClaimResponse/{number}")
def read_claim_response(number: str, session: DbSession, actor: ClaimsReviewer) -> FhirResponse:
    """The fund's decision on a care sheet as a ClaimResponse."""
    resource = service.claim_response(session, number)
    _audited_read(session, actor, "ClaimResponse", number)
    return FhirResponse(resource)


# ---------------------------------------------------------------- e-prescriptions


@router.get("/MedicationRequest/{line_id}")
def read_medication_request(line_id: str, session: DbSession, actor: ClaimsReviewer) -> FhirResponse:
    """One line of an e-prescription of medicines: `<prescription number>-<line number>`."""
    resource = service.medication_request(session, line_id, today=date.today())
    _audited_read(session, actor, "MedicationRequest", line_id)
    return FhirResponse(resource)


@router.get("/MedicationRequest")
def search_medication_requests(request: Request, session: DbSession, actor: ClaimsReviewer,
                               identifier: str | None = None) -> FhirResponse:
    """The lines of an e-prescription (`identifier=<prescription number>`)."""
    found = service.search_medication_requests(session, identifier=identifier, today=date.today())
    _audited_read(session, actor, "MedicationRequest", identifier or "")
    return _bundle(request, found)


@router.get("/MedicationDispense")
def search_medication_dispenses(request: Request, session: DbSession, actor: ClaimsReviewer,
                                prescription: str | None = None) -> FhirResponse:
    """What was dispensed against a prescription (`prescription=<number>` or `MedicationRequest/<id>`)."""
    found = service.medication_dispenses(session, prescription=prescription)
    _audited_read(session, actor, "MedicationDispense", prescription or "")
    return _bundle(request, found)


@router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def unsupported(rest: str, request: Request) -> FhirResponse:
    """Anything else under /fhir: an OperationOutcome, not the API's problem+json."""
    kind = rest.split("/", 1)[0]
    if kind in SUPPORTED:
        raise NotSupported(f"{request.method} /fhir/{rest} is not offered by this server; see /fhir/metadata.")
    raise NotFound(f"This server has no FHIR resource type '{kind}'; /fhir/metadata lists the ones it serves.")
