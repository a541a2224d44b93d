"""One day at the point of care, end to end, through the API and the terminal SDK.

A family doctor checks a patient's rights, consults and prescribes; a pharmacist dispenses a generic;
both care sheets are adjudicated with the amounts the rule data gives; a payment run pays each once; the
doctor's annual certificate shows the tax withheld at source, sealed by the fund.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select

from labes.cards.crypto import load_authority
from labes.care.models import CareSheet
from labes.care.transactions import local_day
from labes.claims.certificates import attached_data, issue_certificate, verify_certificate_code
from labes.claims.payments import run_payments
from labes.claims.ruleset import ruleset
from tests import factories


def _percent(amount: int, percent: Decimal) -> int:
    return int((Decimal(amount) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_a_day_at_the_point_of_care(world, session, keys_dir, tmp_path):
    today = local_day(datetime.now(UTC))  # the fund's day is Tunisia's
    rules = ruleset(today)
    patient, doctor, pharmacy = world.cards["patient"], world.doctor_at_clinic, world.pharmacy_terminal

    # The family doctor checks rights: covered, private scheme, they are the family doctor, and the
    # price of their consultation is the tariff less the private-scheme copayment.
    consultation = rules.acts["CMF"]
    copay = rules.copayment("private", kind="consultation", code="CMF").amount_millimes
    rights = doctor.rights_check(patient)
    assert rights["covered"] and rights["care_scheme"] == "private" and rights["is_family_doctor"]
    assert rights["standard_act"]["code"] == "CMF"
    assert rights["standard_act"]["patient_millimes"] == copay
    assert rights["standard_act"]["fund_millimes"] == consultation.tariff_millimes - copay
    assert rights["ceiling"]["remaining_millimes"] == rights["ceiling"]["total_millimes"]

    # The consultation's care sheet: accepted, third-party payment to the doctor, the copayment for the patient.
    visit = doctor.send_care_sheet(patient, {"kind": "consultation", "care_date": today.isoformat(),
                                             "diagnoses": ["J06.9"], "lines": [{"code": "CMF"}]})
    assert visit["status"] == "accepted" and visit["payee"] == "provider"
    assert (visit["billed_millimes"], visit["fund_millimes"], visit["patient_millimes"]) == \
        (consultation.tariff_millimes, consultation.tariff_millimes - copay, copay)
    assert visit["visit"].startswith("VS-")

    # The e-prescription: two boxes of a brand; the pharmacist gives its cheapest generic.
    prescription = doctor.prescribe(patient, {"diagnoses": ["J06.9"], "lines": [
        {"code": "500118", "quantity": 2, "dose": "1 g twice a day", "duration_days": 7}]})
    assert prescription["state"] == "issued" and prescription["qr_payload"].startswith(f"LBRX1|{prescription['number']}|")
    brand = rules.drugs["500118"]
    generic = min((d for d in rules.drugs.values() if d.generic_group == brand.generic_group),
                  key=lambda d: d.public_price_millimes)
    dispensed = pharmacy.dispense(prescription["number"], [{"line_no": 1, "quantity": 2, "code": generic.code}],
                                  patient_card=patient)
    assert dispensed["prescription_state"] == "completed"
    sheet = dispensed["care_sheet"]
    billed = 2 * generic.public_price_millimes
    fund = _percent(2 * min(generic.public_price_millimes, generic.reference_tariff_millimes),
                    rules.drug_rate_percent[generic.category])
    assert sheet["status"] == "accepted"
    assert (sheet["billed_millimes"], sheet["fund_millimes"], sheet["patient_millimes"]) == (billed, fund, billed - fund)
    # Pharmacists suspended third-party payment (RULES.md, from 08/12/2025): the fund reimburses the insured.
    assert sheet["payee"] == "insured"

    # The family's ceiling now counts both fund shares.
    assert doctor.rights_check(patient)["ceiling"]["used_millimes"] == visit["fund_millimes"] + fund

    # The payment run pays each sheet once: the doctor with tax withheld at source, the insured without.
    period = f"{today:%Y-%m}"
    first = run_payments(session, actor=factories.ACTOR, period=period, paid_on=today, out_dir=tmp_path / "pay")
    by_kind = {s.payee_kind: s for s in first.statements}
    withheld = _percent(visit["fund_millimes"], rules.tax_withheld_percent["actual"])
    assert by_kind["professional"].gross_millimes == visit["fund_millimes"]
    assert by_kind["professional"].tax_withheld_millimes == withheld
    assert by_kind["professional"].net_millimes == visit["fund_millimes"] - withheld
    assert by_kind["person"].gross_millimes == fund and by_kind["person"].tax_withheld_millimes == 0
    again = run_payments(session, actor=factories.ACTOR, period=period, paid_on=today, out_dir=tmp_path / "pay")
    assert again.empty
    assert session.scalar(select(func.count()).select_from(CareSheet).where(CareSheet.status == "paid")) == 2

    # The doctor's annual certificate shows what was withheld, sealed by the fund.
    seal = load_authority(keys_dir, "seal")
    certificate, code = issue_certificate(session, provider=world.doctor.licence, year=today.year, seal=seal,
                                          path=tmp_path / "certificate.pdf", issued_on=today)
    assert certificate.withheld_millimes == withheld and certificate.gross_millimes == visit["fund_millimes"]
    attached = attached_data((tmp_path / "certificate.pdf").read_bytes())
    assert verify_certificate_code(seal.public_key, code, attached) == certificate.id
