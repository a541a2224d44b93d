"""HTTP for login, agents, API tokens and the audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials

from labes.security import audit, service
from labes.security.deps import CurrentActor, DbSession, UnitOfWorkRoute, _bearer, permitted
from labes.security.models import Agent, ApiToken, AuditEvent
from labes.security.schemas import (
    AgentCreate, AgentRead, AgentUpdate, ApiTokenCreate, ApiTokenIssued, ApiTokenRead, AuditEventRead,
    AuditVerifyRead, LoginRequest, LoginResponse, Me,
)

router = APIRouter(prefix="/api/v1", tags=["accounts and audit"], route_class=UnitOfWorkRoute)


@router.post("/auth/login", response_model=LoginResponse, openapi_extra={"x-permission": "public"})
def login(body: LoginRequest, session: DbSession, request: Request) -> LoginResponse:
    """Open a session for a fund agent; the token goes in `Authorization: Bearer`."""
    token, agent, expires = service.login(
        session, username=body.username, password=body.password, hours=request.app.state.settings.session_hours
    )
    return LoginResponse(access_token=token, expires_at=expires, roles=agent.roles)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(actor: CurrentActor, session: DbSession,
           credentials: Annotated[HTTPAuthorizationCredentials, Depends(_bearer)]) -> None:
    """End the current session."""
    service.logout(session, actor=actor, token=credentials.credentials)


@router.get("/auth/me", response_model=Me)
def me(actor: CurrentActor) -> Me:
    """Say who the token belongs to and what it may do."""
    return Me(kind=actor.kind, name=actor.name, roles=list(actor.roles), permissions=sorted(actor.permissions))


@router.post("/agents", response_model=AgentRead, status_code=status.HTTP_201_CREATED)
def create_agent(body: AgentCreate, session: DbSession, actor: permitted("accounts:manage")) -> Agent:
    """Create a fund agent with roles."""
    return service.create_agent(session, actor=actor, **body.model_dump())


@router.get("/agents", response_model=list[AgentRead])
def list_agents(session: DbSession, actor: permitted("accounts:manage")) -> list[Agent]:
    """List the fund's agents."""
    return service.list_agents(session)


@router.patch("/agents/{username}", response_model=AgentRead)
def update_agent(username: str, body: AgentUpdate, session: DbSession, actor: permitted("accounts:manage")) -> Agent:
    """Change an agent's roles, name, password or active flag."""
    return service.update_agent(session, actor=actor, username=username, **body.model_dump(exclude_unset=True))


@router.post("/api-tokens", response_model=ApiTokenIssued, status_code=status.HTTP_201_CREATED)
def create_api_token(body: ApiTokenCreate, session: DbSession, actor: permitted("accounts:manage")) -> ApiTokenIssued:
    """Issue a token for another information system; the secret is returned once."""
    secret, api_token = service.create_api_token(session, actor=actor, name=body.name, permissions=body.permissions)
    return ApiTokenIssued(token=secret, **ApiTokenRead.model_validate(api_token).model_dump())


@router.get("/api-tokens", response_model=list[ApiTokenRead])
def list_api_tokens(session: DbSession, actor: permitted("accounts:manage")) -> list[ApiToken]:
    """List API tokens (never their secrets)."""
    return service.list_api_tokens(session)


@router.delete("/api-tokens/{name}", response_model=ApiTokenRead)
def revoke_api_token(name: str, session: DbSession, actor: permitted("accounts:manage")) -> ApiToken:
    """Revoke an API token."""
    return service.revoke_api_token(session, actor=actor, name=name)


@router.get("/audit", response_model=list[AuditEventRead])
def list_audit(
    session: DbSession,
    actor: permitted("audit:read"),
    entity_type: str | None = None,
    entity_id: str | None = None,
    before_id: Annotated[int | None, Query(ge=1, description="Page backwards from this event id")] = None,
    before_seq: Annotated[int | None, Query(ge=1, deprecated=True, description="Same as `before_id`")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditEvent]:
    """Read the audit trail, newest written first, optionally for one entity; unsealed events have no seq yet."""
    return audit.events(session, entity_type=entity_type, entity_id=entity_id, before_id=before_id or before_seq,
                        limit=limit)


@router.get("/audit/verify", response_model=AuditVerifyRead)
def verify_audit(session: DbSession, actor: permitted("audit:read")) -> AuditVerifyRead:
    """Recompute the hash chain and name the first tampered or missing row."""
    result = audit.verify(session)
    return AuditVerifyRead(**result.__dict__)
