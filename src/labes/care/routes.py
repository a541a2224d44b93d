"""HTTP for the point of care: challenges, rights checks, care sheets, e-prescriptions, dispensing, approvals.

Every write is a transaction signed by the professional's card (and, for the patient's data, the
patient's card): the cards are the credentials. See docs/protocol.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, status
from sqlalchemy.orm import Session

from labes.care import dispensing, prescriptions, protocol, rights, sheets
from labes.care.deps import challenge_secret, signed_route
from labes.care.schemas import (
    ApprovalRequestContent, CareSheetContent, CareSheetCorrectionContent, ChallengeRead, DispenseContent,
    InsuredCareSheetsContent, PrescriptionCancelContent, PrescriptionContent, PrescriptionOpenContent, RightsCheckContent,
    StatusQueryContent,
)
from labes.care.transactions import Verified, VerifiedInsured
from labes.claims import approvals
from labes.security import audit
from labes.security.deps import DbSession, UnitOfWorkRoute, permitted

router = APIRouter(prefix="/api/v1/care", tags=["point of care"], route_class=UnitOfWorkRoute)
CREATED = status.HTTP_201_CREATED


@router.post("/challenges", response_model=ChallengeRead, status_code=status.HTTP_201_CREATED,
             openapi_extra={"x-permission": "public"})
async def new_challenge(request: Request) -> dict[str, Any]:
    """A one-time challenge for the next signed transaction (valid 2 minutes, usable once)."""
    # On the event loop: a random nonce and a MAC, nothing stored, no worker thread (every signed request asks first).
    challenge = protocol.issue_challenge(challenge_secret(request), now=datetime.now(UTC))
    return {"challenge": challenge.token, "expires_at": challenge.expires_at}


@signed_route(router, "/rights-checks", action="rights-check", content=RightsCheckContent, reading=True,
              patient_file=True)
def rights_check(session: Session, verified: Verified, content: RightsCheckContent) -> dict[str, Any]:
    """Check the rights of the patient whose card signed, with the price of the standard act here."""
    return rights.check(session, verified=verified, act=content.act)


@signed_route(router, "/care-sheets", action="care-sheet", content=CareSheetContent, status_code=CREATED,
              freshness="challenge-or-client-key")
def submit_care_sheet(session: Session, verified: Verified, content: CareSheetContent) -> tuple[dict[str, Any], int]:
    """Send a care sheet signed by both cards; it is adjudicated at once. The same client key answers 200 with the same sheet."""
    sheet, new = sheets.receive(session, verified=verified, content=content)
    return _sheet_answer(session, sheet), CREATED if new else status.HTTP_200_OK


@signed_route(router, "/care-sheets/{number}/corrections", action="care-sheet-correction",
              content=CareSheetCorrectionContent, freshness="challenge-or-client-key")
def correct_care_sheet(session: Session, verified: Verified, content: CareSheetCorrectionContent,
                       number: str) -> dict[str, Any]:
    """Resubmit a rejected care sheet, corrected, under its own number."""
    return _sheet_answer(session, sheets.correct(session, number=number, verified=verified, content=content))


@signed_route(router, "/care-sheets/status", action="care-sheet-status", content=StatusQueryContent, patient="none",
              reading=True)
def care_sheet_status(session: Session, verified: Verified, content: StatusQueryContent) -> dict[str, Any]:
    """The statuses of this facility's care sheets (by number, or since a day), with the fund's payment deadlines."""
    found = sheets.status_for_provider(session, verified=verified, numbers=content.numbers, since=content.since)
    today = verified.now.date()
    return {"items": [{**sheets.answer(s), "late": sheets.late(s, today)} for s in found]}


@signed_route(router, "/insured/care-sheets", action="insured-care-sheets", content=InsuredCareSheetsContent,
              reading=True)
def insured_care_sheets(session: Session, verified: VerifiedInsured, content: InsuredCareSheetsContent) -> dict[str, Any]:
    """The insured's care sheets, signed by their own card alone: statuses, amounts, reasons, payments.

    The family's insured member sees the whole family's sheets (the fund reimburses them); anyone else their own.
    """
    return sheets.for_insured(session, verified=verified, since=content.since)


@router.get("/care-sheets/{number}")
def read_care_sheet(number: str, session: DbSession, actor: permitted("claims:review")) -> dict[str, Any]:
    """A care sheet with the fund's decision (fund agents); the reading is audited: it is health data."""
    sheet = sheets.get_or_raise(session, number)
    audit.record(session, actor=actor, action="care:care-sheet:read", entity_type="care_sheet", entity_id=sheet.number)
    return _sheet_answer(session, sheet)


def _sheet_answer(session, sheet) -> dict[str, Any]:
    return sheets.answer(sheet, visit_number=sheet.visit.number if sheet.visit_id else None)


@signed_route(router, "/prescriptions", action="prescribe", content=PrescriptionContent, status_code=CREATED)
def prescribe(session: Session, verified: Verified, content: PrescriptionContent) -> dict[str, Any]:
    """Issue an e-prescription signed by the prescriber's and the patient's cards; the answer carries the QR code once."""
    issued = prescriptions.prescribe(session, verified=verified, content=content)
    return {**prescriptions.view(session, issued.prescription, today=verified.care_day),
            "access_code": issued.access_code, "qr_payload": issued.qr_payload, "qr_svg": issued.qr_svg}


@signed_route(router, "/prescriptions/open", action="prescription-open", content=PrescriptionOpenContent,
              patient="optional")
def open_prescription(session: Session, verified: Verified, content: PrescriptionOpenContent) -> dict[str, Any]:
    """Open a prescription at this pharmacy with the patient's card or the QR's access code; it is held here."""
    prescription = prescriptions.open_at_pharmacy(session, verified=verified, content=content)
    return prescriptions.view(session, prescription, today=verified.care_day)


@signed_route(router, "/prescriptions/cancel", action="prescription-cancel", content=PrescriptionCancelContent,
              patient="none")
def cancel_prescription(session: Session, verified: Verified, content: PrescriptionCancelContent) -> dict[str, Any]:
    """Cancel a prescription (its prescriber only)."""
    prescription = prescriptions.cancel(session, verified=verified, content=content)
    return prescriptions.view(session, prescription, today=verified.care_day)


@signed_route(router, "/dispensations", action="dispense", content=DispenseContent, status_code=CREATED,
              patient="optional")
def dispense(session: Session, verified: Verified, content: DispenseContent) -> tuple[dict[str, Any], int]:
    """Dispense against a prescription and send the care sheet; the same client key answers 200 with the same result."""
    result = dispensing.dispense(session, verified=verified, content=content)
    return ({"dispensation": result.dispensation.number if result.dispensation else None,
             "lines": result.dispensation.lines if result.dispensation else [],
             "prescription_state": result.prescription_state, "care_sheet": sheets.answer(result.sheet)},
            CREATED if result.new else status.HTTP_200_OK)


@signed_route(router, "/approvals", action="approval-request", content=ApprovalRequestContent, status_code=CREATED)
def request_approval(session: Session, verified: Verified, content: ApprovalRequestContent) -> dict[str, Any]:
    """Ask the fund for prior approval of a listed act or drug for the patient whose card signed."""
    approval = approvals.request(session, verified=verified, code=content.code, quantity=content.quantity,
                                 justification=content.justification, diagnoses=content.diagnoses)
    return {"number": approval.number, "state": approval.state, "code": approval.code,
            "requested_at": approval.requested_at}
