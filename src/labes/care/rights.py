"""The rights check at the point of care (vérification des droits en ligne).

Who the patient is, covered or not and why, care scheme and family doctor, chronic diseases covered,
Amen level, what remains of the family's annual ceiling, and what the patient will pay for the standard
act at this facility — priced by the same adjudication that will settle the care sheet.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from labes.care.patients import PatientFile, patient_file
from labes.care.sheets import patient_context, provider_context
from labes.care.transactions import Verified
from labes.claims import adjudication as adj
from labes.claims.ruleset import ruleset
from labes.errors import InvalidInput
from labes.registry.reference import chronic_disease_names
from labes.security import audit

SHEET_KIND_OF_ACT = {"consultation": "consultation", "dental": "dental", "physio": "physio", "lab": "lab",
                     "imaging": "imaging", "hospital": "hospital", "procedure": "hospital"}


def standard_act(rules, professional, *, is_family_doctor: bool) -> str | None:
    """Return the code of the act this professional bills most: the GP, family-doctor or specialist consultation,
    the dental visit, a physiotherapy session."""
    if professional.kind == "general_practitioner":
        code = "CMF" if is_family_doctor else "C"
    elif professional.kind == "physiotherapist":
        code = next((c for c, act in sorted(rules.acts.items()) if act.kind == "physio"), None)
    else:
        code = {"specialist": "CS", "dentist": "CD"}.get(professional.kind)
    return code if code in rules.acts else None


def _price(verified: Verified, patient: PatientFile, context: adj.PatientContext, code: str) -> dict[str, Any]:
    rules = ruleset(verified.care_day)
    act = rules.acts.get(code)
    if act is None:
        raise InvalidInput(f"{code} is not an act of the fund's nomenclature.", field="content.act")
    sheet_kind = SHEET_KIND_OF_ACT.get(act.kind, "consultation")
    claim = adj.Claim(number="(estimate)", care_date=verified.care_day, last_care_date=verified.care_day,
                      submitted_on=verified.care_day, kind=sheet_kind,
                      lines=(adj.ClaimLine(code=code, kind="act", quantity=1, unit_price_millimes=act.tariff_millimes),),
                      diagnoses=(), referral=True, approvals=(), cited_approval=None)
    provider = provider_context(verified.professional, verified.facility, sheet_kind=sheet_kind, on=verified.care_day)
    usage = adj.Usage(ceiling_used_millimes=patient.ceiling_used_millimes, copay_used_millimes=patient.copay_used_millimes)
    decision = adj.adjudicate(claim, context, provider, usage, rules)
    return {"code": code, "label": act.label_fr, "tariff_millimes": act.tariff_millimes, "status": decision.status,
            "fund_millimes": decision.fund_millimes, "patient_millimes": decision.patient_millimes,
            "payee": decision.payee, "reasons": list(decision.reasons),
            "explanation": [step.to_dict() for step in decision.explanation]}


def ceiling(patient: PatientFile, context: adj.PatientContext, on: date) -> dict[str, Any]:
    """Return the family's annual ceiling, used and remaining (in the schemes the rule data puts under a ceiling)."""
    rules = ruleset(on)
    if patient.scheme not in rules.ceiling.schemes:
        return {"applies": False, "year": on.year}
    total = adj.family_ceiling_millimes(context, rules)
    used = patient.ceiling_used_millimes
    return {"applies": True, "year": on.year, "total_millimes": total, "used_millimes": used,
            "remaining_millimes": max(total - used, 0)}


def check(session: Session, *, verified: Verified, act: str | None = None) -> dict[str, Any]:
    """Answer a rights check for the patient whose card signed."""
    on = verified.care_day
    patient = verified.patient_file  # read with the cards, on the care day (signed_route(patient_file=True)), or now
    if patient is None:
        patient = patient_file(session, person=verified.patient, on=on)
    person = patient.person
    rules = ruleset(on)
    doctor = patient.family_doctor
    is_family_doctor = doctor is not None and doctor.id == verified.professional.id
    code = act or standard_act(rules, verified.professional, is_family_doctor=is_family_doctor)
    names = chronic_disease_names()
    context = patient_context(patient, care_date=on)  # adjudication's view of the patient: for the ceiling and the price
    answer = {
        "checked_at": verified.now,
        "card": verified.patient_card.serial,
        "patient": {"name_lat": f"{person.first_name_lat} {person.last_name_lat}",
                    "name_ar": f"{person.first_name_ar} {person.last_name_ar}", "birth_date": person.birth_date,
                    "sex": person.sex, "role": patient.role, "rank": patient.rank,
                    "social_id": patient.member.social_id if patient.member else None},
        "covered": patient.covered or patient.amen_covered,
        "reason": patient.reason,
        "covered_until": patient.covered_until,
        "care_scheme": patient.scheme,
        "family_doctor": {"licence": doctor.licence, "name": doctor.name_lat} if doctor else None,
        "is_family_doctor": is_family_doctor,
        "chronic_diseases": [{"code": c.code, "name": names.get(c.code, c.code), "icd10": c.icd10,
                              "valid_to": c.valid_to} for c in patient.chronic],
        "amen": {"number": patient.amen.number, "level": patient.amen.level, "covered": patient.amen_covered,
                 "valid_to": patient.amen.valid_to} if patient.amen is not None else None,
        "ceiling": ceiling(patient, context, on),
        "standard_act": _price(verified, patient, context, code) if code else None,
    }
    audit.record(session, actor=verified.actor, action="care:rights:check", entity_type="person", entity_id=person.id,
                 after={"card": verified.patient_card.serial, "facility": verified.facility.code,
                        "covered": answer["covered"]})
    return answer
