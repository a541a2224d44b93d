"""Agents' accounts: login, password storage, creation and role changes by an admin, logout."""

from __future__ import annotations

import uuid

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from labes.errors import Conflict, InvalidInput
from labes.security import service as security_service
from labes.security.models import Agent, AgentSession
from labes.security.permissions import ROLES
from labes.security.service import MIN_PASSWORD, create_agent
from tests import factories

PASSWORD = "correct horse battery"


@pytest.fixture
def fast_hashing(monkeypatch):
    """Production argon2 costs ~0.2 s a hash; tests that are not about storage use a cheap one."""
    monkeypatch.setattr(security_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def username() -> str:
    return f"agent.{uuid.uuid4().hex[:8]}"


def agent(session, *roles: str, active: bool = True) -> Agent:
    created = create_agent(session, actor=factories.ACTOR, username=username(), full_name="Amel Jaziri",
                           password=PASSWORD, roles=list(roles) or ["reviewer"])
    created.active = active
    session.commit()
    return created


@pytest.fixture
def admin(session) -> dict[str, str]:
    token = factories.agent_token(session, "admin")
    session.commit()
    return bearer(token)


@pytest.mark.usefixtures("fast_hashing")
class TestLogin:
    def test_right_password_opens_a_session(self, client, session):
        amel = agent(session, "reviewer")

        response = client.post("/api/v1/auth/login", json={"username": amel.username, "password": PASSWORD})

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["roles"] == ["reviewer"]
        assert client.get("/api/v1/auth/me", headers=bearer(body["access_token"])).json()["name"] == amel.username

    def test_wrong_password_and_unknown_user_get_the_same_answer(self, client, session):
        amel = agent(session)

        wrong = client.post("/api/v1/auth/login", json={"username": amel.username, "password": PASSWORD + "!"})
        unknown = client.post("/api/v1/auth/login", json={"username": "nobody.here", "password": PASSWORD})

        assert wrong.status_code == unknown.status_code == 401
        assert wrong.headers["content-type"].startswith("application/problem+json")
        assert wrong.json()["detail"] == unknown.json()["detail"]
        assert "password" in wrong.json()["detail"]

    def test_disabled_account_cannot_log_in(self, client, session):
        amel = agent(session, active=False)

        response = client.post("/api/v1/auth/login", json={"username": amel.username, "password": PASSWORD})

        assert response.status_code == 401
        assert session.scalar(select(AgentSession).where(AgentSession.agent_id == amel.id)) is None


class TestPasswordStorage:
    """With the production hasher: this is what is written in the database."""

    def test_stored_as_argon2id_never_in_clear(self, session):
        amel = agent(session)

        stored = session.scalar(select(Agent.password_hash).where(Agent.id == amel.id))

        assert stored.startswith("$argon2id$")
        assert PASSWORD not in stored
        assert PasswordHasher().verify(stored, PASSWORD)

    def test_agent_created_through_the_api_is_hashed_too(self, client, session, admin):
        name = username()

        response = client.post("/api/v1/agents", json={"username": name, "full_name": "Amel Jaziri", "password": PASSWORD,
                                                       "roles": ["reviewer"]}, headers=admin)

        assert response.status_code == 201, response.text
        assert "password" not in response.text
        stored = session.scalar(select(Agent.password_hash).where(Agent.username == name))
        assert stored.startswith("$argon2id$") and PASSWORD not in stored


@pytest.mark.usefixtures("fast_hashing")
class TestPasswordRules:
    def test_password_one_character_short_is_refused(self, client, admin):
        name = username()

        response = client.post("/api/v1/agents", json={"username": name, "full_name": "Amel Jaziri",
                                                       "password": "x" * (MIN_PASSWORD - 1), "roles": ["reviewer"]},
                               headers=admin)

        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["errors"][0]["field"] == "password"
        assert name not in {a["username"] for a in client.get("/api/v1/agents", headers=admin).json()}

    def test_password_of_the_minimum_length_is_accepted(self, session):
        created = create_agent(session, actor=factories.ACTOR, username=username(), full_name="Amel Jaziri",
                               password="x" * MIN_PASSWORD, roles=["reviewer"])

        assert created.id is not None

    def test_password_change_ends_the_sessions(self, client, session, admin):
        amel = agent(session)
        token = client.post("/api/v1/auth/login", json={"username": amel.username, "password": PASSWORD}).json()["access_token"]

        changed = client.patch(f"/api/v1/agents/{amel.username}", json={"password": "another long secret"}, headers=admin)

        assert changed.status_code == 200, changed.text
        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
        assert client.post("/api/v1/auth/login", json={"username": amel.username, "password": PASSWORD}).status_code == 401
        assert client.post("/api/v1/auth/login", json={"username": amel.username,
                                                       "password": "another long secret"}).status_code == 200


@pytest.mark.usefixtures("fast_hashing")
class TestAgentsApi:
    def test_admin_creates_an_agent_who_can_log_in(self, client, admin):
        name = username()

        created = client.post("/api/v1/agents", json={"username": name, "full_name": "Amel Jaziri", "password": PASSWORD,
                                                      "roles": ["reviewer", "finance"]}, headers=admin)
        login = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})

        assert created.status_code == 201, created.text
        assert created.json() | {"created_at": None} == {"username": name, "full_name": "Amel Jaziri",
                                                        "roles": ["finance", "reviewer"], "active": True, "created_at": None}
        assert login.status_code == 200
        assert name in {a["username"] for a in client.get("/api/v1/agents", headers=admin).json()}

    def test_duplicate_username_is_a_conflict(self, client, session, admin):
        amel = agent(session)

        response = client.post("/api/v1/agents", json={"username": amel.username, "full_name": "Someone Else",
                                                       "password": PASSWORD, "roles": ["reviewer"]}, headers=admin)

        assert response.status_code == 409
        assert response.json()["type"].endswith("/conflict")
        assert response.json()["errors"][0]["field"] == "username"

    def test_unknown_role_is_refused(self, client, session, admin):
        name = username()

        response = client.post("/api/v1/agents", json={"username": name, "full_name": "Amel Jaziri", "password": PASSWORD,
                                                       "roles": ["reviewer", "superuser"]}, headers=admin)

        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "roles"
        assert "superuser" in response.json()["detail"]
        assert session.scalar(select(Agent).where(Agent.username == name)) is None

    def test_unknown_role_is_refused_on_update(self, client, session, admin):
        amel = agent(session, "reviewer")

        response = client.patch(f"/api/v1/agents/{amel.username}", json={"roles": ["root"]}, headers=admin)

        assert response.status_code == 400
        session.refresh(amel)
        assert amel.roles == ["reviewer"]

    def test_role_change_applies_to_the_next_request(self, client, session, admin):
        amel = agent(session, "reviewer")
        token = client.post("/api/v1/auth/login", json={"username": amel.username, "password": PASSWORD}).json()["access_token"]
        assert client.post("/api/v1/members", json={}, headers=bearer(token)).status_code == 403

        changed = client.patch(f"/api/v1/agents/{amel.username}", json={"roles": ["registry_clerk"]}, headers=admin)

        assert changed.status_code == 200, changed.text
        assert changed.json()["roles"] == ["registry_clerk"]
        # The same session now holds the clerk's permissions: the empty body is refused as malformed, not forbidden.
        assert client.post("/api/v1/members", json={}, headers=bearer(token)).status_code == 422
        assert client.get("/api/v1/auth/me", headers=bearer(token)).json()["roles"] == ["registry_clerk"]

    def test_unknown_agent_is_404(self, client, admin):
        response = client.patch("/api/v1/agents/nobody.here", json={"roles": ["reviewer"]}, headers=admin)

        assert response.status_code == 404

    def test_service_refuses_duplicates_and_unknown_roles(self, session):
        amel = agent(session)

        with pytest.raises(Conflict):
            create_agent(session, actor=factories.ACTOR, username=amel.username, full_name="x", password=PASSWORD,
                         roles=["reviewer"])
        with pytest.raises(InvalidInput) as unknown:
            create_agent(session, actor=factories.ACTOR, username=username(), full_name="x", password=PASSWORD,
                         roles=["auditor"])
        assert unknown.value.field == "roles"


@pytest.mark.usefixtures("fast_hashing")
class TestSession:
    def test_logout_makes_the_token_unusable(self, client, session):
        amel = agent(session)
        token = client.post("/api/v1/auth/login", json={"username": amel.username, "password": PASSWORD}).json()["access_token"]
        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200

        response = client.post("/api/v1/auth/logout", headers=bearer(token))

        assert response.status_code == 204
        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401

    def test_logout_ends_only_that_session(self, client, session):
        amel = agent(session)
        first, second = (client.post("/api/v1/auth/login", json={"username": amel.username, "password": PASSWORD})
                         .json()["access_token"] for _ in range(2))

        client.post("/api/v1/auth/logout", headers=bearer(first))

        assert client.get("/api/v1/auth/me", headers=bearer(second)).status_code == 200

    @pytest.mark.parametrize("role", sorted(ROLES))
    def test_me_lists_the_roles_permissions(self, client, session, role):
        token = factories.agent_token(session, role)
        session.commit()

        response = client.get("/api/v1/auth/me", headers=bearer(token))

        assert response.status_code == 200
        assert response.json()["kind"] == "agent"
        assert response.json()["roles"] == [role]
        assert response.json()["permissions"] == sorted(ROLES[role])

    def test_me_merges_the_permissions_of_several_roles(self, client, session):
        token = factories.agent_token(session, "reviewer", "finance")
        session.commit()

        response = client.get("/api/v1/auth/me", headers=bearer(token))

        assert response.json()["permissions"] == sorted(ROLES["reviewer"] | ROLES["finance"])
