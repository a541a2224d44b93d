"""A point of care to try from a shell: a family doctor, a pharmacist, a patient, their virtual card files.

`labes demo` writes the card files to `var/cards/` and prints the `labes pos` commands that use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from labes.cards import service as cards
from labes.cards.crypto import load_authority
from labes.cards.models import PickupPoint
from labes.registry.models import CoveragePeriod, Facility, Member, Practice, Professional
from labes.security.audit import Actor

DEMO_PIN = "1234"


@dataclass(frozen=True)
class DemoPointOfCare:
    doctor_card: Path
    pharmacist_card: Path
    patient_card: Path
    clinic: str
    pharmacy: str
    pin: str = DEMO_PIN


def _card_file(session: Session, *, actor: Actor, authority, point: PickupPoint, holder: cards.Holder, pin: str | None,
               path: Path) -> None:
    live = cards.live_card(session, holder)
    if live is not None:
        if path.exists():
            return
        # The demo's card file was lost: a replacement is what a real holder would get too.
        cards.move(session, actor=actor, card=live, event="block", details={"reason": "lost"})
    issued = cards.issue_card(session, actor=actor, authority=authority, holder=holder, pin=pin, on_the_spot_at=point,
                              replaces=live)
    path.write_bytes(issued.card_file)
    path.chmod(0o600)


def load_point_of_care(session: Session, *, actor: Actor, keys_dir: Path, out: Path) -> DemoPointOfCare | None:
    """Give a family doctor, a pharmacist and one of the doctor's patients card files (idempotent)."""
    row = session.execute(
        select(Member, Professional, Facility)
        .join(CoveragePeriod, CoveragePeriod.member_id == Member.id)
        .join(Professional, Professional.id == CoveragePeriod.family_doctor_id)
        .join(Practice, Practice.professional_id == Professional.id)
        .join(Facility, Facility.id == Practice.facility_id)
        .where(Member.status == "active", CoveragePeriod.scheme == "private", Professional.contract_status == "active")
        .order_by(Member.social_id).limit(1)).first()
    pharmacy_row = session.execute(
        select(Professional, Facility).join(Practice, Practice.professional_id == Professional.id)
        .join(Facility, Facility.id == Practice.facility_id)
        .where(Professional.kind == "pharmacist", Facility.kind == "pharmacy", Facility.contract_status == "active")
        .order_by(Facility.code).limit(1)).first()
    point = session.scalar(select(PickupPoint).where(PickupPoint.kind.in_(("fund_centre", "mobile_centre")))
                           .order_by(PickupPoint.code).limit(1))
    if row is None or pharmacy_row is None or point is None:
        return None
    member, doctor, clinic = row
    pharmacist, pharmacy = pharmacy_row
    out.mkdir(parents=True, exist_ok=True)
    authority = load_authority(keys_dir)
    demo = DemoPointOfCare(out / "doctor.card", out / "pharmacist.card", out / "patient.card", clinic.code, pharmacy.code)
    _card_file(session, actor=actor, authority=authority, point=point, pin=DEMO_PIN, path=demo.doctor_card,
               holder=cards.resolve_holder(session, card_type="professional", licence=doctor.licence))
    _card_file(session, actor=actor, authority=authority, point=point, pin=DEMO_PIN, path=demo.pharmacist_card,
               holder=cards.resolve_holder(session, card_type="professional", licence=pharmacist.licence))
    _card_file(session, actor=actor, authority=authority, point=point, pin=None, path=demo.patient_card,
               holder=cards.resolve_holder(session, card_type="labes", person_id=member.person_id))
    return demo


def instructions(demo: DemoPointOfCare) -> list[str]:
    """Return the shell lines that play the doctor's and the pharmacist's terminals with the demo cards, the
    insured reading their care sheets with their own card, then the fund paying the providers."""
    doctor = f"--card {demo.doctor_card} --pin {demo.pin} --facility {demo.clinic}"
    pharmacist = f"--card {demo.pharmacist_card} --pin {demo.pin} --facility {demo.pharmacy}"
    return [
        f"labes pos rights {doctor} --patient {demo.patient_card}",
        "echo '{\"kind\":\"consultation\",\"care_date\":\"'$(date +%F)'\",\"diagnoses\":[\"J06.9\"],\"lines\":[{\"code\":\"CMF\"}]}' > /tmp/sheet.json",
        f"labes pos sheet {doctor} --patient {demo.patient_card} --content /tmp/sheet.json",
        "echo '{\"diagnoses\":[\"J06.9\"],\"lines\":[{\"code\":\"500118\",\"quantity\":2,\"dose\":\"1 g twice a day\",\"duration_days\":7}]}' > /tmp/rx.json",
        f"labes pos prescribe {doctor} --patient {demo.patient_card} --content /tmp/rx.json --qr /tmp/rx.svg",
        f"labes pos dispense {pharmacist} --patient {demo.patient_card} --prescription <RX number> --line 1:2:500129",
        f"labes pos my-sheets --patient {demo.patient_card}",
        "labes payments run --period $(date +%Y-%m) --paid-on $(date -d '+30 days' +%F)",
        "labes payments late --on $(date -d '+30 days' +%F)   # the doctor's sheet, paid after its 15 days",
    ]
