"""API shapes of the claims domain."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

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
