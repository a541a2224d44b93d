"""Every endpoint is guarded by one permission, every permission is refused to the roles without it,
and only valid, live credentials get through."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from fastapi.routing import iter_route_contexts
from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from labes.app import create_app
from labes.care import deps
from labes.care.deps import CardSigned
from labes.config import Settings
from labes.errors import InvalidInput
from labes.security import service as security_service
from labes.security.deps import RequirePermission, get_actor
from labes.security.models import Agent, AgentSession, ApiToken
from labes.security.permissions import PERMISSIONS, ROLES
from labes.security.service import create_agent, create_api_token, login, revoke_api_token
from tests import factories

# The printed 2D code is on the card for anyone to check, so its check is open too; a challenge is a random
# number the fund can recognise, and carries no data.
PUBLIC = {"POST /api/v1/auth/login", "GET /healthz", "GET /readyz", "POST /api/v1/cards/verify-code",
          "POST /api/v1/care/challenges", "GET /fhir/metadata",
          # the FHIR facade's catch-all answers an unknown resource type with a 404 OperationOutcome
          *(f"{method} /fhir/{{rest:path}}" for method in ("GET", "POST", "PUT", "PATCH", "DELETE"))}
# At the point of care the cards are the credentials: the professional's card signs every transaction.
CARD_SIGNED = {"POST /api/v1/care/rights-checks", "POST /api/v1/care/care-sheets",
               "POST /api/v1/care/care-sheets/{number}/corrections", "POST /api/v1/care/care-sheets/status",
               "POST /api/v1/care/prescriptions", "POST /api/v1/care/prescriptions/open",
               "POST /api/v1/care/prescriptions/cancel", "POST /api/v1/care/dispensations", "POST /api/v1/care/approvals",
               "POST /api/v1/care/insured/care-sheets"}
# Any authenticated caller may ask who they are and log out; no permission is needed for that.
AUTHENTICATED_ONLY = {"POST /api/v1/auth/logout", "GET /api/v1/auth/me"}
FRAMEWORK_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
PATH_VALUES = {"person_id": str(uuid.uuid4()), "dependant_id": str(uuid.uuid4()), "key": "12345678",
               "social_id": "12345678901", "number": "AMEN0000", "code": "NOPE", "licence": "NOPE",
               "username": "nobody", "name": "nobody", "serial": "100000000017",
               "coverage_id": str(uuid.uuid4()), "line_id": "RX-2020-00000001-1"}


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Production argon2 costs ~0.2 s a hash, and these tests log in one agent each."""
    monkeypatch.setattr(security_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _dependencies(dependant):
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)


def guards(route) -> list[str]:
    """Return the permissions the route's dependency tree requires."""
    return [d.call.permission for d in _dependencies(route.dependant) if isinstance(d.call, RequirePermission)]


def authenticated(route) -> bool:
    return any(d.call is get_actor for d in _dependencies(route.dependant))


def card_signed(route) -> bool:
    """A point-of-care route (care.deps.signed_route) or a FHIR one taking the signed envelope as a dependency."""
    return (getattr(route.endpoint, "card_signed", None) is not None
            or any(isinstance(d.call, CardSigned) for d in _dependencies(route.dependant)))


def endpoints(app) -> dict[str, object]:
    """Return the app's API routes keyed "METHOD /path" (the routes of included routers too)."""
    found = {}
    for route in iter_route_contexts(app.routes):
        if getattr(route, "dependant", None) is None:
            continue
        for method in route.methods:
            found[f"{method} {route.path}"] = route
    return found


def _guarded_routes() -> list[tuple[str, str, str, bool]]:
    # Parametrization happens at collection, before any fixture exists: build the app once on an unbound factory.
    app = create_app(Settings(database_url="sqlite://", environment="test", log_level="WARNING"), sessionmaker())
    rows = []
    for key, route in sorted(endpoints(app).items()):
        permissions = guards(route)
        if len(permissions) == 1:
            method, path = key.split(" ", 1)
            rows.append((method, path, permissions[0], bool(route.dependant.body_params)))
    return rows


GUARDED = _guarded_routes()
REFUSALS = [
    pytest.param(method, path, permission, has_body, role, id=f"{role}-{method} {path}")
    for method, path, permission, has_body in GUARDED
    for role in ROLES
    if permission not in ROLES[role]
]


def fill(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m[1]], path)


class TestEveryRouteIsGuarded:
    def test_every_api_route_but_login_needs_exactly_one_permission(self, app_for, factory):
        routes = endpoints(app_for(factory))
        api = {key: route for key, route in routes.items() if " /api/v1/" in key and key not in PUBLIC}

        assert len(api) > 30
        assert {key for key, route in api.items() if card_signed(route)} == CARD_SIGNED
        assert {key for key, route in api.items() if len(guards(route)) != 1} == AUTHENTICATED_ONLY | CARD_SIGNED
        for key in AUTHENTICATED_ONLY:
            assert guards(api[key]) == [] and authenticated(api[key]), key

    def test_only_login_and_health_checks_are_open(self, app_for, factory):
        app = app_for(factory)
        routes = endpoints(app)

        assert {key for key, route in routes.items() if not authenticated(route) and not card_signed(route)} == PUBLIC
        # Whatever is not an API route is FastAPI's own documentation, which carries no data, or the plain route
        # that dispatches a card-signed one (care.deps.dispatched_first): the same endpoint, so the same checks.
        plain = [r for r in iter_route_contexts(app.routes) if getattr(r, "dependant", None) is None]
        dispatching = {r.path: r.endpoint.args[0] for r in plain if getattr(r.endpoint, "func", None) is deps._direct}
        assert {r.path for r in plain} - set(dispatching) == FRAMEWORK_ROUTES
        assert dispatching == {key.split(" ", 1)[1]: route.endpoint for key, route in routes.items()
                               if key.startswith("POST ") and getattr(route.endpoint, "card_signed", None)}

    def test_the_matrix_covers_every_role(self):
        assert {param.values[4] for param in REFUSALS} == set(ROLES)
        assert {permission for _, _, permission, _ in GUARDED} <= set(PERMISSIONS)


class TestRoles:
    """The refusal matrix follows ROLES; these pin the separations ROLES must keep."""

    def test_who_writes_the_registry_never_manages_accounts(self):
        writers = {role for role, granted in ROLES.items()
                   if granted & {"registry:write", "registry:import", "providers:write"}}
        managers = {role for role, granted in ROLES.items() if granted & {"accounts:manage", "audit:read"}}

        assert writers == {"registry_clerk"}
        assert managers == {"admin"}

    def test_finance_sees_providers_not_families(self):
        assert "providers:read" in ROLES["finance"]
        assert "registry:read" not in ROLES["finance"]


class TestRefusals:
    @pytest.mark.parametrize(("method", "path", "permission", "has_body", "role"), REFUSALS)
    def test_role_without_the_permission_is_refused(self, client, session, method, path, permission, has_body, role):
        token = factories.agent_token(session, role)
        session.commit()

        response = client.request(method, fill(path), json={} if has_body else None, headers=bearer(token))

        assert response.status_code == 403, response.text
        if path.startswith("/fhir/"):  # the FHIR facade answers an OperationOutcome
            assert response.headers["content-type"].startswith("application/fhir+json")
            issue = response.json()["issue"][0]
            assert issue["code"] == "forbidden" and permission in issue["diagnostics"]
            return
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].endswith("/not-permitted")
        assert permission in response.json()["detail"]

    @pytest.mark.parametrize(("role", "method", "path", "expected"), [
        ("reviewer", "GET", "/api/v1/persons?q=ben", 200),
        ("admin", "GET", "/api/v1/families/12345678", 404),
        ("finance", "GET", "/api/v1/facilities", 200),
        ("finance", "GET", "/api/v1/professionals/NOPE", 404),
        ("admin", "GET", "/api/v1/audit", 200),
        ("admin", "GET", "/api/v1/agents", 200),
        ("registry_clerk", "POST", "/api/v1/members", 422),
        ("registry_clerk", "PUT", "/api/v1/professionals/NOPE/facilities/NOPE", 404),
    ])
    def test_role_with_the_permission_gets_through(self, client, session, role, method, path, expected):
        token = factories.agent_token(session, role)
        session.commit()

        response = client.request(method, path, json={} if method == "POST" else None, headers=bearer(token))

        assert response.status_code == expected, response.text


def unique(prefix: str) -> str:
    """Return a name no other test uses (kept distinct even if another test's data is still there)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _agent(session, role: str = "registry_clerk") -> tuple[Agent, str]:
    username = unique("salma")
    agent = create_agent(session, actor=factories.ACTOR, username=username, full_name="Salma K.",
                         password="correct horse battery", roles=[role])
    token, _, _ = login(session, username=username, password="correct horse battery", hours=1)
    session.commit()
    return agent, token


class TestAuthentication:
    def test_no_token_is_401_with_a_challenge(self, client):
        response = client.get("/api/v1/persons", params={"q": "ben"})

        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["type"].endswith("/not-authenticated")

    @pytest.mark.parametrize("header", ["Bearer not-a-token", "Bearer ", "Basic c2FsbWE6cGFzcw=="])
    def test_garbage_credentials_are_401(self, client, header):
        response = client.get("/api/v1/auth/me", headers={"Authorization": header})

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"

    def test_expired_session_is_401(self, client, session):
        _, token = _agent(session)
        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
        session.execute(update(AgentSession).where(AgentSession.token_hash == hashlib.sha256(token.encode()).hexdigest())
                        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()

        response = client.get("/api/v1/auth/me", headers=bearer(token))

        assert response.status_code == 401
        assert "expired" in response.json()["detail"]

    def test_deactivated_agents_live_session_is_401(self, client, session):
        agent, token = _agent(session)
        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
        agent.active = False  # the flag alone, session row kept: the check must not rely on sessions being deleted
        session.commit()

        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401

    def test_deactivation_by_an_admin_ends_the_agents_sessions(self, client, session):
        agent, token = _agent(session)
        admin = factories.agent_token(session, "admin")
        session.commit()

        changed = client.patch(f"/api/v1/agents/{agent.username}", json={"active": False}, headers=bearer(admin))

        assert changed.status_code == 200, changed.text
        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
        assert session.scalar(select(AgentSession).where(AgentSession.agent_id == agent.id)) is None
        refused = client.post("/api/v1/auth/login", json={"username": agent.username, "password": "correct horse battery"})
        assert refused.status_code == 401


class TestApiTokens:
    def test_read_only_token_reads_a_family_but_cannot_enrol(self, client, session):
        name = unique("cnss-feed")
        secret, _ = create_api_token(session, actor=factories.ACTOR, name=name, permissions=["registry:read"])
        member = factories.member(session)
        session.commit()

        family = client.get(f"/api/v1/families/{member.social_id}", headers=bearer(secret))
        enrol = client.post("/api/v1/members", json={}, headers=bearer(secret))

        assert family.status_code == 200, family.text
        assert family.json()["social_id"] == member.social_id
        assert enrol.status_code == 403
        assert enrol.json()["type"].endswith("/not-permitted")
        assert client.get("/api/v1/auth/me", headers=bearer(secret)).json() == {
            "kind": "token", "name": name, "roles": [], "permissions": ["registry:read"]}

    def test_revoked_token_is_401(self, client, session):
        name = unique("cnss-feed")
        secret, _ = create_api_token(session, actor=factories.ACTOR, name=name, permissions=["registry:read"])
        session.commit()
        assert client.get("/api/v1/persons", params={"q": "ben"}, headers=bearer(secret)).status_code == 200
        revoke_api_token(session, actor=factories.ACTOR, name=name)
        session.commit()

        response = client.get("/api/v1/persons", params={"q": "ben"}, headers=bearer(secret))

        assert response.status_code == 401
        assert "revoked" in response.json()["detail"]

    def test_token_may_not_manage_accounts(self, session):
        name = unique("takeover")
        with pytest.raises(InvalidInput) as refused:
            create_api_token(session, actor=factories.ACTOR, name=name, permissions=["registry:read", "accounts:manage"])

        assert refused.value.field == "permissions"
        assert session.scalar(select(ApiToken).where(ApiToken.name == name)) is None

    def test_token_may_not_manage_accounts_through_the_api(self, client, session):
        admin = factories.agent_token(session, "admin")
        session.commit()
        name = unique("takeover")

        response = client.post("/api/v1/api-tokens", json={"name": name, "permissions": ["accounts:manage"]},
                               headers=bearer(admin))

        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "permissions"
        assert name not in {t["name"] for t in client.get("/api/v1/api-tokens", headers=bearer(admin)).json()}

    def test_unknown_permission_is_refused(self, session):
        with pytest.raises(InvalidInput, match="registry:delete"):
            create_api_token(session, actor=factories.ACTOR, name=unique("feed"), permissions=["registry:delete"])


def test_a_card_signed_route_with_dependencies_is_not_dispatched_past_them():
    # care.deps.dispatched_first calls the endpoint itself: a dependency added to the router would be skipped.
    from fastapi import APIRouter, Depends

    from labes.care.routes import rights_check
    from labes.care.schemas import RightsCheckContent
    from labes.security.deps import UnitOfWorkRoute

    guarded = APIRouter(prefix="/api/v1/care", route_class=UnitOfWorkRoute, dependencies=[Depends(get_actor)])
    deps.signed_route(guarded, "/rights-checks", action="rights-check", content=RightsCheckContent,
                      reading=True)(rights_check)
    with pytest.raises(ValueError, match="has dependencies"):
        deps.dispatched_first(guarded)
