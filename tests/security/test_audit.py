"""The audit trail: every write leaves an event, chained once sealed; a refused write leaves none; tampering is named.

How events are sealed (after commit, by one sealer at a time) is tested in test_audit_sealing.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from argon2 import PasswordHasher
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import JSON, bindparam, func, select, text

from labes.cards.crypto import load_authority
from labes.cards.models import Batch, PickupPoint
from labes.cards.service import issue_card, move, resolve_holder
from labes.cli import app as cli
from labes.registry.models import Person
from labes.security import service as security_service
from labes.security.audit import GENESIS, event_hash, seal_all, verify
from labes.security.models import AuditEvent
from labes.security.service import create_agent, create_api_token, login
from tests import factories

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Production argon2 costs ~0.2 s a hash; what is tested here is the trail, not the hashing."""
    monkeypatch.setattr(security_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def events_of(session, request_id: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.id)))


def seal_in(session) -> int:
    """Seal what the test wrote, in its own transaction, and forget the rows loaded before."""
    sealed = seal_all(session)
    session.expire_all()
    return sealed


def audit_count(session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent))


# ---------------------------------------------------------------- every write is audited


@dataclass
class World:
    """A family, providers and accounts to write to, with who acts."""

    clerk: dict[str, str]
    clerk_label: str
    admin: dict[str, str]
    admin_label: str
    social_id: str
    person_id: str
    cin: str
    dependant_id: str
    facility: str
    doctor: str
    agent: str
    api_token: str
    card: str
    desk: dict[str, str]
    desk_label: str
    point: str
    waiting_card: str
    batch: str
    cardless_cin: str
    gateway: dict[str, str]
    gateway_label: str


@pytest.fixture
def world(session, keys_dir) -> World:
    clerk_name, admin_name, agent_name = unique("clerk."), unique("admin."), unique("amel.")
    for name, role in ((clerk_name, "registry_clerk"), (admin_name, "admin"), (agent_name, "reviewer")):
        create_agent(session, actor=factories.ACTOR, username=name, full_name=name, password=PASSWORD, roles=[role])
    clerk, _, _ = login(session, username=clerk_name, password=PASSWORD, hours=1)
    admin, _, _ = login(session, username=admin_name, password=PASSWORD, hours=1)
    token_name = unique("feed-")
    create_api_token(session, actor=factories.ACTOR, name=token_name, permissions=["registry:read"])
    gateway_name = unique("operator-")
    gateway, _ = create_api_token(session, actor=factories.ACTOR, name=gateway_name, permissions=["sms:gateway"])
    member = factories.member(session)
    child = factories.dependant(session, member.social_id)
    facility = factories.facility(session)
    doctor = factories.professional(session)
    spouse = factories.dependant(session, member.social_id, relationship="spouse",
                                 person={"cin": factories.cin(), "birth_date": date(1985, 1, 1)})
    authority = load_authority(keys_dir)
    card = issue_card(session, actor=factories.ACTOR, authority=authority,
                      holder=resolve_holder(session, card_type="labes", person_id=spouse.person_id)).card
    # At a post office: the member's card waits there; the child's is in a shipment on its way.
    point = PickupPoint(code=unique("P")[:16].upper(), kind="post_office", name_ar="مكتب بريد", name_fr="Bureau de poste",
                        governorate="SFX")
    session.add(point)
    session.flush()
    waiting = issue_card(session, actor=factories.ACTOR, authority=authority,
                         holder=resolve_holder(session, card_type="labes", person_id=member.person_id)).card
    for event in ("batch", "ship", "receive"):
        move(session, actor=factories.ACTOR, card=waiting, event=event, point=point)
    travelling = issue_card(session, actor=factories.ACTOR, authority=authority,
                            holder=resolve_holder(session, card_type="labes", person_id=child.person_id)).card
    batch = Batch(number=unique("B-")[:24].upper(), point_id=point.id, state="shipped", created_at=datetime.now(UTC),
                  shipped_at=datetime.now(UTC), cards=1)
    session.add(batch)
    session.flush()
    travelling.batch_id = batch.id
    for event in ("batch", "ship"):
        move(session, actor=factories.ACTOR, card=travelling, event=event, point=point)
    cardless = factories.member(session)
    desk_name = unique("desk.")
    create_agent(session, actor=factories.ACTOR, username=desk_name, full_name=desk_name, password=PASSWORD,
                 roles=["post_office_clerk"])
    desk, _, _ = login(session, username=desk_name, password=PASSWORD, hours=1)
    session.commit()
    return World(bearer(clerk), f"agent:{clerk_name}", bearer(admin), f"agent:{admin_name}", member.social_id,
                 str(member.person_id), session.get(Person, member.person_id).cin, str(child.id),
                 facility.code, doctor.licence, agent_name, token_name, card.serial, bearer(desk), f"agent:{desk_name}", point.code,
                 waiting.serial, batch.number, session.get(Person, cardless.person_id).cin,
                 bearer(gateway), f"token:{gateway_name}")


Call = Callable[[World], tuple[str, dict | None]]
# route → (what to send, which account sends it, the tag expected). Every write route must be listed here.
WRITES: dict[str, tuple[Call, str, str]] = {
    "POST /api/v1/members": (lambda w: ("/api/v1/members", {
        "person": {"cin": factories.cin(), "first_name_ar": "هند", "last_name_ar": "الجزيري", "first_name_lat": "Hind",
                   "last_name_lat": "Jaziri", "birth_date": "1990-02-03", "sex": "F", "governorate": "TUN"},
        "social_id": factories.social_id(), "regime": "CNRPS", "affiliation_start": "2015-01-01",
        "care_scheme": "public", "scheme_since": "2015-01-01"}), "clerk", "registry:member:create"),
    "PATCH /api/v1/members/{social_id}": (lambda w: (f"/api/v1/members/{w.social_id}", {"employer": "Tunisair"}),
                                          "clerk", "registry:member:update"),
    "POST /api/v1/members/{social_id}/care-scheme": (lambda w: (f"/api/v1/members/{w.social_id}/care-scheme", {
        "scheme": "reimbursement", "start_date": "2024-01-01"}), "clerk", "registry:coverage:change"),
    "POST /api/v1/members/{social_id}/dependants": (lambda w: (f"/api/v1/members/{w.social_id}/dependants", {
        "person": {"first_name_ar": "يوسف", "last_name_ar": "بن صالح", "first_name_lat": "Youssef",
                   "last_name_lat": "Ben Salah", "birth_date": "2018-06-01", "sex": "M", "governorate": "SFX"},
        "relationship": "child"}), "clerk", "registry:dependant:create"),
    "PATCH /api/v1/members/{social_id}/dependants/{dependant_id}": (lambda w: (
        f"/api/v1/members/{w.social_id}/dependants/{w.dependant_id}", {"end_date": "2030-01-01"}),
        "clerk", "registry:dependant:update"),
    "PATCH /api/v1/persons/{person_id}": (lambda w: (f"/api/v1/persons/{w.person_id}", {"phone": "+21622333444"}),
                                          "clerk", "registry:person:update"),
    "POST /api/v1/persons/{person_id}/chronic-conditions": (lambda w: (
        f"/api/v1/persons/{w.person_id}/chronic-conditions", {"code": "01", "icd10": "E11", "valid_from": "2023-01-01"}),
        "clerk", "registry:chronic:create"),
    "POST /api/v1/amen-households": (lambda w: ("/api/v1/amen-households", {
        "number": unique("A")[:12], "level": "free", "valid_from": "2024-01-01", "governorate": "SFX",
        "member_cins": [w.cin]}), "clerk", "registry:amen:create"),
    "POST /api/v1/facilities": (lambda w: ("/api/v1/facilities", {
        "code": unique("F"), "kind": "pharmacy", "name_ar": "صيدلية", "name_lat": "Pharmacie du Centre",
        "governorate": "TUN", "sector": "private"}), "clerk", "registry:facility:create"),
    "PATCH /api/v1/facilities/{code}": (lambda w: (f"/api/v1/facilities/{w.facility}", {"address": "Route de Tunis"}),
                                        "clerk", "registry:facility:update"),
    "POST /api/v1/professionals": (lambda w: ("/api/v1/professionals", {
        "licence": unique("P"), "kind": "dentist", "name_ar": "د. ليلى", "name_lat": "Dr Leila Mansour",
        "governorate": "TUN", "sector": "private"}), "clerk", "registry:professional:create"),
    "PATCH /api/v1/professionals/{licence}": (lambda w: (f"/api/v1/professionals/{w.doctor}", {"tax_regime": "flat"}),
                                              "clerk", "registry:professional:update"),
    "PUT /api/v1/professionals/{licence}/facilities/{code}": (lambda w: (
        f"/api/v1/professionals/{w.doctor}/facilities/{w.facility}", None), "clerk", "registry:practice:create"),
    "POST /api/v1/agents": (lambda w: ("/api/v1/agents", {"username": unique("new."), "full_name": "Nadia",
                                                          "password": PASSWORD, "roles": ["finance"]}),
                            "admin", "security:agent:create"),
    "PATCH /api/v1/agents/{username}": (lambda w: (f"/api/v1/agents/{w.agent}", {"roles": ["finance"]}),
                                        "admin", "security:agent:update"),
    "POST /api/v1/api-tokens": (lambda w: ("/api/v1/api-tokens", {"name": unique("cnrps-"), "permissions": ["registry:read"]}),
                                "admin", "security:token:create"),
    "DELETE /api/v1/api-tokens/{name}": (lambda w: (f"/api/v1/api-tokens/{w.api_token}", None),
                                         "admin", "security:token:revoke"),
    "POST /api/v1/auth/login": (lambda w: ("/api/v1/auth/login", {"username": w.agent, "password": PASSWORD}),
                                "nobody", "security:session:open"),
    "POST /api/v1/auth/logout": (lambda w: ("/api/v1/auth/logout", None), "clerk", "security:session:close"),
    "POST /api/v1/cards": (lambda w: ("/api/v1/cards", {"card_type": "labes", "cin": w.cardless_cin}), "clerk",
                           "card:status:issue"),
    "POST /api/v1/cards/{serial}/block": (lambda w: (f"/api/v1/cards/{w.card}/block", {"reason": "lost"}), "clerk",
                                          "card:status:block"),
    "POST /api/v1/cards/{serial}/replace": (lambda w: (f"/api/v1/cards/{w.card}/replace", {"reason": "damaged"}),
                                            "clerk", "card:status:issue"),
    "POST /api/v1/pickup-points": (lambda w: ("/api/v1/pickup-points", {
        "code": unique("PT")[:16], "kind": "post_office", "name_ar": "مكتب بريد القصرين", "name_fr": "Poste de Kasserine",
        "governorate": "KAS"}), "clerk", "cards:point:create"),
    "PATCH /api/v1/pickup-points/{code}": (lambda w: (f"/api/v1/pickup-points/{w.point}", {"hours_fr": "8h-13h"}),
                                           "clerk", "cards:point:update"),
    "POST /api/v1/desk/cards/{serial}/deliver": (lambda w: (f"/api/v1/desk/cards/{w.waiting_card}/deliver", {
        "point": w.point, "presented_cin": w.cin, "to": "holder"}), "desk", "card:status:deliver"),
    "POST /api/v1/desk/batches/{number}/receive": (lambda w: (f"/api/v1/desk/batches/{w.batch}/receive",
                                                              {"point": w.point}), "desk", "card:batch:receive"),
}
# POSTed but writing nothing: anyone may check a card's printed code.
# The SMS webhook writes only to the message log (sms_message), which is its own append-only record.
READ_ONLY_POSTS = {"POST /api/v1/cards/verify-code", "POST /api/v1/sms/inbound", "POST /api/v1/care/challenges",
                   "POST /api/v1/care/care-sheets/status",
                   # the FHIR facade's catch-all only answers "no such resource" or "not offered"
                   *(f"{method} /fhir/{{rest:path}}" for method in ("POST", "PUT", "PATCH", "DELETE"))}
# Writes signed by cards at the point of care: their audit events are checked in tests/care/test_audited.py.
from tests.care.test_audited import SIGNED_WRITES  # noqa: E402


class TestEveryWriteIsAudited:
    def test_every_write_route_has_a_case(self, app_for, factory):
        writes = {f"{method} {route.path}" for route in iter_route_contexts(app_for(factory).routes)
                  if getattr(route, "dependant", None) is not None for method in route.methods if method != "GET"}

        assert writes - READ_ONLY_POSTS == set(WRITES) | set(SIGNED_WRITES)

    @pytest.mark.parametrize("route", sorted(WRITES))
    def test_write_leaves_a_tagged_event_by_its_actor(self, client, session, world, route):
        call, who, action = WRITES[route]
        path, body = call(world)
        request_id = unique("req-")
        headers = {"x-request-id": request_id,
                   **({"clerk": world.clerk, "admin": world.admin, "desk": world.desk,
                       "gateway": world.gateway}.get(who, {}))}

        response = client.request(route.split()[0], path, json=body, headers=headers)

        assert response.status_code < 300, response.text
        events = events_of(session, request_id)
        assert action in [e.action for e in events]
        expected_actor = {"clerk": world.clerk_label, "admin": world.admin_label, "desk": world.desk_label,
                          "gateway": world.gateway_label}.get(who, f"agent:{world.agent}")
        assert {e.actor for e in events} == {expected_actor}
        assert all(e.after is not None or e.before is not None for e in events if e.action != "security:session:close")

    def test_enrolment_records_the_person_and_the_member(self, client, session, world):
        call, _, _ = WRITES["POST /api/v1/members"]
        path, body = call(world)

        response = client.post(path, json=body, headers={**world.clerk, "x-request-id": "enrol-1"})

        assert response.status_code == 201, response.text
        events = events_of(session, "enrol-1")
        assert [(e.action, e.entity_type) for e in events] == [("registry:person:create", "person"),
                                                               ("registry:member:create", "member")]
        person, member = events
        assert person.before is None and person.after["cin"] == body["person"]["cin"]
        assert member.entity_id == body["social_id"]
        assert member.after["social_id"] == body["social_id"] and member.after["care_scheme"] == "public"
        assert person.id < member.id
        seal_in(session)
        assert [member.seq - 1, member.prev_hash] == [person.seq, person.hash]

    def test_update_records_before_and_after(self, client, session, world):
        response = client.patch(f"/api/v1/members/{world.social_id}", json={"employer": "Tunisair", "status": "suspended"},
                                headers={**world.clerk, "x-request-id": "update-1"})

        assert response.status_code == 200, response.text
        (event,) = events_of(session, "update-1")
        assert event.action == "registry:member:update"
        assert event.entity_id == world.social_id
        assert (event.before["employer"], event.after["employer"]) == ("Société Tunisienne d'Électricité", "Tunisair")
        assert (event.before["status"], event.after["status"]) == ("active", "suspended")
        unchanged = {k for k in event.before if k not in ("employer", "status")}
        assert {k: event.before[k] for k in unchanged} == {k: event.after[k] for k in unchanged}


class TestRefusedWritesLeaveNothing:
    def test_rule_violation_writes_no_event(self, client, session, world):
        before = audit_count(session)
        child = {"person": {"first_name_ar": "سامي", "last_name_ar": "بن صالح", "first_name_lat": "Sami",
                            "last_name_lat": "Ben Salah", "birth_date": "1990-01-01", "sex": "M", "governorate": "SFX"},
                 "relationship": "child"}

        response = client.post(f"/api/v1/members/{world.social_id}/dependants", json=child,
                               headers={**world.clerk, "x-request-id": "refused-1"})

        assert response.status_code == 422
        assert events_of(session, "refused-1") == []
        assert audit_count(session) == before

    def test_failure_after_a_flush_rolls_back_rows_and_events(self, client, session, world):
        before = audit_count(session)
        number = unique("A")[:12]
        body = {"number": number, "level": "free", "valid_from": "2024-01-01", "governorate": "SFX",
                "member_cins": [world.cin, "99999999"]}

        response = client.post("/api/v1/amen-households", json=body, headers={**world.clerk, "x-request-id": "refused-2"})

        # The household row was flushed before the unknown CIN was found; the whole request must be undone.
        assert response.status_code == 404, response.text
        assert response.json()["errors"][0]["field"] == "member_cins.1"
        assert client.get(f"/api/v1/amen-households/{number}", headers=world.clerk).status_code == 404
        assert events_of(session, "refused-2") == []
        assert audit_count(session) == before

    def test_forbidden_write_writes_no_event(self, client, session, world):
        before = audit_count(session)

        response = client.patch(f"/api/v1/members/{world.social_id}", json={"employer": "Tunisair"},
                                headers={**world.admin, "x-request-id": "refused-3"})

        assert response.status_code == 403
        assert audit_count(session) == before


# ---------------------------------------------------------------- the chain


class TestVerify:
    def test_intact_chain_is_ok(self, session, world):
        seal_in(session)

        result = verify(session)

        assert result.ok, result.problem
        assert result.checked == audit_count(session) > 0
        assert result.first_bad_seq is None
        assert result.head_hash == session.scalar(select(AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1))

    def test_hash_depends_on_the_instant_not_on_its_utc_offset(self):
        at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        common = {"seq": 1, "actor": "cli:x", "action": "registry:member:create", "entity_type": "member",
                  "entity_id": "1", "before": None, "after": {"status": "active"}, "request_id": None, "prev_hash": GENESIS}

        assert event_hash(at=at, **common) == event_hash(at=at.astimezone(timezone(timedelta(hours=1))), **common)
        assert event_hash(at=at, **common) != event_hash(at=at + timedelta(microseconds=1), **common)
        assert event_hash(at=at, **common) != event_hash(at=at, **(common | {"prev_hash": "1" * 64}))


@pytest.fixture
def chain(committed) -> list[int]:
    """Commit three events for real and seal them; return their sequence numbers."""
    with committed() as session:
        first = (session.scalar(select(func.max(AuditEvent.seq))) or 0) + 1
        factories.member(session)  # person:create, member:create
        factories.facility(session)  # facility:create
        session.commit()
        assert seal_all(session) == 3
        session.commit()
    return [first, first + 1, first + 2]


def run_sql(engine, sql: str, **params) -> None:
    statement = text(sql)
    if "after" in params:
        statement = statement.bindparams(bindparam("after", type_=JSON))
    with engine.begin() as connection:
        connection.execute(statement, params)


def verify_committed(committed):
    with committed() as session:
        return verify(session)


class TestTampering:
    def test_untouched_chain_verifies(self, committed, chain):
        result = verify_committed(committed)

        assert result.ok
        assert result.checked == chain[-1]

    @pytest.mark.parametrize("position", [0, 1, 2], ids=["first", "middle", "last"])
    def test_changed_content_names_the_row(self, engine, committed, chain, position):
        seq = chain[position]
        run_sql(engine, 'UPDATE audit_event SET "after" = :after WHERE seq = :seq', after={"employer": "forged"}, seq=seq)

        result = verify_committed(committed)

        assert not result.ok
        assert result.first_bad_seq == seq
        assert "altered" in result.problem
        assert result.checked == seq - 1

    def test_deleted_row_is_named(self, engine, committed, chain):
        run_sql(engine, "DELETE FROM audit_event WHERE seq = :seq", seq=chain[1])

        result = verify_committed(committed)

        assert (result.ok, result.first_bad_seq) == (False, chain[1])
        assert "missing" in result.problem

    def test_row_rewritten_with_a_recomputed_hash_is_named(self, engine, committed, chain):
        seq = chain[1]
        with committed() as session:
            row = session.scalars(select(AuditEvent).where(AuditEvent.seq == seq)).one()
            forged = dict(row.after, social_id="00000000000")
            digest = event_hash(seq=row.seq, at=row.at, actor=row.actor, action=row.action, entity_type=row.entity_type,
                                entity_id=row.entity_id, before=row.before, after=forged, request_id=row.request_id,
                                prev_hash=row.prev_hash)
        run_sql(engine, 'UPDATE audit_event SET "after" = :after, hash = :hash WHERE seq = :seq',
                after=forged, hash=digest, seq=seq)

        result = verify_committed(committed)

        # The forged row is self-consistent; the next row no longer links to it.
        assert (result.ok, result.first_bad_seq) == (False, seq)
        assert "rewritten" in result.problem


# ---------------------------------------------------------------- the API and the command line


class TestAuditApi:
    def test_admin_reads_an_entitys_events_newest_first(self, client, session, world):
        client.patch(f"/api/v1/members/{world.social_id}", json={"employer": "Tunisair"}, headers=world.clerk)

        response = client.get("/api/v1/audit", params={"entity_type": "member", "entity_id": world.social_id},
                              headers=world.admin)

        assert response.status_code == 200, response.text
        events = response.json()
        assert [e["action"] for e in events] == ["registry:member:update", "registry:member:create"]
        assert events[0]["id"] > events[1]["id"]
        assert (events[0]["seq"], events[0]["hash"]) == (None, None)  # not sealed yet, already readable
        assert events[0]["actor"] == world.clerk_label
        assert events[0]["after"]["employer"] == "Tunisair"

    @pytest.mark.parametrize("parameter", ["before_id", "before_seq"])
    def test_pages_backwards(self, client, world, parameter):
        newest = client.get("/api/v1/audit", params={"limit": 2}, headers=world.admin).json()

        older = client.get("/api/v1/audit", params={"limit": 2, parameter: newest[-1]["id"]}, headers=world.admin).json()

        assert [e["id"] for e in newest] == [newest[0]["id"], newest[0]["id"] - 1]
        assert [e["id"] for e in older] == [newest[-1]["id"] - 1, newest[-1]["id"] - 2]

    def test_verify_endpoint(self, client, session, world):
        seal_in(session)
        client.patch(f"/api/v1/members/{world.social_id}", json={"employer": "Tunisair"}, headers=world.clerk)

        response = client.get("/api/v1/audit/verify", headers=world.admin)

        assert response.status_code == 200, response.text
        assert response.json() | {"head_hash": None} == {"ok": True, "checked": audit_count(session) - 1,
                                                         "head_hash": None, "first_bad_seq": None, "problem": None,
                                                         "pending": 1}

    def test_verify_endpoint_names_a_tampered_row(self, app_for, engine, committed, chain):
        with committed() as session:
            admin = factories.agent_token(session, "admin")
            session.commit()
        run_sql(engine, 'UPDATE audit_event SET "after" = :after WHERE seq = :seq', after={}, seq=chain[1])

        with TestClient(app_for(committed)) as client:
            response = client.get("/api/v1/audit/verify", headers=bearer(admin))

        assert response.status_code == 200
        assert (response.json()["ok"], response.json()["first_bad_seq"]) == (False, chain[1])

    def test_clerk_may_not_read_the_trail(self, client, world):
        assert client.get("/api/v1/audit", headers=world.clerk).status_code == 403
        assert client.get("/api/v1/audit/verify", headers=world.clerk).status_code == 403


class TestAuditCli:
    def test_intact_trail_exits_0(self, cli_runner, chain):
        result = cli_runner.invoke(cli, ["audit", "verify"])

        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("sealed 0 events\n")
        assert f"intact: {chain[-1]} events" in result.stdout

    def test_tampered_trail_exits_1_naming_the_row(self, cli_runner, engine, chain):
        run_sql(engine, 'UPDATE audit_event SET "after" = :after WHERE seq = :seq', after={"x": 1}, seq=chain[1])

        result = cli_runner.invoke(cli, ["audit", "verify"])

        assert result.exit_code == 1
        assert f"BROKEN at row {chain[1]}" in result.stdout

