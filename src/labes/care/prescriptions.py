"""E-prescriptions: issued with both cards, opened at one pharmacy, dispensed in part or in full, never twice.

States: issued → in_progress (opened at one pharmacy) → partly_dispensed → completed; cancelled by the
prescriber; expired once past its validity. The patient's paper carries a QR code with the number and a
one-time access code, so that only the holder of the paper or of the card can redeem it.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import segno
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labes.care.models import Prescription, PrescriptionLine
from labes.care.schemas import PrescriptionCancelContent, PrescriptionContent, PrescriptionOpenContent
from labes.care.transactions import Verified, digest_of_code, next_number, utc
from labes.claims.ruleset import RuleSet, ruleset
from labes.errors import Conflict, InvalidInput, NotFound, NotPermitted, RuleViolation
from labes.registry.models import Facility
from labes.security import audit

OPEN_STATES = ("issued", "in_progress", "partly_dispensed")
PERFORMED_BY = {"medicines": "pharmacist", "lab": "biologist", "imaging": "radiologist"}
QR_PREFIX = "LBRX1"
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud or typed from paper


@dataclass(frozen=True)
class Issued:
    prescription: Prescription
    access_code: str  # shown once, on the patient's paper; only its hash is kept
    qr_payload: str
    qr_svg: str


def _check_lines(rules: RuleSet, kind: str, lines) -> None:
    for index, line in enumerate(lines):
        if kind == "medicines":
            if line.code not in rules.drugs:
                raise InvalidInput(f"Line {index + 1}: {line.code} is not on the national medicines list.",
                                   field=f"content.lines.{index}.code")
        else:
            act = rules.acts.get(line.code)
            if act is None or act.kind != kind:
                raise InvalidInput(f"Line {index + 1}: {line.code} is not a {kind} act of the fund's nomenclature.",
                                   field=f"content.lines.{index}.code")


def qr_svg(payload: str) -> str:
    """Return the QR code of `payload` as an SVG document."""
    out = io.BytesIO()
    segno.make(payload, error="m").save(out, kind="svg", scale=4, xmldecl=False)  # a standalone SVG (xmlns)
    return out.getvalue().decode()


def prescribe(session: Session, *, verified: Verified, content: PrescriptionContent) -> Issued:
    """Record an e-prescription signed by the prescriber's and the patient's cards."""
    rules = ruleset(verified.care_day)
    _check_lines(rules, content.kind, content.lines)
    number = next_number(session, series="RX", year=verified.care_day.year)
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    prescription = Prescription(
        number=number, kind=content.kind, state="issued", patient_person_id=verified.patient.id,
        prescriber_id=verified.professional.id, facility_id=verified.facility.id, issued_at=verified.now,
        valid_until=verified.care_day + timedelta(days=content.valid_days), diagnoses=content.diagnoses,
        access_code_hash=digest_of_code(code), access_code_used=False, content=verified.content,
        content_digest=verified.transaction.content_digest, signed_transaction=verified.signed,
    )
    session.add(prescription)
    session.flush()
    session.add_all(PrescriptionLine(prescription_id=prescription.id, line_no=i, code=line.code, quantity=line.quantity,
                                     fills=1 + line.renewals, dose=line.dose, duration_days=line.duration_days,
                                     substitutable=line.substitutable, dispensed=0)
                    for i, line in enumerate(content.lines, start=1))
    session.flush()
    audit.record(session, actor=verified.actor, action="care:prescription:issue", entity_type="prescription",
                 entity_id=number, after={"kind": content.kind, "lines": len(content.lines),
                                          "patient_card": verified.patient_card.serial,
                                          "content_digest": prescription.content_digest})
    payload = f"{QR_PREFIX}|{number}|{code}"
    return Issued(prescription, code, payload, qr_svg(payload))


def get_or_raise(session: Session, number: str, *, lock: bool = False) -> Prescription:
    """Return the prescription `number` (locked for update when `lock`), or raise NotFound."""
    query = select(Prescription).where(Prescription.number == number.strip().upper())
    if lock:
        query = query.with_for_update()
    prescription = session.scalar(query)
    if prescription is None:
        raise NotFound(f"No prescription {number}.", field="content.prescription")
    return prescription


def lines_of(session: Session, prescription: Prescription) -> list[PrescriptionLine]:
    return list(session.scalars(select(PrescriptionLine).where(PrescriptionLine.prescription_id == prescription.id)
                                .order_by(PrescriptionLine.line_no)))


def expire_if_due(prescription: Prescription, today: date) -> None:
    """Mark an open prescription expired once its validity has passed."""
    if prescription.state in OPEN_STATES and prescription.valid_until < today:
        prescription.state = "expired"


def refuse_closed(prescription: Prescription) -> None:
    """Refuse to act on a cancelled, expired or fully dispensed prescription, saying which."""
    if prescription.state == "cancelled":
        raise RuleViolation(f"Prescription {prescription.number} was cancelled by its prescriber "
                            f"({prescription.cancel_reason}).", field="content.prescription")
    if prescription.state == "expired":
        raise RuleViolation(f"Prescription {prescription.number} expired on {prescription.valid_until.isoformat()}; "
                            "the patient needs a new one.", field="content.prescription")
    if prescription.state == "completed":
        raise Conflict(f"Prescription {prescription.number} has been dispensed in full: never twice.",
                       field="content.prescription")


def refuse_other_profession(prescription: Prescription, verified: Verified) -> None:
    """Refuse a professional who does not carry out this kind of prescription (medicines, lab or imaging orders)."""
    performer = PERFORMED_BY[prescription.kind]
    if verified.professional.kind != performer:
        raise NotPermitted(f"A {prescription.kind} prescription is carried out by a {performer}.",
                           field="transaction.payload.professional_card")


def open_at_pharmacy(session: Session, *, verified: Verified, content: PrescriptionOpenContent) -> Prescription:
    """Open a prescription at this pharmacy (or lab, imaging centre): the patient's card or the paper's access code.

    The first pharmacy to open it holds it: another pharmacy is refused until it has been dispensed.
    """
    prescription = get_or_raise(session, content.prescription, lock=True)
    expire_if_due(prescription, verified.care_day)
    refuse_closed(prescription)
    refuse_other_profession(prescription, verified)  # or a pharmacy would hold a lab order away from the labs
    if verified.patient is not None:
        if verified.patient.id != prescription.patient_person_id:
            raise NotPermitted("This prescription is not for the holder of the card that signed.", field="content.prescription")
    elif content.access_code is None:
        raise NotPermitted("Open a prescription with the patient's card or the access code printed on its QR code.",
                           field="content.access_code")
    elif prescription.access_code_used or digest_of_code(content.access_code.strip().upper()) != prescription.access_code_hash:
        raise NotPermitted("The access code is wrong or has already been used.", field="content.access_code")
    if prescription.dispenser_facility_id not in (None, verified.facility.id):
        holder = session.get(Facility, prescription.dispenser_facility_id)
        raise Conflict(f"Prescription {prescription.number} is being dispensed at {holder.name_lat}.",
                       field="content.prescription")
    before = prescription.state
    prescription.dispenser_facility_id = verified.facility.id
    if verified.patient is None:
        prescription.access_code_used = True
    if prescription.state == "issued":
        prescription.state = "in_progress"
    session.flush()
    audit.record(session, actor=verified.actor, action="care:prescription:open", entity_type="prescription",
                 entity_id=prescription.number, before={"state": before},
                 after={"state": prescription.state, "facility": verified.facility.code,
                        "with": "card" if verified.patient else "access code"})
    return prescription


def cancel(session: Session, *, verified: Verified, content: PrescriptionCancelContent) -> Prescription:
    """Cancel a prescription: its prescriber only, and only what has not been dispensed."""
    prescription = get_or_raise(session, content.prescription, lock=True)
    if prescription.prescriber_id != verified.professional.id:
        raise NotPermitted("Only the prescriber can cancel a prescription.", field="content.prescription")
    expire_if_due(prescription, verified.care_day)
    refuse_closed(prescription)
    before = prescription.state
    prescription.state, prescription.cancelled_at, prescription.cancel_reason = "cancelled", verified.now, content.reason
    session.flush()
    audit.record(session, actor=verified.actor, action="care:prescription:cancel", entity_type="prescription",
                 entity_id=prescription.number, before={"state": before},
                 after={"state": "cancelled", "reason": content.reason})
    return prescription


def take(session: Session, *, line: PrescriptionLine, quantity: int) -> bool:
    """Count `quantity` as dispensed on `line` if that stays within what was prescribed (all fills); say if it did.

    A guarded UPDATE, so two pharmacies racing for the same boxes cannot both succeed.
    """
    limit = line.quantity * line.fills
    done = session.execute(update(PrescriptionLine)
                           .where(PrescriptionLine.id == line.id, PrescriptionLine.dispensed + quantity <= limit)
                           .values(dispensed=PrescriptionLine.dispensed + quantity)
                           .returning(PrescriptionLine.dispensed)).first()
    if done is not None:
        line.dispensed = done[0]
    return done is not None


def remaining(line: PrescriptionLine) -> int:
    return line.quantity * line.fills - line.dispensed


def view(session: Session, prescription: Prescription, *, today: date) -> dict[str, Any]:
    """Return the prescription with each line's medicine and what remains to dispense."""
    rules = ruleset(today)
    out_lines = []
    for line in lines_of(session, prescription):
        item: dict[str, Any] = {"line_no": line.line_no, "code": line.code, "quantity": line.quantity,
                                "fills": line.fills, "dose": line.dose, "duration_days": line.duration_days,
                                "substitutable": line.substitutable, "dispensed": line.dispensed,
                                "remaining": remaining(line)}
        drug = rules.drugs.get(line.code)
        if drug is not None:
            item["label"] = f"{drug.brand} {drug.strength} ({drug.form})"
            item["generics"] = sorted(code for code, other in rules.drugs.items()
                                      if other.generic_group == drug.generic_group and code != line.code) \
                if line.substitutable else []
        elif (act := rules.acts.get(line.code)) is not None:
            item["label"] = act.label_fr
        out_lines.append(item)
    return {"number": prescription.number, "kind": prescription.kind, "state": prescription.state,
            "issued_at": utc(prescription.issued_at), "valid_until": prescription.valid_until,
            "diagnoses": prescription.diagnoses, "content_digest": prescription.content_digest, "lines": out_lines}
