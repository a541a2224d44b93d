"""Agents, login sessions and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from labes.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from labes.security import audit
from labes.security.audit import Actor
from labes.security.models import Agent, AgentSession, ApiToken
from labes.security.permissions import PERMISSIONS, ROLES, permissions_of

_hasher = PasswordHasher()
# Verifying against this keeps the time of a login with an unknown username the same as with a known one.
_DUMMY_HASH = _hasher.hash("labes-no-such-agent")
MIN_PASSWORD = 10


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise InvalidInput(f"Unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}.", field="roles")
    return sorted(set(roles))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"A password has at least {MIN_PASSWORD} characters.", field="password")


def get_agent_or_raise(session: Session, *, username: str) -> Agent:
    """Return the agent called `username` or raise NotFound."""
    agent = session.scalar(select(Agent).where(Agent.username == username))
    if agent is None:
        raise NotFound(f"No agent with the username {username!r}.", field="username")
    return agent


def create_agent(session: Session, *, actor: Actor, username: str, full_name: str, password: str,
                 roles: list[str]) -> Agent:
    """Create a fund agent with argon2-hashed password and the given roles."""
    _check_password(password)
    roles = _check_roles(roles)
    if session.scalar(select(Agent.id).where(Agent.username == username)) is not None:
        raise Conflict(f"The username {username!r} is taken.", field="username")
    agent = Agent(username=username, full_name=full_name, password_hash=_hasher.hash(password), roles=roles,
                  active=True, created_at=datetime.now(UTC))
    session.add(agent)
    session.flush()
    audit.record(session, actor=actor, action="security:agent:create", entity_type="agent", entity_id=username,
                 after={"username": username, "full_name": full_name, "roles": roles, "active": True})
    return agent


def update_agent(session: Session, *, actor: Actor, username: str, roles: list[str] | None = None,
                 active: bool | None = None, password: str | None = None, full_name: str | None = None) -> Agent:
    """Change an agent's roles, active flag, name or password; deactivation ends their sessions."""
    agent = get_agent_or_raise(session, username=username)
    before = {"full_name": agent.full_name, "roles": agent.roles, "active": agent.active}
    if roles is not None:
        agent.roles = _check_roles(roles)
    if full_name is not None:
        agent.full_name = full_name
    if active is not None:
        agent.active = active
        if not active:
            session.execute(delete(AgentSession).where(AgentSession.agent_id == agent.id))
    if password is not None:
        _check_password(password)
        agent.password_hash = _hasher.hash(password)
        session.execute(delete(AgentSession).where(AgentSession.agent_id == agent.id))
    after = {"full_name": agent.full_name, "roles": agent.roles, "active": agent.active,
             "password_changed": password is not None}
    audit.record(session, actor=actor, action="security:agent:update", entity_type="agent", entity_id=username,
                 before=before, after=after)
    return agent


def login(session: Session, *, username: str, password: str, hours: int) -> tuple[str, Agent, datetime]:
    """Check the password and open a session; return (bearer token, agent, expiry)."""
    agent = session.scalar(select(Agent).where(Agent.username == username))
    try:
        _hasher.verify(agent.password_hash if agent else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        agent = None
    if agent is None or not agent.active:
        raise NotAuthenticated("Wrong username or password, or the account is disabled.")
    if _hasher.check_needs_rehash(agent.password_hash):
        agent.password_hash = _hasher.hash(password)
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    expires = now + timedelta(hours=hours)
    session.add(AgentSession(token_hash=_token_hash(token), agent_id=agent.id, created_at=now, expires_at=expires))
    session.execute(delete(AgentSession).where(AgentSession.agent_id == agent.id, AgentSession.expires_at < now))
    audit.record(session, actor=Actor("agent", agent.username), action="security:session:open",
                 entity_type="agent", entity_id=agent.username, after={"expires_at": expires.isoformat()})
    return token, agent, expires


def logout(session: Session, *, actor: Actor, token: str) -> None:
    """End the session of `token`."""
    ended = session.execute(delete(AgentSession).where(AgentSession.token_hash == _token_hash(token))).rowcount
    if ended:
        audit.record(session, actor=actor, action="security:session:close", entity_type="agent", entity_id=actor.name)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def actor_for_token(session: Session, *, token: str) -> Actor:
    """Return who holds the bearer `token` (an agent session or an API token), or raise NotAuthenticated."""
    digest = _token_hash(token)
    row = session.execute(
        select(Agent, AgentSession.expires_at).join(AgentSession, AgentSession.agent_id == Agent.id)
        .where(AgentSession.token_hash == digest)
    ).first()
    if row is not None:
        agent, expires_at = row
        if _aware(expires_at) < datetime.now(UTC) or not agent.active:
            raise NotAuthenticated("Your session has expired; log in again.")
        return Actor("agent", agent.username, tuple(agent.roles), permissions_of(agent.roles), agent.id)
    api_token = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if api_token is None:
        raise NotAuthenticated("Unknown or expired token; log in again.")
    if api_token.revoked_at is not None:
        raise NotAuthenticated(f"The API token {api_token.name!r} was revoked.")
    return Actor("token", api_token.name, (), frozenset(api_token.permissions))


def list_agents(session: Session) -> list[Agent]:
    """Return the fund's agents by username."""
    return list(session.scalars(select(Agent).order_by(Agent.username)))


def list_api_tokens(session: Session) -> list[ApiToken]:
    """Return the API tokens by name (never their secrets: only hashes are stored)."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))


def create_api_token(session: Session, *, actor: Actor, name: str, permissions: list[str]) -> tuple[str, ApiToken]:
    """Issue a token for another system; the secret is shown once and stored only as a hash."""
    unknown = sorted(set(permissions) - set(PERMISSIONS))
    if unknown:
        raise InvalidInput(f"Unknown permission(s) {', '.join(unknown)}.", field="permissions")
    if "accounts:manage" in permissions:
        raise InvalidInput("An API token may not manage accounts; use an agent account.", field="permissions")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise Conflict(f"An API token named {name!r} exists; revoke it or choose another name.", field="name")
    secret = "lbs_" + secrets.token_urlsafe(32)
    api_token = ApiToken(name=name, token_hash=_token_hash(secret), permissions=sorted(set(permissions)),
                         created_at=datetime.now(UTC), created_by=actor.label)
    session.add(api_token)
    session.flush()
    audit.record(session, actor=actor, action="security:token:create", entity_type="api_token", entity_id=name,
                 after={"name": name, "permissions": api_token.permissions})
    return secret, api_token


def revoke_api_token(session: Session, *, actor: Actor, name: str) -> ApiToken:
    """Revoke the API token called `name`."""
    api_token = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if api_token is None:
        raise NotFound(f"No API token named {name!r}.", field="name")
    if api_token.revoked_at is None:
        api_token.revoked_at = datetime.now(UTC)
        audit.record(session, actor=actor, action="security:token:revoke", entity_type="api_token", entity_id=name,
                     before={"revoked": False}, after={"revoked": True})
    return api_token
