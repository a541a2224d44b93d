"""API shapes of the claims domain."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from labes.claims.payments import LateSheet
from labes.schemas import Schema


class ApprovalRead(Schema):
    number: str
    code: str
    quantity: int
    justification: str
    diagnoses: list[str]
    state: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    valid_from: date | None
    valid_to: date | None


class ApprovalDecision(Schema):
    approve: bool
    note: str | None = Field(default=None, max_length=2000, description="Required when refusing: the provider and the patient read it")
    valid_from: date | None = None
    valid_days: int = Field(default=90, ge=1, le=366)


class LatePayeeRead(Schema):
    payee_kind: str
    payee_identifier: str = Field(description="The professional's licence or the facility's code")
    payee_name: str
    sheets_due: int = Field(description="Sheets whose payment deadline fell in the window")
    on_time_percent: float
    paid_late: int
    paid_late_millimes: int
    overdue: int = Field(description="Past their deadline and still unpaid")
    overdue_millimes: int
    average_days_late: float
    most_days_late: int


class LatePaymentsRead(Schema):
    today: date
    since: date
    payees: list[LatePayeeRead]
    sheets: list[LateSheet] = Field(default_factory=list,
                                        description="One provider's late sheets (with ?provider=)")
