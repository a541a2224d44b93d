"""Two terminals at the same moment, with real commits and real threads: exactly one dispenses.

On PostgreSQL the prescription row lock and the guarded line UPDATE decide; on SQLite the database's
single writer does. Each attempt fetches its challenge and signs first, then both are released together.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from labes.care.models import CareSheet, Dispensation, PrescriptionLine
from labes.terminal import Terminal
from tests.care.conftest import build_world


@pytest.fixture
def shared(committed, app_for, keys_dir):
    """A world whose rows are committed, so that concurrent requests see them."""
    app = app_for(committed)
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
