"""`labes pos`: a terminal in a shell, with card files — its answers, and what it refuses."""

from __future__ import annotations

import json
from datetime import date

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from labes.cards.tokens import card_file
from labes.care import protocol
from labes.cli import app
from labes.terminal import client as terminal_client
from tests.care.conftest import PIN

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


def _write(path, card, *, pin=None):
    path.write_bytes(card_file(serial=card.serial, card_type="professional" if pin else "labes", holder_name="x",
                               certificate=card.certificate(), key=card._key, pin=pin))
    return str(path)


@pytest.fixture
def files(world, tmp_path):
    return {"doctor": _write(tmp_path / "doctor.card", world.cards["doctor"], pin=PIN),
            "patient": _write(tmp_path / "patient.card", world.cards["patient"])}


@pytest.fixture
def in_process(world, monkeypatch):
    """Let the CLI's terminal reach the in-process API instead of a server."""
    monkeypatch.setattr(terminal_client.httpx, "Client", lambda **_: world.client)


def pos(*args: str):
    return CliRunner().invoke(app, ["pos", *args])


def doctor(world, files, *extra):
    return ["--card", files["doctor"], "--pin", PIN, "--facility", world.clinic.code, *extra]


def test_rights_prints_the_answer(world, files, in_process):
    result = pos("rights", *doctor(world, files, "--patient", files["patient"]))

    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["covered"] is True and answer["is_family_doctor"] is True


def test_a_wrong_pin_is_refused_before_anything_is_sent(world, files):
    result = pos("rights", "--card", files["doctor"], "--pin", "0000", "--facility", world.clinic.code,
                 "--patient", files["patient"], "--server", UNREACHABLE)

    assert result.exit_code == 1 and "Wrong PIN" in result.output


def test_a_refusal_prints_the_problem_and_exits_2(world, files, in_process):
    result = pos("rights", "--card", files["doctor"], "--pin", PIN, "--facility", world.pharmacy.code,
                 "--patient", files["patient"])

    assert result.exit_code == 2
    assert json.loads(result.output)["type"].endswith("/invalid-transaction")


def test_a_malformed_line_is_refused(world, files):
    result = pos("dispense", *doctor(world, files, "--prescription", "RX-2026-00000001", "--line", "1x2",
                                     "--server", UNREACHABLE))

    assert result.exit_code == 1 and "LINE_NO:QUANTITY" in result.output


def test_a_sheet_is_queued_when_the_fund_is_unreachable_then_flushed_once(world, files, tmp_path, monkeypatch):
    content = tmp_path / "sheet.json"
    content.write_text(json.dumps({"kind": "consultation", "care_date": date.today().isoformat(),
                                   "diagnoses": ["J06.9"], "lines": [{"code": "CMF"}]}))
    queue = str(tmp_path / "queue.sqlite")

    queued = pos("sheet", *doctor(world, files, "--patient", files["patient"], "--content", str(content),
                                  "--queue", queue, "--server", UNREACHABLE))
    assert queued.exit_code == 0, queued.output
    assert json.loads(queued.output)["queued"] is True

    monkeypatch.setattr(terminal_client.httpx, "Client", lambda **_: world.client)
    flushed = pos("flush", *doctor(world, files, "--queue", queue))
    again = pos("flush", *doctor(world, files, "--queue", queue))

    assert flushed.exit_code == 0, flushed.output
    [answer] = json.loads(flushed.output)["answers"]
    assert answer["status"] == "accepted" and json.loads(flushed.output)["still_waiting"] == 0
    assert json.loads(again.output) == {"answers": [], "still_waiting": 0}


def test_sign_prints_a_body_that_verifies(world, files, tmp_path):
    content = tmp_path / "empty.json"
    content.write_text("{}")

    result = pos("sign", "rights-check", *doctor(world, files, "--patient", files["patient"], "--content",
                                                 str(content), "--challenge", "C"))

    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    signed = protocol.parse(body["transaction"])
    der = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    keys = {c.serial: c.certificate().public_key().public_bytes(*der) for c in (world.cards["doctor"], world.cards["patient"])}
    protocol.verify(signed, keys)
    assert signed.transaction.content_digest == protocol.content_digest({})


def test_sign_refuses_an_unknown_action(world, files, tmp_path):
    content = tmp_path / "empty.json"
    content.write_text("{}")

    result = pos("sign", "teleport", *doctor(world, files, "--content", str(content)))

    assert result.exit_code == 1 and "unknown action" in result.output



def test_my_sheets_prints_the_insureds_own_care_sheets(world, files, in_process):
    sent = world.doctor_at_clinic.send_care_sheet(world.cards["patient"], {
        "kind": "consultation", "care_date": date.today().isoformat(), "diagnoses": ["J06.9"], "lines": [{"code": "CMF"}]})

    result = pos("my-sheets", "--patient", files["patient"])

    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["family"] is True and [item["number"] for item in answer["items"]] == [sent["number"]]


def test_my_sheets_refuses_a_date_that_is_not_one(world, files):
    result = pos("my-sheets", "--patient", files["patient"], "--since", "01/02/2026")

    assert result.exit_code == 1 and "YYYY-MM-DD" in result.output
