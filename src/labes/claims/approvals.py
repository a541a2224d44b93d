"""Prior approvals (accord préalable): a provider asks with the patient's card, an agent decides, a number is cited.

The claim that follows cites the approval's number; the adjudication accepts it only for the same
patient, the same act or drug, and a date of care inside the approval's validity.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from labes.care.transactions import Verified, local_day, next_number
from labes.claims.models import PriorApproval
from labes.claims.ruleset import ruleset
from labes.errors import InvalidInput, NotFound, RuleViolation
from labes.security import audit
from labes.security.audit import Actor

APPROVAL_STATES = ("requested", "approved", "refused", "used")
DEFAULT_VALID_DAYS = 90


def request(session: Session, *, verified: Verified, code: str, quantity: int, justification: str,
            diagnoses: list[str]) -> PriorApproval:
    """Record a provider's request for prior approval of a listed act or drug."""
    rules = ruleset(verified.care_day)
    item = rules.acts.get(code) or rules.drugs.get(code)
    if item is None:
        raise InvalidInput(f"{code} is neither an act of the nomenclature nor a listed medicine.", field="content.code")
    if not item.prior_approval:
        raise RuleViolation(f"{code} does not need prior approval; bill it directly.", field="content.code")
    approval = PriorApproval(
        number=next_number(session, series="AP", year=verified.care_day.year), patient_person_id=verified.patient.id,
        code=code, quantity=quantity, justification=justification, diagnoses=diagnoses,
        requested_by=verified.professional.id, facility_id=verified.facility.id, requested_at=verified.now,
        state="requested",
    )
    session.add(approval)
    session.flush()
    audit.record(session, actor=verified.actor, action="claims:approval:request", entity_type="prior_approval",
                 entity_id=approval.number, after={"code": code, "quantity": quantity, "state": "requested"})
    return approval


def get_or_raise(session: Session, number: str, *, lock: bool = False) -> PriorApproval:
    query = select(PriorApproval).where(PriorApproval.number == number.strip().upper())
    approval = session.scalar(query.with_for_update() if lock else query)
    if approval is None:
        raise NotFound(f"No prior-approval request {number}.", field="number")
    return approval


def pending(session: Session, *, state: str = "requested", limit: int = 100) -> list[PriorApproval]:
    """Return requests in `state`, oldest first (the reviewers' queue)."""
    if state not in APPROVAL_STATES:
        raise InvalidInput(f"Unknown state {state!r}; states are {', '.join(APPROVAL_STATES)}.", field="state")
    return list(session.scalars(select(PriorApproval).where(PriorApproval.state == state)
                                .order_by(PriorApproval.requested_at).limit(limit)))


def decide(session: Session, *, actor: Actor, number: str, approve: bool, note: str | None, valid_from: date | None,
           valid_days: int, now: datetime) -> PriorApproval:
    """Approve or refuse a request; an approval is valid `valid_days` days from `valid_from` (default: today)."""
    approval = get_or_raise(session, number, lock=True)
    if approval.state != "requested":
        raise RuleViolation(f"Request {approval.number} was already {approval.state} on "
                            f"{approval.decided_at:%Y-%m-%d} by {approval.decided_by}.", field="number")
    if not approve and not note:
        raise InvalidInput("Say why the request is refused: the provider and the patient read it.", field="note")
    approval.state = "approved" if approve else "refused"
    approval.decided_by, approval.decided_at, approval.decision_note = actor.label, now, note
    if approve:
        approval.valid_from = valid_from or local_day(now)
        approval.valid_to = approval.valid_from + timedelta(days=valid_days - 1)
    session.flush()
    audit.record(session, actor=actor, action=f"claims:approval:{'approve' if approve else 'refuse'}",
                 entity_type="prior_approval", entity_id=approval.number, before={"state": "requested"},
                 after={"state": approval.state, "note": note,
                        "valid_from": approval.valid_from.isoformat() if approval.valid_from else None,
                        "valid_to": approval.valid_to.isoformat() if approval.valid_to else None})
    return approval
