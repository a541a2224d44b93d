"""HTTP for the fund's side of claims: the prior-approval queue and decisions."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from labes.claims import approvals
from labes.claims.schemas import ApprovalDecision, ApprovalRead
from labes.security.deps import DbSession, UnitOfWorkRoute, permitted

router = APIRouter(prefix="/api/v1/claims", tags=["claims"], route_class=UnitOfWorkRoute)


@router.get("/approvals", response_model=list[ApprovalRead])
def approval_queue(session: DbSession, actor: permitted("claims:review"), state: str = "requested", limit: int = 100):
    """Prior-approval requests in a state, oldest first."""
    return approvals.pending(session, state=state, limit=min(max(limit, 1), 500))


@router.get("/approvals/{number}", response_model=ApprovalRead)
def read_approval(number: str, session: DbSession, actor: permitted("claims:review")):
    """One prior-approval request."""
    return approvals.get_or_raise(session, number)


@router.post("/approvals/{number}/decision", response_model=ApprovalRead)
def decide_approval(number: str, body: ApprovalDecision, session: DbSession, actor: permitted("claims:review")):
    """Approve (with a validity) or refuse (with a reason) a prior-approval request."""
    return approvals.decide(session, actor=actor, number=number, approve=body.approve, note=body.note,
                            valid_from=body.valid_from, valid_days=body.valid_days, now=datetime.now(UTC))
