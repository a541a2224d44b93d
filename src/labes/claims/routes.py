"""HTTP for the fund's side of claims: the prior-approval queue and decisions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter

from labes.care.transactions import local_day
from labes.claims import approvals, payments
from labes.claims.schemas import ApprovalDecision, ApprovalRead, LatePaymentsRead
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


@router.get("/late-payments", response_model=LatePaymentsRead)
def late_payment_report(session: DbSession, actor: permitted("payments:read"), since: date | None = None,
                        on: date | None = None, provider: str | None = None) -> dict[str, Any]:
    """How late the fund pays each provider: sheets due from `since` (default: 365 days before `on`) to `on` (default
    today in Tunisia) paid after their deadline or still unpaid, those owed the most first; with `provider` (a licence
    or a facility code), that provider alone and its late sheets."""
    seen = payments.late_payments_seen(session, today=on or local_day(datetime.now(UTC)), since=since,
                                       provider=provider)
    return {"today": seen.today, "since": seen.since, "sheets": seen.sheets,
            "payees": [dict(zip(payments.LATE_REPORT_COLUMNS, row)) for row in payments.late_report_rows(seen.payees)]}
