"""Two terminals at the same moment, with real commits and real threads: exactly one dispenses.

On PostgreSQL the prescription row lock and the guarded line UPDATE decide; on SQLite the database's
single writer does. Each attempt fetches its challenge and signs first, then both are released together.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta

import anyio
import httpx2
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import sessionmaker
from starlette.testclient import TestClient

from labes.cards.models import Card
from labes.care.models import CareSheet, Dispensation, PrescriptionLine
from labes.care.transactions import utc
from labes.db import make_engine
from labes.security.models import AuditEvent
from labes.terminal import Terminal
from tests.care.conftest import build_world


@pytest.fixture(params=[40, 0], ids=["request-threads", "on-the-loop"])
def worker_threads(request) -> int:
    """Handlers in request threads (the default), or on each process's event loop (LABES_WORKER_THREADS=0)."""
    return request.param


@pytest.fixture
def shared(committed, app_for, keys_dir, worker_threads):
    """A world whose rows are committed, so that concurrent requests see them.

    Each racing client runs its own event loop in its own thread, as two server processes would.
    """
    app = app_for(committed, worker_threads=worker_threads)
    with committed() as session, TestClient(app) as client:
        world = build_world(session, client, keys_dir)
        session.commit()
        yield world, app, committed


def _race(app, attempts):
    """Sign every attempt, then post them all at once; return the HTTP statuses."""
    barrier = threading.Barrier(len(attempts))
    statuses: list[int] = []

    def run(terminal_args, content, patient_card):
        with TestClient(app) as client:
            terminal = Terminal(client=client, **terminal_args)
            body = terminal.sign("dispense", content, patient_card=patient_card, challenge=terminal.challenge())
            barrier.wait()
            statuses.append(client.post("/api/v1/care/dispensations", json=body).status_code)

    threads = [threading.Thread(target=run, args=attempt) for attempt in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(statuses)


def _content(number, quantity):
    return {"client_key": uuid.uuid4().hex, "prescription": number, "lines": [{"line_no": 1, "quantity": quantity}]}


@pytest.mark.parametrize("round_", range(3))
def test_two_pharmacies_at_once_exactly_one_dispenses(shared, round_):
    world, app, committed = shared
    number = world.doctor_at_clinic.prescribe(world.cards["patient"], {"lines": [{"code": "500118", "quantity": 2}]})["number"]

    statuses = _race(app, [
        ({"facility": world.pharmacy.code, "card": world.cards["pharmacist"]}, _content(number, 2), world.cards["patient"]),
        ({"facility": world.second_pharmacy.code, "card": world.cards["second_pharmacist"]}, _content(number, 2),
         world.cards["patient"]),
    ])

    assert statuses == [201, 409]
    with committed() as session:
        assert session.scalar(select(func.count()).select_from(Dispensation)
                              .where(Dispensation.prescription_id == _prescription_id(session, number))) == 1
        assert session.scalar(select(PrescriptionLine.dispensed)
                              .where(PrescriptionLine.prescription_id == _prescription_id(session, number))) == 2


def test_two_counters_of_one_pharmacy_cannot_both_take_the_last_boxes(shared):
    world, app, committed = shared
    number = world.doctor_at_clinic.prescribe(world.cards["patient"], {"lines": [{"code": "500118", "quantity": 3}]})["number"]
    counter = {"facility": world.pharmacy.code, "card": world.cards["pharmacist"]}

    statuses = _race(app, [(counter, _content(number, 2), world.cards["patient"]),
                           (counter, _content(number, 2), world.cards["patient"])])

    assert statuses == [201, 409]
    with committed() as session:
        prescription_id = _prescription_id(session, number)
        assert session.scalar(select(PrescriptionLine.dispensed).where(PrescriptionLine.prescription_id == prescription_id)) == 2
        assert session.scalar(select(func.count()).select_from(CareSheet).where(CareSheet.kind == "pharmacy")) >= 1


def _prescription_id(session, number):
    from labes.care.models import Prescription

    return session.scalar(select(Prescription.id).where(Prescription.number == number))


def test_a_new_card_signing_many_checks_at_once_does_not_stall_the_request_threads(shared, app_for, worker_threads):
    """Eight rights checks signed by a doctor's new card, in one process with two request threads.

    The first to pass puts the card in use and holds its row until it commits; the others wait for that
    row in the two threads. A transaction that gave its thread back before committing would then queue
    for a thread held by the transactions waiting for it, and the process would stall for good.
    """
    world, _, committed = shared
    # Waits for a row end after 10 s (SQLite's busy timeout does the same), so a regression fails, not hangs.
    url = committed.kw["bind"].url
    options = {"connect_args": {"options": "-c lock_timeout=10s"}} if url.get_backend_name() == "postgresql" else {}
    engine = make_engine(url.render_as_string(hide_password=False), **options)
    app = app_for(sessionmaker(bind=engine, expire_on_commit=False), worker_threads=worker_threads)
    doctor = world.doctor_at_clinic
    bodies = [doctor.sign("rights-check", {}, patient_card=world.cards["patient"], challenge=doctor.challenge())
              for _ in range(8)]
    with committed() as session:
        session.execute(update(Card).where(Card.serial == world.cards["doctor"].serial)
                        .values(state="delivered", first_used_at=None))
        session.commit()

    async def post_all() -> list[int]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 2  # as `labes serve` on PostgreSQL
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://labes.test") as client:
            with anyio.fail_after(60):
                answers = await asyncio.gather(*(client.post("/api/v1/care/rights-checks", json=body) for body in bodies))
        return [answer.status_code for answer in answers]

    try:
        assert asyncio.run(post_all()) == [200] * 8
    finally:
        engine.dispose()
    with committed() as session:
        card = session.scalar(select(Card).where(Card.serial == world.cards["doctor"].serial))
        assert card.state == "in_use"
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "card:status:first_use", AuditEvent.entity_id == card.serial)) == 1


def _rights_events(session, serial: str) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "care:rights:check", AuditEvent.after["card"].as_string() == serial))


def test_a_rights_check_spends_its_challenge_with_its_audit_event_once(shared):
    """A reading request's challenge is spent by the statement that writes its audit event (in autocommit on
    PostgreSQL): the check is audited once, and the same body again is a replay that writes nothing."""
    world, app, committed = shared
    doctor, patient = world.doctor_at_clinic, world.cards["patient"]
    body = doctor.sign("rights-check", {}, patient_card=patient, challenge=doctor.challenge())
    with TestClient(app) as client:
        first = client.post("/api/v1/care/rights-checks", json=body)
        again = client.post("/api/v1/care/rights-checks", json=body)
    assert first.status_code == 200, first.text
    assert again.status_code == 403 and "already been used" in again.json()["detail"]
    with committed() as session:
        assert _rights_events(session, patient.serial) == 1


def test_the_same_rights_check_posted_twice_at_once_is_answered_and_audited_once(shared):
    world, app, committed = shared
    doctor, patient = world.doctor_at_clinic, world.cards["patient"]
    body = doctor.sign("rights-check", {}, patient_card=patient, challenge=doctor.challenge())
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def post() -> None:
        with TestClient(app) as client:
            barrier.wait()
            statuses.append(client.post("/api/v1/care/rights-checks", json=body).status_code)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200, 403]
    with committed() as session:
        assert _rights_events(session, patient.serial) == 1


def test_a_new_cards_first_rights_check_is_run_as_a_writing_request(shared):
    """A card's first use must roll back with a refused request, so a reading request that meets a delivered
    card runs again in a transaction: the card is put in use, and the check audited, once each."""
    world, app, committed = shared
    doctor, patient = world.doctor_at_clinic, world.cards["patient"]
    with committed() as session:
        session.execute(update(Card).where(Card.serial == patient.serial).values(state="delivered", first_used_at=None))
        session.commit()
    body = doctor.sign("rights-check", {}, patient_card=patient, challenge=doctor.challenge())
    with TestClient(app) as client:
        assert client.post("/api/v1/care/rights-checks", json=body).status_code == 200
    with committed() as session:
        card = session.scalar(select(Card).where(Card.serial == patient.serial))
        assert card.state == "in_use"
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "card:status:first_use", AuditEvent.entity_id == patient.serial)) == 1
        assert _rights_events(session, patient.serial) == 1


def test_a_reading_request_cannot_write(committed):
    from labes.care.deps import _READING
    from labes.care.models import UsedChallenge

    with committed() as session:
        session.info[_READING] = True
        session.add(UsedChallenge(nonce="a-reading-write", expires_at=datetime.now(UTC)))
        with pytest.raises(RuntimeError, match="tried to write"):
            session.flush()


class TestLastUse:
    """A card's last use is kept to the hour. A rights check notes it with its last statement, the one that spends
    its challenge and writes its audit event (in autocommit on PostgreSQL), and only if it is accepted."""

    @staticmethod
    def last_used(committed, serials: list[str]) -> list[datetime | None]:
        with committed() as session:
            found = dict(session.execute(select(Card.serial, Card.last_used_at).where(Card.serial.in_(serials))).all())
        return [utc(found[serial]) for serial in serials]

    @staticmethod
    def age(committed, serials: list[str], *, hours: float) -> datetime:
        earlier = (datetime.now(UTC) - timedelta(hours=hours)).replace(microsecond=0)
        with committed() as session:
            session.execute(update(Card).where(Card.serial.in_(serials)).values(last_used_at=earlier))
            session.commit()
        return earlier

    @pytest.fixture
    def shared(self, shared):
        """The cards put in use by a first check (a card's first use is a writing request)."""
        world, app, _ = shared
        assert self.check(app, world)[1].status_code == 200
        return shared

    @staticmethod
    def check(app, world, body: dict | None = None):
        doctor = world.doctor_at_clinic
        body = body or doctor.sign("rights-check", {}, patient_card=world.cards["patient"], challenge=doctor.challenge())
        with TestClient(app) as client:
            return body, client.post("/api/v1/care/rights-checks", json=body)

    def test_a_check_notes_the_use_of_cards_last_used_over_an_hour_ago(self, shared):
        world, app, committed = shared
        serials = [world.cards["patient"].serial, world.cards["doctor"].serial]
        self.age(committed, serials, hours=3)
        started = datetime.now(UTC).replace(microsecond=0)
        assert self.check(app, world)[1].status_code == 200
        assert all(used >= started for used in self.last_used(committed, serials))

    def test_a_card_used_within_the_hour_is_not_written_again(self, shared):
        world, app, committed = shared
        serials = [world.cards["patient"].serial, world.cards["doctor"].serial]
        recent = self.age(committed, serials, hours=0.5)
        assert self.check(app, world)[1].status_code == 200
        assert self.last_used(committed, serials) == [recent, recent]

    def test_only_the_card_whose_use_is_old_is_noted(self, shared):
        world, app, committed = shared
        patient, doctor = world.cards["patient"].serial, world.cards["doctor"].serial
        recent = self.age(committed, [doctor], hours=0.25)
        self.age(committed, [patient], hours=2)
        started = datetime.now(UTC).replace(microsecond=0)
        assert self.check(app, world)[1].status_code == 200
        noted_patient, kept_doctor = self.last_used(committed, [patient, doctor])
        assert kept_doctor == recent and noted_patient >= started

    def test_a_refused_replay_notes_no_use(self, shared):
        world, app, committed = shared
        serials = [world.cards["patient"].serial, world.cards["doctor"].serial]
        body, answer = self.check(app, world)
        assert answer.status_code == 200
        earlier = self.age(committed, serials, hours=2)
        with committed() as session:
            audited = _rights_events(session, world.cards["patient"].serial)
        _, again = self.check(app, world, body)
        assert again.status_code == 403 and "already been used" in again.json()["detail"]
        assert self.last_used(committed, serials) == [earlier, earlier]
        with committed() as session:
            assert _rights_events(session, world.cards["patient"].serial) == audited

    def test_a_forged_check_notes_no_use(self, shared):
        world, app, committed = shared
        serials = [world.cards["patient"].serial, world.cards["doctor"].serial]
        earlier = self.age(committed, serials, hours=2)
        doctor = world.doctor_at_clinic
        body = doctor.sign("rights-check", {}, patient_card=world.cards["patient"], challenge=doctor.challenge())
        body["transaction"]["signatures"][1]["signature"] = body["transaction"]["signatures"][0]["signature"]
        assert self.check(app, world, body)[1].status_code == 403
        assert self.last_used(committed, serials) == [earlier, earlier]
