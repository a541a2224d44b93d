"""Care sheets (bulletins de soins): received, adjudicated at once by the fund's rules, stored with the decision.

Submission is idempotent on the terminal's client key: the same key returns the same sheet and answer,
never a second sheet. The technical acknowledgement (number, time received, digest) and the business
answer (accepted or rejected, amounts, coded reasons, which rule said so) come back together; the sheet's
status can be read again later. A rejected sheet is corrected under its own number.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, insert, inspect, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from labes.care.models import CareSheet, CareSheetRevision, Dispensation, FamilyUsage, Millimes, Prescription, Visit
from labes.care.patients import PatientFile, patient_file
from labes.care.schemas import CareSheetContent
from labes.care.transactions import Verified, VerifiedInsured, local_day, next_number, utc
from labes.claims import adjudication as adj
from labes.claims.models import PriorApproval
from labes.claims.ruleset import ruleset
from labes.db import read, write
from labes.errors import Conflict, InvalidInput, NotFound, NotPermitted, RuleViolation
from labes.registry.models import Facility, Member, Person, Professional
from labes.security import audit

REFERRAL_DAYS = 90  # a family doctor's referral to a specialist is good for this long (default)
PUBLIC_KINDS = ("primary_health_centre", "district_hospital", "regional_hospital", "university_hospital", "cnss_polyclinic")
_CATEGORY_BY_PROFESSION = {"pharmacist": "pharmacy", "biologist": "laboratory", "radiologist": "imaging",
                           "physiotherapist": "physiotherapist", "dentist": "dentist"}
_FACILITY_PAYEES = ("pharmacy", "laboratory", "imaging", "clinic", "hospital")


@dataclass(frozen=True)
class Line:
    """A billed line, as the adjudication sees it."""

    code: str
    kind: str  # act, drug
    quantity: int
    unit_price_millimes: int


def provider_context(professional: Professional, facility: Facility, *, sheet_kind: str, on: date) -> adj.ProviderContext:
    """Describe who bills: the category that sets the payment deadline and third-party rules, the sector, the contract."""
    category = _CATEGORY_BY_PROFESSION.get(professional.kind)
    if category is None:  # a doctor
        category = "hospital" if facility.sector == "public" and sheet_kind == "hospital" else \
            "clinic" if sheet_kind == "hospital" else "doctor"
    public = facility.sector == "public" or facility.kind in PUBLIC_KINDS
    if public:
        contract_active = True  # public facilities work for the fund by law, not by contract
    else:
        holder = professional if category in ("doctor", "dentist", "physiotherapist") else facility
        contract_active = holder.contract_status == "active" and (holder.contract_start is None or holder.contract_start <= on) \
            and (holder.contract_end is None or on <= holder.contract_end)
    return adj.ProviderContext(
        category=category, professional_kind=professional.kind, specialty=professional.specialty,
        professional_id=str(professional.id), facility_sector="public" if public else "private",
        facility_kind=facility.kind, contract_active=contract_active,
        tax_regime=professional.tax_regime or "actual",
    )


def patient_context(patient: PatientFile, *, care_date: date) -> adj.PatientContext:
    return adj.PatientContext(
        scheme=patient.scheme, regime=patient.member.regime if patient.member else None,
        covered=patient.covered or patient.amen_covered, family_size=max(patient.family_size, 1),
        dependent_parents=patient.dependent_parents, pregnancy=False,
        chronic_diseases=frozenset(c.code for c in patient.chronic),
        amen_level=patient.amen.level if patient.amen is not None and patient.amen_covered else None,
        family_doctor_id=str(patient.family_doctor.id) if patient.family_doctor else None,
    )


def _needs_referral(patient: PatientFile, professional) -> bool:
    """Only a private-scheme patient seen by a doctor other than their family doctor needs a referral on file."""
    return patient.scheme == "private" and professional.kind in ("specialist", "general_practitioner") and \
        (patient.family_doctor is None or patient.family_doctor.id != professional.id)


# Built once (a referral names a specialty: it opens that specialty, not every specialist; only a visit
# the fund accepted counts: a rejected sheet's referral refers no one).
_REFERRALS = (select(Visit.id).join(CareSheet, CareSheet.visit_id == Visit.id)
              .where(Visit.patient_person_id == bindparam("patient"), Visit.professional_id == bindparam("doctor"),
                     Visit.care_date <= bindparam("on"), Visit.care_date >= bindparam("since"),
                     or_(CareSheet.status == "accepted", CareSheet.status == "paid")).limit(1))
_REFERRAL_TO = {"specialist": _REFERRALS.where(func.lower(Visit.referral_to) == bindparam("specialty")),
                "other": _REFERRALS.where(Visit.referral_to.is_not(None))}


def _has_referral(session: Session, patient: PatientFile, *, care_date: date, professional: Professional) -> bool:
    if patient.family_doctor is None:
        return False
    statement = _REFERRAL_TO["specialist" if professional.kind == "specialist" else "other"]
    return bool(read(session.connection(), statement, {
        "patient": patient.person.id, "doctor": patient.family_doctor.id, "on": care_date,
        "since": care_date - timedelta(days=REFERRAL_DAYS), "specialty": (professional.specialty or "").lower()}))


def _approvals(session: Session, patient: PatientFile, cited: str | None) -> tuple[adj.Approval, ...]:
    # Only the approval the sheet cites can open a listed act or drug: read that one, if any.
    if not cited:
        return ()
    rows = session.execute(select(PriorApproval.number, PriorApproval.code, PriorApproval.valid_from,
                                  PriorApproval.valid_to, PriorApproval.quantity)
                           .where(PriorApproval.number == cited.strip().upper(),
                                  PriorApproval.patient_person_id == patient.person.id,
                                  PriorApproval.state == "approved")).all()
    return tuple(adj.Approval(number=a.number, code=a.code, valid_from=a.valid_from, valid_to=a.valid_to,
                              quantity=a.quantity) for a in rows)


def _usage_upsert(insert):
    statement = insert(FamilyUsage).values(member_id=bindparam("family"), year=bindparam("in_year"),
                                           ceiling_used_millimes=0, copay_used_millimes=0, care_sheets=1)
    return (statement.on_conflict_do_update(index_elements=[FamilyUsage.member_id, FamilyUsage.year],
                                            set_={"care_sheets": statement.excluded.care_sheets + FamilyUsage.care_sheets})
            .returning(FamilyUsage.ceiling_used_millimes, FamilyUsage.copay_used_millimes))


# Built once: every adjudicated care sheet runs both.
_USAGE = {"postgresql": _usage_upsert(pg_insert), "sqlite": _usage_upsert(sqlite_insert)}
_CHARGE = (update(FamilyUsage)
           .where(FamilyUsage.member_id == bindparam("family"), FamilyUsage.year == bindparam("in_year"))
           .values(ceiling_used_millimes=FamilyUsage.ceiling_used_millimes + bindparam("ceiling", type_=Millimes),
                   copay_used_millimes=FamilyUsage.copay_used_millimes + bindparam("copay", type_=Millimes)))


def _usage(session: Session, member_id, year: int) -> adj.Usage:
    """Return the family's usage of `year`, its row created if need be and locked until commit.

    Two sheets of one family adjudicated at the same moment must not both spend the same remainder:
    one upsert both creates the row and takes its lock, and returns what has been used.
    """
    connection = session.connection()
    (used,) = read(connection, _USAGE[connection.dialect.name], {"family": member_id, "in_year": year})
    return adj.Usage(ceiling_used_millimes=used[0], copay_used_millimes=used[1])


def rules_for(on: date):
    """Return the rules in force on `on`, or refuse a date before the fund's first rule set."""
    try:
        return ruleset(on)
    except LookupError:
        raise RuleViolation(f"The fund has no rules in force on {on.isoformat()}: check the date of care.",
                            field="content.care_date") from None


def priced_lines(lines, *, on: date, kind: str) -> list[Line]:
    """Resolve each billed line against the nomenclature or the medicines list (the tariff or price by default)."""
    rules = rules_for(on)
    out = []
    for index, line in enumerate(lines):
        if kind == "pharmacy":
            drug = rules.drugs.get(line.code)
            if drug is None:
                raise InvalidInput(f"Line {index + 1}: {line.code} is not on the national medicines list.",
                                   field=f"content.lines.{index}.code")
            out.append(Line(line.code, "drug", line.quantity, line.unit_price_millimes
                            if line.unit_price_millimes is not None else drug.public_price_millimes))
        else:
            act = rules.acts.get(line.code)
            price = line.unit_price_millimes if line.unit_price_millimes is not None else (act.tariff_millimes if act else 0)
            out.append(Line(line.code, "act", line.quantity, price))
    return out


_BY_CLIENT_KEY = (select(CareSheet.id).where(CareSheet.client_key == bindparam("key"))
                  .union_all(select(CareSheetRevision.care_sheet_id).where(CareSheetRevision.client_key == bindparam("key"))))


def find_by_client_key(session: Session, client_key: str) -> CareSheet | None:
    """Return the care sheet this client key already made (or made an earlier version of), if any."""
    found = read(session.connection(), _BY_CLIENT_KEY, {"key": client_key})
    sheet_id = found[0][0] if found else None
    return session.get(CareSheet, sheet_id) if sheet_id is not None else None


def replayed(sheet: CareSheet, verified: Verified, client_key: str) -> CareSheet:
    """Return the sheet a known client key made, if this is the same provider, patient and content; else a conflict."""
    if sheet.professional_id != verified.professional.id:
        raise Conflict("This client key belongs to another provider's care sheet; use a new key.", field="content.client_key")
    if verified.patient is not None and sheet.patient_person_id != verified.patient.id:
        raise Conflict(f"The client key was already used for care sheet {sheet.number} of another patient; "
                       "a new care sheet needs a new key.", field="content.client_key")
    if sheet.client_key == client_key and sheet.content_digest != verified.transaction.content_digest:
        raise Conflict(f"The client key was already used for care sheet {sheet.number} with other content; "
                       "a new care sheet needs a new key.", field="content.client_key")
    return sheet


def adjudicate(session: Session, *, sheet: CareSheet, verified: Verified, lines: list[Line], diagnoses: list[str],
               approval: str | None, patient: PatientFile) -> None:
    """Apply the fund's rules to `sheet` and write the decision, the amounts and the family's usage."""
    rules = rules_for(sheet.care_date)
    provider = provider_context(verified.professional, verified.facility, sheet_kind=sheet.kind, on=sheet.care_date)
    claim = adj.Claim(
        number=sheet.number, care_date=sheet.care_date, last_care_date=sheet.last_care_date,
        submitted_on=local_day(verified.now), kind=sheet.kind,
        lines=tuple(adj.ClaimLine(code=l.code, kind=l.kind, quantity=l.quantity, unit_price_millimes=l.unit_price_millimes)
                    for l in lines),
        diagnoses=tuple(diagnoses),
        referral=_needs_referral(patient, verified.professional)
        and _has_referral(session, patient, care_date=sheet.care_date, professional=verified.professional),
        approvals=_approvals(session, patient, approval), cited_approval=approval,
    )
    family_usage = _usage(session, patient.member.id, sheet.care_date.year) if patient.member is not None else None
    usage = family_usage or adj.Usage(ceiling_used_millimes=0, copay_used_millimes=0)
    decision = adj.adjudicate(claim, patient_context(patient, care_date=sheet.care_date), provider, usage, rules)
    sheet.status = decision.status
    sheet.reasons = list(decision.reasons)
    sheet.decision = decision.to_dict()
    sheet.decided_at = verified.now
    sheet.billed_millimes = decision.billed_millimes
    sheet.fund_millimes = decision.fund_millimes
    sheet.patient_millimes = decision.patient_millimes
    sheet.ceiling_charged_millimes = decision.ceiling_charged_millimes
    sheet.copay_charged_millimes = decision.copay_charged_millimes
    sheet.payee = decision.payee if decision.status == "accepted" else None
    sheet.payee_kind, sheet.payee_id = _payee(decision.payee, provider, verified, patient) \
        if decision.status == "accepted" else (None, None)
    sheet.payment_due_on = local_day(verified.now) + timedelta(days=decision.payment_due_days) \
        if decision.status == "accepted" and decision.fund_millimes > 0 else None
    if approval and decision.status == "accepted" and claim.approvals:
        # An approval opens one episode of care: once a sheet citing it is accepted, it is used up.
        session.execute(update(PriorApproval).where(PriorApproval.number == claim.approvals[0].number)
                        .values(state="used", decision_note=func.coalesce(PriorApproval.decision_note, "")
                                + f" [used by {sheet.number}]"))
        audit.record(session, actor=verified.actor, action="claims:approval:use", entity_type="prior_approval",
                     entity_id=claim.approvals[0].number, before={"state": "approved"},
                     after={"state": "used", "care_sheet": sheet.number})
    if family_usage is not None and decision.status == "accepted" and \
            (decision.ceiling_charged_millimes or decision.copay_charged_millimes):
        write(session.connection(), _CHARGE, [{"family": patient.member.id, "in_year": sheet.care_date.year,
                                               "ceiling": decision.ceiling_charged_millimes,
                                               "copay": decision.copay_charged_millimes}])


def _payee(payee: str, provider: adj.ProviderContext, verified: Verified, patient: PatientFile):
    if payee == "insured":
        # Reimbursements go to the insured member of the family (or to the Amen beneficiary).
        return "person", patient.member.person_id if patient.member else patient.person.id
    if payee == "facility" or provider.category in _FACILITY_PAYEES or provider.facility_sector == "public":
        return "facility", verified.facility.id
    return "professional", verified.professional.id


def _same_client_key(verified: Verified, content: CareSheetContent) -> None:
    if verified.transaction.client_key not in (None, content.client_key):
        raise InvalidInput("The signed client key and the content's differ.", field="content.client_key")


def submit(session: Session, *, verified: Verified, content: CareSheetContent) -> CareSheet:
    """Receive a care sheet signed by both cards, adjudicate it, and return it (the same one again for a known key)."""
    return receive(session, verified=verified, content=content)[0]


def receive(session: Session, *, verified: Verified, content: CareSheetContent) -> tuple[CareSheet, bool]:
    """Like `submit`, and say whether this call made the sheet (False: its client key had already made it)."""
    _same_client_key(verified, content)
    if (existing := find_by_client_key(session, content.client_key)) is not None:
        return replayed(existing, verified, content.client_key), False
    if verified.patient is None:
        raise NotPermitted("A care sheet is signed by the patient's card too.", field="transaction.payload.patient_card")
    last = content.last_care_date or content.care_date
    if local_day(verified.transaction.time) < content.care_date:
        raise InvalidInput("The care sheet was signed before the date of care it declares.", field="content.care_date")
    number = next_number(session, series="CS", year=content.care_date.year)
    lines = priced_lines(content.lines, on=content.care_date, kind=content.kind)
    patient = patient_file(session, person=verified.patient, on=content.care_date)
    visit = None
    if content.kind in ("consultation", "dental", "physio"):
        visit = Visit(number=number.replace("CS-", "VS-", 1), patient_person_id=verified.patient.id,
                      professional_id=verified.professional.id, facility_id=verified.facility.id,
                      care_date=content.care_date, diagnoses=content.diagnoses,
                      acts=[{"code": l.code, "quantity": l.quantity} for l in content.lines],
                      referral_to=content.referral_to, created_at=verified.now)
    sheet = new_sheet(verified, number=number, client_key=content.client_key, kind=content.kind,
                       care_date=content.care_date, last_care_date=last, patient=patient)
    sheet.visit = visit
    # Decided before it is written: the sheet is written once, with its decision.
    adjudicate(session, sheet=sheet, verified=verified, lines=lines, diagnoses=content.diagnoses,
               approval=content.approval, patient=patient)
    if visit is not None:
        _insert(session, visit)
        sheet.visit_id = visit.id
    _insert(session, sheet)
    audit_sheet(session, verified, sheet, "care:care-sheet:submit")
    return sheet, True


def _insert(session: Session, row: Visit | CareSheet) -> None:
    """Write a new visit or care sheet with one Core INSERT of the attributes it was given.

    Every submitted sheet passes here, and the unit of work's bookkeeping (a flush of a visit and a sheet)
    cost more than the two statements. The object stays outside the session: it is the request's answer,
    read and never changed again.
    """
    state = inspect(row)
    if row.id is None:
        row.id = uuid.uuid4()
    values = {attr.key: state.dict[attr.key] for attr in state.mapper.column_attrs if attr.key in state.dict}
    table = type(row).__table__
    if any(column.default is not None and column.key not in values for column in table.columns):
        session.connection().execute(insert(table), values)  # SQLAlchemy fills in the defaults left out
    else:
        write(session.connection(), _insert_of(table, tuple(values)), [values])


@lru_cache(maxsize=32)
def _insert_of(table, keys: tuple[str, ...]):
    """An INSERT of these columns, built once for each set a row arrives with (labes.db.write compiles it once)."""
    return insert(table).values({key: bindparam(key) for key in keys})


def new_sheet(verified: Verified, *, number: str, client_key: str, kind: str, care_date: date, last_care_date: date,
               patient: PatientFile) -> CareSheet:
    """Return a received care sheet, not yet decided, as the signed transaction describes it."""
    return CareSheet(
        number=number, client_key=client_key, kind=kind, version=1, status="received",
        patient_person_id=patient.person.id, member_id=patient.family_id,
        amen_household_id=patient.amen.id if patient.amen is not None else None,
        professional_id=verified.professional.id, facility_id=verified.facility.id,
        care_date=care_date, last_care_date=last_care_date, signed_at=verified.transaction.time,
        received_at=verified.now, content=verified.content, content_digest=verified.transaction.content_digest,
        signed_transaction=verified.signed, reasons=[],
    )


def audit_sheet(session: Session, verified: Verified, sheet: CareSheet, action: str) -> None:
    """Record the sheet's submission or correction with its decision, under the professional who signed."""
    audit.record(session, actor=verified.actor, action=action, entity_type="care_sheet", entity_id=sheet.number,
                 after={"version": sheet.version, "status": sheet.status, "reasons": sheet.reasons,
                        "billed": sheet.billed_millimes, "fund": sheet.fund_millimes, "patient": sheet.patient_millimes,
                        "payee": sheet.payee, "content_digest": sheet.content_digest})


def get_or_raise(session: Session, number: str) -> CareSheet:
    sheet = session.scalar(select(CareSheet).where(CareSheet.number == number.strip().upper()))
    if sheet is None:
        raise NotFound(f"No care sheet {number}.", field="number")
    return sheet


def correct(session: Session, *, number: str, verified: Verified, content: CareSheetContent) -> CareSheet:
    """Resubmit a rejected care sheet under its own number; the rejected version is kept."""
    _same_client_key(verified, content)
    if (existing := find_by_client_key(session, content.client_key)) is not None:
        return replayed(existing, verified, content.client_key)
    sheet = session.scalar(select(CareSheet).where(CareSheet.number == number.strip().upper()).with_for_update())
    if sheet is None:
        raise NotFound(f"No care sheet {number}.", field="number")
    if sheet.professional_id != verified.professional.id:
        raise NotPermitted("Only the provider who sent a care sheet can correct it.", field="number")
    if sheet.status != "rejected":
        raise RuleViolation(f"Care sheet {sheet.number} is {sheet.status}; only a rejected sheet can be corrected.",
                            field="number")
    if verified.patient is None or verified.patient.id != sheet.patient_person_id:
        raise NotPermitted("The correction must be signed by the same patient's card.", field="transaction.payload.patient_card")
    if content.kind != sheet.kind:
        raise InvalidInput(f"A correction keeps the sheet's kind ({sheet.kind}).", field="content.kind")
    diagnoses = content.diagnoses
    if sheet.dispensation_id is not None:
        diagnoses = _as_dispensed(session, sheet, content)
    session.add(CareSheetRevision(care_sheet_id=sheet.id, version=sheet.version, client_key=sheet.client_key,
                                  received_at=sheet.received_at, content=sheet.content,
                                  signed_transaction=sheet.signed_transaction, status=sheet.status,
                                  reasons=sheet.reasons, decision=sheet.decision))
    session.flush()
    last = content.last_care_date or content.care_date
    lines = priced_lines(content.lines, on=content.care_date, kind=content.kind)
    patient = patient_file(session, person=verified.patient, on=content.care_date)
    sheet.version += 1
    sheet.client_key, sheet.care_date, sheet.last_care_date = content.client_key, content.care_date, last
    sheet.content, sheet.content_digest = verified.content, verified.transaction.content_digest
    sheet.signed_transaction, sheet.signed_at, sheet.received_at = verified.signed, verified.transaction.time, verified.now
    sheet.status = "received"
    if sheet.visit_id is not None:  # the visit is what the corrected sheet says, referral included
        visit = session.get(Visit, sheet.visit_id)
        visit.care_date, visit.diagnoses, visit.referral_to = content.care_date, content.diagnoses, content.referral_to
        visit.acts = [{"code": l.code, "quantity": l.quantity} for l in content.lines]
    adjudicate(session, sheet=sheet, verified=verified, lines=lines, diagnoses=diagnoses,
               approval=content.approval, patient=patient)
    session.flush()
    audit_sheet(session, verified, sheet, "care:care-sheet:correct")
    return sheet


def _as_dispensed(session: Session, sheet: CareSheet, content: CareSheetContent) -> list[str]:
    """Check that a dispensing's corrected sheet bills what was dispensed; return the diagnoses to adjudicate with.

    The medicines left the pharmacy with the dispensation: a correction may cite the approval the sheet lacked or
    change a price, never bill another medicine or another quantity. The diagnoses are the prescription's unless
    the correction gives them.
    """
    dispensation = session.get(Dispensation, sheet.dispensation_id)
    dispensed = sorted((line["code"], line["quantity"]) for line in dispensation.lines)
    if sorted((line.code, line.quantity) for line in content.lines) != dispensed:
        given = ", ".join(f"{quantity} × {code}" for code, quantity in dispensed)
        raise RuleViolation(f"Care sheet {sheet.number} bills dispensation {dispensation.number}: a correction bills what "
                            f"was dispensed ({given}), with the approval or prices corrected.", field="content.lines")
    if content.diagnoses:
        return content.diagnoses
    return list(session.scalar(select(Prescription.diagnoses).where(Prescription.id == dispensation.prescription_id)) or [])


def answer(sheet: CareSheet, *, visit_number: str | None = None) -> dict[str, Any]:
    """Return the acknowledgement and the business answer for `sheet`."""
    return {
        "acknowledgement": {"number": sheet.number, "version": sheet.version, "client_key": sheet.client_key,
                            "received_at": utc(sheet.received_at), "content_digest": sheet.content_digest},
        "number": sheet.number, "kind": sheet.kind, "status": sheet.status, "version": sheet.version,
        "care_date": sheet.care_date, "billed_millimes": sheet.billed_millimes, "fund_millimes": sheet.fund_millimes,
        "patient_millimes": sheet.patient_millimes, "payee": sheet.payee, "payment_due_on": sheet.payment_due_on,
        "paid_on": sheet.paid_on, "reasons": sheet.reasons, "decision": sheet.decision,
        "visit": visit_number,
    }


def late(sheet: CareSheet, today: date) -> bool:
    """Say whether the fund is (or was) late paying `sheet`."""
    if sheet.payment_due_on is None:
        return False
    return (sheet.paid_on or today) > sheet.payment_due_on


def for_insured(session: Session, *, verified: VerifiedInsured, since: date | None) -> dict[str, Any]:
    """Return the care sheets the cardholder may see, newest first: their family's if they are its insured member,
    else their own (a dependant, an Amen beneficiary); the reading is audited, it is health data."""
    person = verified.person
    family = session.scalar(select(Member.id).where(Member.person_id == person.id))
    since = since or verified.day - timedelta(days=365)
    whose = or_(CareSheet.member_id == family, CareSheet.patient_person_id == person.id) if family is not None \
        else CareSheet.patient_person_id == person.id
    rows = session.execute(
        select(CareSheet, Person.first_name_lat, Person.last_name_lat, Person.first_name_ar, Person.last_name_ar,
               Facility.code, Facility.name_lat, Facility.name_ar, Professional.name_lat.label("professional"))
        .join(Person, Person.id == CareSheet.patient_person_id).join(Facility, Facility.id == CareSheet.facility_id)
        .join(Professional, Professional.id == CareSheet.professional_id)
        .where(whose, CareSheet.care_date >= since).order_by(CareSheet.received_at.desc()).limit(500)).all()
    items = [{
        "number": row.CareSheet.number, "kind": row.CareSheet.kind, "status": row.CareSheet.status,
        "care_date": row.CareSheet.care_date, "received_at": utc(row.CareSheet.received_at),
        "patient": {"name_lat": f"{row.first_name_lat} {row.last_name_lat}", "name_ar": f"{row.first_name_ar} {row.last_name_ar}"},
        "facility": {"code": row.code, "name_lat": row.name_lat, "name_ar": row.name_ar}, "professional": row.professional,
        "billed_millimes": row.CareSheet.billed_millimes, "fund_millimes": row.CareSheet.fund_millimes,
        "patient_millimes": row.CareSheet.patient_millimes, "payee": row.CareSheet.payee,
        "payment_due_on": row.CareSheet.payment_due_on, "paid_on": row.CareSheet.paid_on,
        "late": late(row.CareSheet, verified.day), "reasons": _reasons(row.CareSheet),
    } for row in rows]
    audit.record(session, actor=verified.actor, action="care:care-sheet:insured-read", entity_type="person",
                 entity_id=person.id, after={"card": verified.card.serial, "family": family is not None, "sheets": len(items)})
    return {"insured": {"name_lat": f"{person.first_name_lat} {person.last_name_lat}",
                        "name_ar": f"{person.first_name_ar} {person.last_name_ar}"},
            "family": family is not None, "since": since, "items": items}


def _reasons(sheet: CareSheet) -> list[dict[str, str]]:
    """The sheet's rejection codes with their published labels (rejection_reasons.csv) in three languages."""
    try:
        published = ruleset(sheet.care_date).rejection_reasons
    except LookupError:
        published = {}
    return [{"code": code, **({"label_fr": r.label_fr, "label_ar": r.label_ar, "label_en": r.label_en}
                              if (r := published.get(code)) else {})} for code in sheet.reasons]


def status_for_provider(session: Session, *, verified: Verified, numbers: list[str], since: date | None) -> list[CareSheet]:
    """Return the care sheets this facility sent, by number or since a day (the provider sees only its own)."""
    query = select(CareSheet).where(CareSheet.facility_id == verified.facility.id)
    if numbers:
        query = query.where(CareSheet.number.in_([n.strip().upper() for n in numbers]))
    else:
        since = since or verified.care_day - timedelta(days=30)
        query = query.where(CareSheet.received_at >= datetime.combine(since, datetime.min.time(), verified.now.tzinfo))
    return list(session.scalars(query.order_by(CareSheet.received_at.desc()).limit(500)))
