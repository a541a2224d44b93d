"""Reading requests awaited on the event loop (PostgreSQL): a rights check's statements go through the asynchronous
driver, so one process serves other requests while one waits on the database (care/deps.py, db.make_reading_engine).

The rows are committed (the reading engine has its own connections, which see only what is committed). On SQLite
there is no such engine: the same requests run as before, and each test says so.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx2
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from labes.cards import service as cards
from labes.care import deps
from labes.care.models import UsedChallenge
from labes.security.models import AuditEvent
from labes.terminal import Insured
from tests import factories
from tests.care.conftest import build_world
from tests.care.helpers import problem
from tests.care.test_transactions import consultation, flip_signature, sign

API = "/api/v1/care"


@pytest.fixture
def awaited(committed, app_for, keys_dir):
    """A committed world, its app (worker threads 0, as `labes serve` runs PostgreSQL) and a client whose lifespan
    made the reading engine; every card already used once (a first use is a write, served as one)."""
    app = app_for(committed, worker_threads=0)
    with committed() as session, TestClient(app) as client:
        world = build_world(session, client, keys_dir)
        session.commit()
        assert client.post(f"{API}/rights-checks", json=sign(world.doctor_at_clinic, "rights-check", {},
                                                             patient=world.cards["patient"])).status_code == 200
        yield world, client, committed


@pytest.fixture
def statements():
    """The statements run while the test runs, as (through the asynchronous driver?, SQL)."""
    seen: list[tuple[bool, str]] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((conn.dialect.is_async, statement))

    event.listen(Engine, "before_cursor_execute", note)
    yield seen
    event.remove(Engine, "before_cursor_execute", note)


def on_postgresql(committed) -> bool:
    return committed.kw["bind"].dialect.name == "postgresql"


def tally(committed) -> tuple[int, int]:
    with committed() as session:
        return (session.scalar(select(func.count()).select_from(AuditEvent)),
                session.scalar(select(func.count()).select_from(UsedChallenge)))


def test_a_rights_check_awaits_its_statements_and_answers_as_before(awaited, statements, app_for):
    world, client, committed = awaited
    before = tally(committed)
    body = sign(world.doctor_at_clinic, "rights-check", {}, patient=world.cards["patient"])
    statements.clear()
    answer = client.post(f"{API}/rights-checks", json=body)
    assert answer.status_code == 200, answer.text
    # On PostgreSQL its two statements (the cards with the patient's file; the challenge spent with the audit
    # event), both awaited; on SQLite, none.
    awaited_statements = [awaited_ for awaited_, _ in statements]
    assert awaited_statements == [True, True] if on_postgresql(committed) else not any(awaited_statements)
    assert tally(committed) == (before[0] + 1, before[1] + 1)

    with TestClient(app_for(committed, worker_threads=0, async_reads=False)) as plain:
        statements.clear()
        other = plain.post(f"{API}/rights-checks", json=sign(world.doctor_at_clinic, "rights-check", {},
                                                             patient=world.cards["patient"]))
    assert other.status_code == 200 and not any(awaited_ for awaited_, _ in statements)
    same = {key: value for key, value in answer.json().items() if key != "checked_at"}
    assert same == {key: value for key, value in other.json().items() if key != "checked_at"}
    assert same["covered"] is True and same["standard_act"]["code"] == "CMF"


def test_a_union_read_through_asyncpg_is_the_one_through_psycopg_value_for_value(awaited):
    # asyncpg reads each part's row as one ROW value (db.UnionRead.records); psycopg, SQLAlchemy and SQLite read
    # the parts side by side. A family with a dependant and a chronic disease: every part, every column type.
    world, _, committed = awaited
    if not on_postgresql(committed):
        pytest.skip("SQLite has no asynchronous engine: its reads are the side-by-side form, tested in tests/test_db.py")
    from datetime import date

    from labes.care import transactions
    from labes.care.patients import _FILE
    from labes.db import make_reading_engine
    from labes.registry.models import ChronicCondition, Dependant, Person

    file_read = _FILE["postgresql"]  # the LATERAL form

    with committed() as session:
        member = factories.member(session)
        child = factories.dependant(session, member.social_id)
        session.add(ChronicCondition(id=uuid.uuid4(), person_id=member.person_id, code="08", icd10="E11", valid_from=date(2025, 3, 1)))
        session.commit()
        people = (member.person_id, child.person_id)
        assert session.get(Dependant, child.id) is not None and session.get(Person, child.person_id) is not None
        on = date.today()
        through_psycopg = [file_read.rows(session.connection(), {"person_id": person, "on": on, "year": on.year})
                           for person in people]
        cards_read = transactions._CARDS_AND_FILE["postgresql"]
        card_parameters = {"card": world.cards["patient"].serial, "other_card": world.doctor_at_clinic.card.serial,
                           "facility": world.clinic.code, "patient_card": world.cards["patient"].serial, "on": on,
                           "year": on.year}
        cards_through_psycopg = cards_read.rows(session.connection(), card_parameters)

    async def through_asyncpg():
        reading = make_reading_engine(committed.kw["bind"], pool_size=1)
        try:
            async with reading.connect() as connection:
                files = [await connection.run_sync(lambda sync, person=person: file_read.rows(
                    sync, {"person_id": person, "on": on, "year": on.year})) for person in people]
                return files, await connection.run_sync(lambda sync: cards_read.rows(sync, card_parameters))
        finally:
            await reading.dispose()

    files, cards_ = asyncio.run(through_asyncpg())
    assert files == through_psycopg and cards_ == cards_through_psycopg
    assert [len(file["dependant"]) for file in files] == [1, 1] and len(files[0]["chronic"]) == 1
    assert len(cards_["cards"]) == 2 and len(cards_["head"]) == 1


def test_the_other_reading_requests_are_awaited_too(awaited, statements):
    """The facility's care-sheet statuses and the insured's own care sheets: ORM reads, awaited as well."""
    world, client, committed = awaited
    sheet = world.doctor_at_clinic.send_care_sheet(world.cards["patient"], consultation())
    statements.clear()
    statuses = world.doctor_at_clinic.care_sheet_status([sheet["number"]])
    mine = Insured(client=client, card=world.cards["patient"]).care_sheets()
    assert [item["number"] for item in statuses] == [sheet["number"]] and statuses[0]["status"] == sheet["status"]
    assert sheet["number"] in [item["number"] for item in mine["items"]]
    awaited_statements = [awaited_ for awaited_, sql in statements if not sql.startswith(("BEGIN", "COMMIT"))]
    assert awaited_statements  # each request read something
    assert all(awaited_statements) if on_postgresql(committed) else not any(awaited_statements)


def test_a_replayed_rights_check_is_refused_and_writes_nothing(awaited):
    world, client, committed = awaited
    body = sign(world.doctor_at_clinic, "rights-check", {}, patient=world.cards["patient"])
    assert client.post(f"{API}/rights-checks", json=body).status_code == 200
    before = tally(committed)
    answer = problem(client.post(f"{API}/rights-checks", json=body), 403, "invalid-transaction")
    assert "already been used" in answer["detail"]
    assert tally(committed) == before


def test_a_refused_rights_check_leaves_nothing_in_its_kept_session_for_the_next(awaited):
    """A replay is refused after its handler queued its audit event: the session goes back to the others with
    nothing of it, so the next check writes its own event alone, under its own request id."""
    world, client, committed = awaited
    body = sign(world.doctor_at_clinic, "rights-check", {}, patient=world.cards["patient"])
    assert client.post(f"{API}/rights-checks", json=body).status_code == 200
    before = tally(committed)
    problem(client.post(f"{API}/rights-checks", json=body, headers={"x-request-id": "replayed"}), 403,
            "invalid-transaction")
    fresh = sign(world.doctor_at_clinic, "rights-check", {}, patient=world.cards["patient"])
    assert client.post(f"{API}/rights-checks", json=fresh, headers={"x-request-id": "next"}).status_code == 200
    assert tally(committed) == (before[0] + 1, before[1] + 1)
    with committed() as session:
        last = session.scalars(select(AuditEvent.request_id).order_by(AuditEvent.id.desc()).limit(2)).all()
    assert last[0] == "next" and "replayed" not in last


def test_a_forged_rights_check_is_refused_and_leaves_its_challenge_unspent(awaited):
    world, client, committed = awaited
    challenge = world.doctor_at_clinic.challenge()
    forged = flip_signature(sign(world.doctor_at_clinic, "rights-check", {}, patient=world.cards["patient"],
                                 challenge=challenge), 1)
    before = tally(committed)
    problem(client.post(f"{API}/rights-checks", json=forged), 403, "invalid-transaction")
    assert tally(committed) == before
    # The forgery did not spend the challenge: the genuine request signed with it goes through.
    genuine = sign(world.doctor_at_clinic, "rights-check", {}, patient=world.cards["patient"], challenge=challenge)
    assert client.post(f"{API}/rights-checks", json=genuine).status_code == 200


def test_a_blocked_card_is_refused_with_its_reason(awaited):
    world, client, committed = awaited
    with committed() as session:
        cards.block(session, actor=factories.ACTOR, serial=world.cards["patient"].serial, reason="stolen")
        session.commit()
    before = tally(committed)
    answer = problem(client.post(f"{API}/rights-checks", json=sign(world.doctor_at_clinic, "rights-check", {},
                                                                    patient=world.cards["patient"])),
                     403, "card-refused")
    assert world.cards["patient"].serial in answer["detail"] and "stolen" in answer["detail"]
    assert tally(committed) == before


def test_a_cards_first_use_is_served_as_a_write(committed, app_for, keys_dir, statements):
    with committed() as session, TestClient(app_for(committed, worker_threads=0)) as client:
        world = build_world(session, client, keys_dir)
        session.commit()
        newcomer = factories.member(session, scheme="private", doctor=world.doctor.licence)
        session.flush()
        patient = world.card_for("newcomer", person_id=newcomer.person_id)  # delivered, never used
        session.commit()
        statements.clear()
        response = client.post(f"{API}/rights-checks", json=sign(world.doctor_at_clinic, "rights-check", {},
                                                                  patient=patient))
        assert response.status_code == 200, response.text
        assert cards.state_of(session, serial=patient.serial) == "in_use"
    # On PostgreSQL the first try is awaited and hands over at the card's first use; the request is then served in
    # a transaction, as every request is on SQLite.
    assert any(awaited_ for awaited_, _ in statements) is on_postgresql(committed)
    assert any(not awaited_ for awaited_, _ in statements)


@pytest.mark.parametrize("async_reads", [True, False], ids=["awaited", "blocking"])
def test_one_process_serves_other_rights_checks_while_one_waits_on_the_database(awaited, app_for, monkeypatch,
                                                                                async_reads):
    world, _, committed = awaited
    if not on_postgresql(committed):
        pytest.skip("SQLite has no asynchronous driver: its reading requests are served one by one")
    bodies = [sign(world.doctor_at_clinic, "rights-check", {}, patient=world.cards["patient"]) for _ in range(8)]
    inside, most = 0, 0
    read_only = deps._read_only

    def counted(*args, **kwargs):
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        try:
            return read_only(*args, **kwargs)
        finally:
            inside -= 1

    monkeypatch.setattr(deps, "_read_only", counted)
    app = app_for(committed, worker_threads=0, async_reads=async_reads)

    async def post_all() -> list[int]:
        async with app.router.lifespan_context(app) as state:
            async def served(scope, receive, send):  # as the server hands the lifespan's state to each request
                scope["state"] = dict(state or {})
                await app(scope, receive, send)

            async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=served), base_url="http://labes") as http:
                answers = await asyncio.gather(*(http.post(f"{API}/rights-checks", json=body) for body in bodies))
        return [answer.status_code for answer in answers]

    before = tally(committed)
    assert asyncio.run(post_all()) == [200] * len(bodies)
    assert tally(committed) == (before[0] + len(bodies), before[1] + len(bodies))
    assert (most > 1) is async_reads, most
