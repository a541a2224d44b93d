"""API shapes for accounts, tokens and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from labes.schemas import Schema


class LoginRequest(Schema):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class LoginResponse(Schema):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    roles: list[str]


class Me(Schema):
    kind: str
    name: str
    roles: list[str]
    permissions: list[str]


class AgentCreate(Schema):
    username: str = Field(min_length=3, max_length=64, pattern=r"^[a-z0-9._-]+$")
    full_name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=200)
    roles: list[str]


class AgentUpdate(Schema):
    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    password: str | None = Field(default=None, max_length=200)
    roles: list[str] | None = None
    active: bool | None = None


class AgentRead(Schema):
    username: str
    full_name: str
    roles: list[str]
    active: bool
    created_at: datetime


class ApiTokenCreate(Schema):
    name: str = Field(min_length=3, max_length=120)
    permissions: list[str]


class ApiTokenRead(Schema):
    name: str
    permissions: list[str]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class ApiTokenIssued(ApiTokenRead):
    token: str = Field(description="Shown once; store it in the calling system's secret store.")


class AuditEventRead(Schema):
    id: int = Field(description="The order events were written; page with `before_id`")
    seq: int | None = Field(description="Position in the hash chain; null until the event is sealed")
    at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    hash: str | None = Field(description="Null until the event is sealed")


class AuditVerifyRead(Schema):
    ok: bool
    checked: int
    head_hash: str
    first_bad_seq: int | None
    problem: str | None
    pending: int = Field(description="Events written but not sealed yet (not covered by this check)")
