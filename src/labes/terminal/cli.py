"""`labes pos …`: a doctor's or pharmacist's terminal in a shell, with virtual cards.

    labes pos rights   --card var/cards/doctor.card --pin 1234 --facility F0001 --patient var/cards/patient.card
    labes pos sheet    … --patient P.card --content sheet.json          (queued if the fund is unreachable)
    labes pos prescribe … --patient P.card --content rx.json
    labes pos open     … --prescription RX-2026-00000001 (--patient P.card | --access-code K7M2…)
    labes pos dispense … --prescription RX-… --line 1:2 [--line 2:1:<generic code>] --patient P.card
    labes pos flush    …                                                 (send what the queue holds)
    labes pos sign ACTION … --content C.json [--challenge C]             (print the signed body: docs/protocol.md)
    labes pos my-sheets --patient P.card [--since 2026-01-01]              (the insured's side: their own card alone)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Play a doctor's or pharmacist's terminal with virtual cards (see docs/protocol.md).",
                  no_args_is_help=True)

Server = Annotated[str, typer.Option(envvar="LABES_SERVER", help="The fund's address")]
CardFile = Annotated[Path, typer.Option("--card", envvar="LABES_CARD", help="The professional's card file")]
Pin = Annotated[str | None, typer.Option(envvar="LABES_PIN", help="The professional card's PIN")]
FacilityCode = Annotated[str, typer.Option(envvar="LABES_FACILITY", help="The facility's code")]
Queue = Annotated[Path, typer.Option(envvar="LABES_QUEUE", help="Local queue of care sheets waiting for the link")]
PatientFile = Annotated[Path | None, typer.Option("--patient", help="The patient's card file")]
ContentFile = Annotated[Path, typer.Option("--content", help="JSON file of the content ('-' for standard input)")]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _terminal(server: str, card: Path, pin: str | None, facility: str, queue: Path | None = None):
    from labes.cards.tokens import PinError, VirtualCard
    from labes.terminal import Terminal

    try:
        professional = VirtualCard.load(card, pin=pin)
    except (OSError, ValueError, PinError) as exc:
        _fail(f"{card}: {exc}")
    if queue is not None:
        queue.parent.mkdir(parents=True, exist_ok=True)
    return Terminal(server, facility=facility, card=professional, queue=queue)


def _patient(path: Path | None):
    from labes.cards.tokens import VirtualCard

    if path is None:
        return None
    try:
        return VirtualCard.load(path)
    except (OSError, ValueError) as exc:
        _fail(f"{path}: {exc}")


def _content(path: Path) -> dict[str, Any]:
    try:
        text = typer.get_text_stream("stdin").read() if str(path) == "-" else path.read_text("utf-8")
        value = json.loads(text)
    except (OSError, ValueError) as exc:
        _fail(f"{path}: not a JSON file ({exc})")
    if not isinstance(value, dict):
        _fail(f"{path}: the content must be a JSON object")
    return value


def _run(call) -> None:
    from labes.terminal import FundUnreachable, Refused

    try:
        result = call()
    except Refused as exc:
        typer.echo(json.dumps(exc.problem, ensure_ascii=False, indent=2))
        raise typer.Exit(2) from None
    except FundUnreachable as exc:
        _fail(str(exc))
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2, default=str))


@app.command()
def rights(patient: PatientFile, facility: FacilityCode, card: CardFile, pin: Pin = None,
           server: Server = "http://127.0.0.1:8000",
           act: Annotated[str | None, typer.Option(help="Price this act instead of the standard one")] = None) -> None:
    """Check the rights of the patient whose card is in the reader."""
    terminal = _terminal(server, card, pin, facility)
    _run(lambda: terminal.rights_check(_patient(patient), act=act))


@app.command()
def sheet(patient: PatientFile, content: ContentFile, facility: FacilityCode, card: CardFile, pin: Pin = None,
          server: Server = "http://127.0.0.1:8000", queue: Queue = Path("var/terminal/queue.sqlite")) -> None:
    """Send a care sheet (consultation, dental, lab, imaging, hospital, physio); queued if the fund is unreachable."""
    terminal = _terminal(server, card, pin, facility, queue)
    _run(lambda: terminal.send_care_sheet(_patient(patient), _content(content)))


@app.command()
def flush(facility: FacilityCode, card: CardFile, pin: Pin = None, server: Server = "http://127.0.0.1:8000",
          queue: Queue = Path("var/terminal/queue.sqlite")) -> None:
    """Send the care sheets waiting in the local queue, each exactly once."""
    terminal = _terminal(server, card, pin, facility, queue)
    _run(lambda: {"answers": terminal.flush(), "still_waiting": len(terminal.queue)})


@app.command()
def prescribe(patient: PatientFile, content: ContentFile, facility: FacilityCode, card: CardFile, pin: Pin = None,
              server: Server = "http://127.0.0.1:8000",
              qr: Annotated[Path | None, typer.Option(help="Write the patient's QR code (SVG) here")] = None) -> None:
    """Issue an e-prescription signed with the doctor's and the patient's cards."""
    terminal = _terminal(server, card, pin, facility)

    def call():
        issued = terminal.prescribe(_patient(patient), _content(content))
        if qr is not None:
            qr.write_text(issued.pop("qr_svg"), "utf-8")
        else:
            issued.pop("qr_svg")
        return issued

    _run(call)


@app.command("open")
def open_(prescription: Annotated[str, typer.Option(help="The prescription's number")], facility: FacilityCode,
          card: CardFile, patient: PatientFile = None, pin: Pin = None, server: Server = "http://127.0.0.1:8000",
          access_code: Annotated[str | None, typer.Option(help="The access code from the patient's QR code")] = None) -> None:
    """Open a prescription at this pharmacy with the patient's card or the access code."""
    terminal = _terminal(server, card, pin, facility)
    _run(lambda: terminal.open_prescription(prescription, patient_card=_patient(patient), access_code=access_code))


@app.command()
def dispense(prescription: Annotated[str, typer.Option(help="The prescription's number")],
             line: Annotated[list[str], typer.Option(help="LINE_NO:QUANTITY[:GENERIC_CODE], repeatable")],
             facility: FacilityCode, card: CardFile, patient: PatientFile = None, pin: Pin = None,
             server: Server = "http://127.0.0.1:8000") -> None:
    """Dispense lines of a prescription and send the care sheet."""
    lines = []
    for item in line:
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0].isdigit() or not parts[1].isdigit():
            _fail(f"--line {item!r}: expected LINE_NO:QUANTITY or LINE_NO:QUANTITY:GENERIC_CODE")
        entry: dict[str, Any] = {"line_no": int(parts[0]), "quantity": int(parts[1])}
        if len(parts) == 3:
            entry["code"] = parts[2]
        lines.append(entry)
    terminal = _terminal(server, card, pin, facility)
    _run(lambda: terminal.dispense(prescription, lines, patient_card=_patient(patient)))


@app.command()
def status(facility: FacilityCode, card: CardFile, pin: Pin = None, server: Server = "http://127.0.0.1:8000",
           number: Annotated[list[str] | None, typer.Option(help="Care sheet numbers (default: the last 30 days)")] = None) -> None:
    """Read the statuses of this facility's care sheets."""
    terminal = _terminal(server, card, pin, facility)
    _run(lambda: {"items": terminal.care_sheet_status(number or [])})


@app.command("my-sheets")
def my_sheets(patient: Annotated[Path, typer.Option("--patient", help="The insured's own card file")],
              server: Server = "http://127.0.0.1:8000",
              since: Annotated[str | None, typer.Option(help="Care from this day, YYYY-MM-DD (default: a year back)")] = None) -> None:
    """The insured's side: read your care sheets (your family's, as its insured member) with your own card alone."""
    from datetime import date

    from labes.terminal import Insured

    try:
        day = date.fromisoformat(since) if since else None
    except ValueError:
        _fail(f"--since {since!r}: expected a date, YYYY-MM-DD")
    insured = Insured(server, card=_patient(patient))
    _run(lambda: insured.care_sheets(since=day))


@app.command()
def sign(action: Annotated[str, typer.Argument(help="rights-check, care-sheet, prescribe, dispense, …")],
         content: ContentFile, facility: FacilityCode, card: CardFile, patient: PatientFile = None, pin: Pin = None,
         challenge: Annotated[str | None, typer.Option(help="A challenge from POST /api/v1/care/challenges")] = None,
         time: Annotated[str | None, typer.Option(help="Sign as of this UTC time (2026-11-29T10:00:00Z)")] = None) -> None:
    """Print the signed request body of ACTION, to send with any HTTP client (see docs/protocol.md)."""
    from datetime import UTC, datetime

    from labes.care.protocol import ACTIONS

    if action not in ACTIONS:
        _fail(f"unknown action {action!r}; actions are {', '.join(ACTIONS)}")
    when = datetime.strptime(time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if time else None
    terminal = _terminal(os.environ.get("LABES_SERVER", "http://127.0.0.1:8000"), card, pin, facility)
    data = _content(content)
    body = terminal.sign(action, data, patient_card=_patient(patient), challenge=challenge,
                         client_key=data.get("client_key"), now=when)
    typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
