"""Provider payments (paiement des prestataires, خلاص مسدي الخدمات): payment runs, statements, late payments.

A payment run pays, for one month, every accepted care sheet with a fund share that has no statement
yet: those decided in the month, and any earlier one still unpaid (paid late). It makes one statement
(relevé, كشف) per payee — a professional, a facility or an insured person — with the gross (the sum of
the fund shares), the tax withheld at source and the net, and marks each sheet paid.

Tax withheld at source (retenue à la source, الخصم من المورد) is taken on fees, at the rate of the
payee's tax regime in `ruleset(paid_on).tax_withheld_percent`:
- a professional: the regime in the registry (`tax_regime`); none recorded counts as "actual", as
  adjudication already does;
- a facility: the "actual" rate **(default)** — the registry records no tax regime for facilities, and
  clinics, pharmacies and laboratories are companies or professionals taxed on their actual profit;
- an insured person: nothing — a reimbursement is not a fee.
The tax is rounded half-up to the millime once per statement; net = gross − tax.

Money goes by transfer into the payee's bank account on record (`iban` in the registry), which the statement
keeps as paid. A professional or a facility with no account on record is held back: their sheets stay unpaid
(they show as late once due) and are paid by the first run after the account is recorded; the run lists
them. An insured person with no account is paid by postal order (mandat postal), cashed at any post office.
An insured person with a phone on record is told by SMS, in their language: how much, from which day, and
where (the postal order to collect, or the account credited, masked). The notices are queued with the run and
leave with `labes sms dispatch`, on the payment day: a run can pay tens of thousands of insured persons, and a
gateway that is down must not hold the run up nor lose them.

Paying twice is impossible: a sheet is paid only while `statement_id` is empty, the rows are locked
(`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite takes its single write lock at BEGIN) and the
UPDATE checks the guard again. The payment file for the bank and the remittance advice for each payee
are written only once the run's transaction commits.
"""

from __future__ import annotations

import csv
import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, or_, select, update
from sqlalchemy.orm import Session

from labes.cards.distribution import TUNIS
from labes.cards.sms import queue_sms
from labes.care.models import CareSheet
from labes.care.transactions import reserve
from labes.claims.models import PaymentRun, ProviderStatement
from labes.claims.ruleset import ruleset
from labes.errors import Conflict, InvalidInput, NotFound
from labes.registry.identifiers import masked_iban
from labes.registry.models import Facility, Member, Person, Professional
from labes.security import audit
from labes.security.audit import Actor

log = logging.getLogger("labes.claims.payments")

PAYEE_KINDS = ("professional", "facility", "person")
FACILITY_TAX_REGIME = "actual"  # (default) see the module docstring
PAYMENT_FILE_COLUMNS = (
    "statement", "payee_kind", "payee_identifier", "payee_name", "payee_tax_id", "payee_iban", "payment_method",
    "tax_regime",
    "tax_rate_percent", "care_sheets", "late_sheets", "gross_millimes", "tax_withheld_millimes", "net_millimes",
    "gross_tnd", "tax_withheld_tnd", "net_tnd",
)
ADVICE_COLUMNS = ("statement", "paid_on", "payment_method", "account", "care_sheet", "care_date", "kind",
                  "patient_initials", "fund_millimes", "fund_tnd", "payment_due_on", "paid_late")
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_CHUNK = 500  # ids per UPDATE … WHERE id IN (…): well under SQLite's and PostgreSQL's parameter limits
_FILES_KEY = "labes_payment_files"
TRANSFER, POSTAL_ORDER = "transfer", "postal-order"
_HELD_NAMED = 100  # payees held back named in the run's audit event (the count is always there)


@dataclass(frozen=True)
class StatementSummary:
    """One payee's statement in a run, as the summary and the payment file show it."""

    number: str
    payee_kind: str
    payee_id: uuid.UUID
    payee_identifier: str  # licence, facility code, or the insured's social identifier
    payee_name: str
    payee_tax_id: str | None
    payee_iban: str | None
    payment_method: str
    tax_regime: str | None
    tax_rate_percent: Decimal
    care_sheets: int
    late_sheets: int
    gross_millimes: int
    tax_withheld_millimes: int
    net_millimes: int
    advice_path: Path
    notified: bool = False  # an SMS tells the insured person (queued for `labes sms dispatch`)


@dataclass(frozen=True)
class HeldPayee:
    """A provider whose sheets the run could not pay: no bank account on record."""

    payee_kind: str
    payee_identifier: str
    payee_name: str
    care_sheets: int
    gross_millimes: int


@dataclass(frozen=True)
class PaymentRunResult:
    """What a run paid; its files are written into `directory` once the transaction commits."""

    number: str
    period: str
    paid_on: date
    statements: tuple[StatementSummary, ...]
    directory: Path
    payment_file: Path
    care_sheets: int = 0
    late_sheets: int = 0
    gross_millimes: int = 0
    tax_withheld_millimes: int = 0
    net_millimes: int = 0
    advice_files: tuple[Path, ...] = field(default=())
    held: tuple[HeldPayee, ...] = field(default=())  # not paid: no bank account on record

    @property
    def empty(self) -> bool:
        """Say whether the run found nothing to pay."""
        return not self.statements

    @property
    def files_written(self) -> bool:
        """Say whether every file of the run is on disk (they are written as the run commits)."""
        return all(path.is_file() for path in (self.payment_file, *self.advice_files))


@dataclass(frozen=True)
class _Sheet:
    id: uuid.UUID
    number: str
    fund_millimes: int
    payment_due_on: date | None
    payee_kind: str
    payee_id: uuid.UUID


@dataclass(frozen=True)
class _Payee:
    identifier: str
    name: str
    tax_id: str | None
    tax_regime: str | None  # None: no tax (an insured person)
    address: str | None
    governorate: str | None
    iban: str | None
    phone: str | None = None  # an insured person's, for the reimbursement notice
    language: str = "ar"


def payment_method(payee_kind: str, iban: str | None) -> str:
    """Return how a payee is paid now: a transfer into `iban`, else a postal order (an insured person), else ""
    (a provider without an account: not paid). A statement keeps its method (`details`): older runs have none."""
    return TRANSFER if iban else POSTAL_ORDER if payee_kind == "person" else ""


# Worded from the payment day, whenever the message is read: it may be queued days before it.
REIMBURSEMENT_TEXTS = {
    "ar": {"postal-order": "الكنام: مبلغ استرجاع مصاريفكم {amount} د.ت (كشف {statement}) يُصرف بحوالة بريدية ابتداءً "
                           "من {date} في أي مكتب بريد، ببطاقة التعريف الوطنية.",
           "transfer": "الكنام: مبلغ استرجاع مصاريفكم {amount} د.ت (كشف {statement}) يُحوَّل إلى حسابكم {account} "
                       "بتاريخ {date}."},
    "fr": {"postal-order": "CNAM: votre remboursement de {amount} TND (relevé {statement}) est payé par mandat postal, "
                           "à retirer à partir du {date} dans tout bureau de poste avec votre CIN.",
           "transfer": "CNAM: votre remboursement de {amount} TND (relevé {statement}) est viré sur votre compte "
                       "{account} le {date}."},
}


def reimbursement_text(language: str, *, net_millimes: int, statement: str, paid_on: date, iban: str | None) -> str:
    """Return the SMS telling an insured person a reimbursement is paid, in their language (Arabic by default)."""
    words = REIMBURSEMENT_TEXTS.get(language, REIMBURSEMENT_TEXTS["ar"])
    return words[TRANSFER if iban else POSTAL_ORDER].format(
        amount=tnd_amount(net_millimes), statement=statement, date=paid_on.strftime("%d/%m/%Y"),
        account=masked_iban(iban) if iban else "")


def parse_period(period: str) -> tuple[date, date]:
    """Return the first day of the month `period` ("YYYY-MM") and the first day of the next one."""
    found = _PERIOD.match(period.strip())
    if not found:
        raise InvalidInput(f"A payment period is a month written YYYY-MM, e.g. 2026-11; got {period!r}.", field="period")
    year, month = int(found[1]), int(found[2])
    start = date(year, month, 1)
    return start, date(year + month // 12, month % 12 + 1, 1)


def tnd_amount(millimes: int) -> str:
    """Format millimes as dinars with three decimals and no unit, e.g. `18.000` (for files)."""
    sign = "-" if millimes < 0 else ""
    whole, rest = divmod(abs(millimes), 1000)
    return f"{sign}{whole}.{rest:03d}"


def withheld_millimes(gross_millimes: int, percent: Decimal) -> int:
    """Return the tax withheld at source on `gross_millimes` at `percent`, rounded half-up to the millime."""
    return int((Decimal(gross_millimes) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def initials(first_name: str | None, last_name: str | None) -> str:
    """Return a patient's initials, e.g. "M.B.S." for Mohamed Ben Salah: a provider's advice never shows names."""
    words = f"{first_name or ''} {last_name or ''}".replace("-", " ").split()
    return "".join(f"{word[0].upper()}." for word in words)


# ---------------------------------------------------------------- the run


def run_payments(session: Session, *, actor: Actor, period: str, paid_on: date, out_dir: Path) -> PaymentRunResult:
    """Pay every unpaid accepted care sheet decided in `period` (or earlier), one statement per payee.

    Flushes, never commits. The payment file and the remittance advice are written into
    `out_dir/<run number>/` when, and only if, the session commits.
    """
    start, end = parse_period(period)
    if paid_on < start:
        raise InvalidInput(f"The payment day {paid_on.isoformat()} is before the period {period} begins.",
                           field="paid_on")
    rules = ruleset(paid_on)
    # Sheets decided after the payment day wait for the next run: the fund cannot pay before it decides.
    # Days and months are Tunisia's: a sheet decided at 00:30 on the 1st (23:30 UTC the day before) is the new month's.
    # (In UTC: SQLite compares the stored UTC text, whatever zone a bound time carries.)
    cutoff = datetime.combine(min(end, paid_on + timedelta(days=1)), time.min, tzinfo=TUNIS).astimezone(UTC)
    sheets = _payable(session, cutoff)
    groups: dict[tuple[str, uuid.UUID], list[_Sheet]] = {}
    for sheet in sheets:
        groups.setdefault((sheet.payee_kind, sheet.payee_id), []).append(sheet)
    payees = _payees(session, groups)
    held = sorted((key for key in groups if not payment_method(key[0], payees[key].iban)),
                  key=lambda key: (PAYEE_KINDS.index(key[0]), payees[key].name, payees[key].identifier))
    sheets_of = {key: groups.pop(key) for key in held}

    run_number = f"PR-{period}-{reserve(session, key=f'PR-{period}'):04d}"
    directory = Path(out_dir) / run_number
    run = PaymentRun(id=uuid.uuid4(), number=run_number, period=period, run_at=datetime.now(UTC), run_by=actor.label,
                     statements=0, care_sheets=0, gross_millimes=0, tax_withheld_millimes=0, net_millimes=0)
    session.add(run)
    session.flush()

    order = sorted(groups, key=lambda key: (PAYEE_KINDS.index(key[0]), payees[key].name, payees[key].identifier))
    first = reserve(session, key=f"ST-{period}", count=len(order)) if order else 0
    summaries: list[StatementSummary] = []
    for offset, key in enumerate(order):
        payee, paid = payees[key], groups[key]
        method = payment_method(key[0], payee.iban)
        regime = payee.tax_regime
        percent = rules.tax_withheld_percent[regime] if regime else Decimal(0)
        gross = sum(s.fund_millimes for s in paid)
        tax = withheld_millimes(gross, percent)
        late = sum(1 for s in paid if s.payment_due_on is not None and s.payment_due_on < paid_on)
        statement = ProviderStatement(
            id=uuid.uuid4(), number=f"ST-{period}-{first + offset:07d}", run_id=run.id, payee_kind=key[0],
            payee_id=key[1], payee_name=payee.name[:200], payee_tax_id=payee.tax_id, payee_iban=payee.iban,
            tax_regime=regime,
            tax_rate_permille=_permille(percent), care_sheets=len(paid), gross_millimes=gross,
            tax_withheld_millimes=tax, net_millimes=gross - tax, paid_on=paid_on, late_sheets=late,
            details={"payee_identifier": payee.identifier, "address": payee.address,
                     "governorate": payee.governorate, "tax_rate_percent": str(percent),
                     "tax_rule": rules.table_note("tax_withheld") if regime else "no tax on a reimbursement",
                     "payment_method": method,
                     "facility_regime_default": key[0] == "facility"},
        )
        session.add(statement)
        _mark_paid(session, [s.id for s in paid], statement_id=statement.id, paid_on=paid_on)
        audit.record(session, actor=actor, action="claims:payment:statement", entity_type="provider_statement",
                     entity_id=statement.number,
                     after={"run": run_number, "payee_kind": key[0], "payee": payee.identifier,
                            "payment_method": method, "tax_regime": regime,
                            "tax_rate_permille": statement.tax_rate_permille,
                            "care_sheets": len(paid), "late_sheets": late, "gross": gross, "tax_withheld": tax,
                            "net": gross - tax, "paid_on": paid_on.isoformat()})
        if key[0] == "person" and payee.phone:
            queue_sms(session, number=payee.phone, purpose="reimbursement",
                      text=reimbursement_text(payee.language, net_millimes=gross - tax, statement=statement.number,
                                              paid_on=paid_on, iban=payee.iban))
        summaries.append(StatementSummary(
            number=statement.number, payee_kind=key[0], payee_id=key[1], payee_identifier=payee.identifier,
            payee_name=payee.name, payee_tax_id=payee.tax_id, payee_iban=payee.iban, payment_method=method,
            tax_regime=regime, tax_rate_percent=percent,
            care_sheets=len(paid), late_sheets=late, gross_millimes=gross, tax_withheld_millimes=tax,
            net_millimes=gross - tax, advice_path=directory / f"{statement.number}.csv",
            notified=key[0] == "person" and bool(payee.phone)))

    run.statements = len(summaries)
    run.care_sheets = sum(s.care_sheets for s in summaries)
    run.gross_millimes = sum(s.gross_millimes for s in summaries)
    run.tax_withheld_millimes = sum(s.tax_withheld_millimes for s in summaries)
    run.net_millimes = sum(s.net_millimes for s in summaries)
    session.flush()
    late_total = sum(s.late_sheets for s in summaries)
    audit.record(session, actor=actor, action="claims:payment:run", entity_type="payment_run", entity_id=run_number,
                 after={"period": period, "paid_on": paid_on.isoformat(), "statements": run.statements,
                        "care_sheets": run.care_sheets, "late_sheets": late_total, "gross": run.gross_millimes,
                        "tax_withheld": run.tax_withheld_millimes, "net": run.net_millimes,
                        "held_for_bank_account": len(held),
                        "held": [f"{kind} {payees[kind, pid].identifier}" for kind, pid in held[:_HELD_NAMED]]})
    if held:
        log.warning("payment run %s holds back %d providers with no bank account on record", run_number, len(held))

    files = run_files(session, run=run, out_dir=out_dir)
    _write_after_commit(session, files)
    return PaymentRunResult(
        number=run_number, period=period, paid_on=paid_on, statements=tuple(summaries), directory=directory,
        payment_file=payment_file_path(out_dir, run_number), care_sheets=run.care_sheets, late_sheets=late_total,
        gross_millimes=run.gross_millimes, tax_withheld_millimes=run.tax_withheld_millimes,
        net_millimes=run.net_millimes, advice_files=tuple(s.advice_path for s in summaries),
        held=tuple(HeldPayee(key[0], payees[key].identifier, payees[key].name, len(sheets_of[key]),
                             sum(s.fund_millimes for s in sheets_of[key])) for key in held))


def _payable(session: Session, cutoff: datetime) -> list[_Sheet]:
    query = (
        select(CareSheet.id, CareSheet.number, CareSheet.fund_millimes, CareSheet.payment_due_on,
               CareSheet.payee_kind, CareSheet.payee_id)
        .where(CareSheet.status == "accepted", CareSheet.fund_millimes > 0, CareSheet.statement_id.is_(None),
               CareSheet.payee_kind.is_not(None), CareSheet.payee_id.is_not(None), CareSheet.decided_at < cutoff)
        .order_by(CareSheet.number)
        # PostgreSQL: a sheet another run holds is left to it (SQLite ignores this: BEGIN IMMEDIATE serialises).
        .with_for_update(skip_locked=True)
    )
    sheets = [_Sheet(*row) for row in session.execute(query)]
    if unknown := {s.payee_kind for s in sheets} - set(PAYEE_KINDS):
        raise Conflict(f"Care sheets with an unknown payee kind {sorted(unknown)} cannot be paid; fix them first.")
    return sheets


def _mark_paid(session: Session, ids: list[uuid.UUID], *, statement_id: uuid.UUID, paid_on: date) -> None:
    for chunk in _in_chunks(ids):
        done = session.execute(
            update(CareSheet)
            .where(CareSheet.id.in_(chunk), CareSheet.statement_id.is_(None), CareSheet.status == "accepted")
            .values(status="paid", paid_on=paid_on, statement_id=statement_id)
        ).rowcount
        if done != len(chunk):  # cannot happen under the row locks; refuse rather than pay a sheet twice
            raise Conflict("Another payment run paid some of these care sheets at the same time; "
                           "nothing was paid: run the period again.")


def _in_chunks(ids: Iterable[uuid.UUID]) -> Iterable[list[uuid.UUID]]:
    ids = list(ids)
    for index in range(0, len(ids), _CHUNK):
        yield ids[index:index + _CHUNK]


def _payees(session: Session, groups: dict[tuple[str, uuid.UUID], list[_Sheet]]) -> dict[tuple[str, uuid.UUID], _Payee]:
    wanted = {kind: [pid for k, pid in groups if k == kind] for kind in PAYEE_KINDS}
    found: dict[tuple[str, uuid.UUID], _Payee] = {}
    for chunk in _in_chunks(wanted["professional"]):
        for p in session.scalars(select(Professional).where(Professional.id.in_(chunk))):
            found["professional", p.id] = _Payee(p.licence, p.name_lat, p.tax_id, p.tax_regime or "actual",
                                                 p.address, p.governorate, p.iban)
    for chunk in _in_chunks(wanted["facility"]):
        for f in session.scalars(select(Facility).where(Facility.id.in_(chunk))):
            found["facility", f.id] = _Payee(f.code, f.name_lat, f.tax_id, FACILITY_TAX_REGIME, f.address,
                                             f.governorate, f.iban)
    for chunk in _in_chunks(wanted["person"]):
        rows = session.execute(select(Person, Member.social_id).outerjoin(Member, Member.person_id == Person.id)
                               .where(Person.id.in_(chunk)))
        for person, social_id in rows:
            # An Amen beneficiary has no member record of their own: their CIN identifies them.
            found["person", person.id] = _Payee(social_id or person.cin or str(person.id),
                                                f"{person.first_name_lat} {person.last_name_lat}", None, None,
                                                person.address, person.governorate, person.iban, person.phone,
                                                person.language)
    if missing := [key for key in groups if key not in found]:
        numbers = ", ".join(s.number for key in missing[:3] for s in groups[key][:3])
        raise Conflict(f"{len(missing)} payees of care sheets are not in the registry (e.g. sheets {numbers}); "
                       "nothing was paid: restore the payees or correct the sheets, then run again.")
    return found


def _permille(percent: Decimal) -> int:
    permille = percent * 10
    if permille != permille.to_integral_value():
        raise ValueError(f"claims.json tax_withheld: {percent}% is not a whole number of per mille, "
                         "which provider_statement.tax_rate_permille must hold.")
    return int(permille)


# ---------------------------------------------------------------- files


Files = dict[Path, tuple[tuple[str, ...], list[list[Any]]]]


def payment_file_path(out_dir: Path, run_number: str) -> Path:
    """Return where the payment file of run `run_number` goes."""
    return Path(out_dir) / run_number / f"{run_number}-payments.csv"


def run_files(session: Session, *, run: PaymentRun, out_dir: Path) -> Files:
    """Return the payment file and each payee's remittance advice of `run`, built from what is stored."""
    statements = session.scalars(select(ProviderStatement).where(ProviderStatement.run_id == run.id)
                                 .order_by(ProviderStatement.number)).all()
    directory = Path(out_dir) / run.number
    files: Files = {payment_file_path(out_dir, run.number): (PAYMENT_FILE_COLUMNS, [
        [s.number, s.payee_kind, (s.details or {}).get("payee_identifier", ""), s.payee_name, s.payee_tax_id or "",
         s.payee_iban or "", (s.details or {}).get("payment_method", ""), s.tax_regime or "",
         _percent(s.tax_rate_permille), s.care_sheets, s.late_sheets, s.gross_millimes, s.tax_withheld_millimes,
         s.net_millimes, tnd_amount(s.gross_millimes), tnd_amount(s.tax_withheld_millimes), tnd_amount(s.net_millimes)]
        for s in statements])}
    numbers = {s.id: s.number for s in statements}
    # Each row says which payment it belongs to, as the payee's bank statement shows it: the statement number
    # (the transfer's reference), the day, and the account credited (masked: the advice is mailed) or the postal order.
    paid = {s.id: [s.number, s.paid_on.isoformat(), (s.details or {}).get("payment_method", ""),
                   masked_iban(s.payee_iban) if s.payee_iban else ""] for s in statements}
    advice: dict[uuid.UUID, list[list[Any]]] = {s.id: [] for s in statements}
    for chunk in _in_chunks(numbers):
        rows = session.execute(
            select(CareSheet.statement_id, CareSheet.number, CareSheet.care_date, CareSheet.kind,
                   CareSheet.fund_millimes, CareSheet.payment_due_on, CareSheet.paid_on,
                   Person.first_name_lat, Person.last_name_lat)
            .join(Person, Person.id == CareSheet.patient_person_id)
            .where(CareSheet.statement_id.in_(chunk)).order_by(CareSheet.care_date, CareSheet.number))
        for r in rows:
            late = r.payment_due_on is not None and r.paid_on is not None and r.payment_due_on < r.paid_on
            advice[r.statement_id].append([
                *paid[r.statement_id], r.number, r.care_date.isoformat(), r.kind, initials(r.first_name_lat, r.last_name_lat),
                r.fund_millimes, tnd_amount(r.fund_millimes), r.payment_due_on.isoformat() if r.payment_due_on else "",
                "yes" if late else "no"])
    for statement_id, rows in advice.items():
        files[directory / f"{numbers[statement_id]}.csv"] = (ADVICE_COLUMNS, rows)
    return files


def write_run_files(session: Session, *, number: str, out_dir: Path) -> list[Path]:
    """Write the files of the committed run `number` again (e.g. if the disk was full when it ran)."""
    run = session.scalar(select(PaymentRun).where(PaymentRun.number == number.strip().upper()))
    if run is None:
        raise NotFound(f"No payment run {number}.", field="number")
    files = run_files(session, run=run, out_dir=out_dir)
    for path, (columns, rows) in files.items():
        write_csv(path, columns, rows)
    return list(files)


def _percent(permille: int) -> str:
    return str(Decimal(permille) / 10).removesuffix(".0")


def _write_after_commit(session: Session, files: Files) -> None:
    session.info.setdefault(_FILES_KEY, {}).update(files)
    if not event.contains(session, "after_commit", _write_pending_files):
        event.listen(session, "after_commit", _write_pending_files)
        event.listen(session, "after_soft_rollback", _drop_pending_files)


def _write_pending_files(session: Session) -> None:
    files = session.info.pop(_FILES_KEY, {})
    try:
        for path, (columns, rows) in files.items():
            write_csv(path, columns, rows)
    except OSError:
        # The run is committed and stands; raising here would leave the session half-closed.
        log.exception("payment files could not be written after the run committed; "
                      "`labes payments files <run>` writes them again")


def _drop_pending_files(session: Session, previous) -> None:
    if not previous.nested:
        session.info.pop(_FILES_KEY, None)


def write_csv(path: Path, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    """Write a CSV in UTF-8 with a BOM (spreadsheets then read the accents), replacing any earlier file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    partial.replace(path)


# ---------------------------------------------------------------- reading


def statements_of(session: Session, *, payee_kind: str, payee_id: uuid.UUID, year: int) -> list[ProviderStatement]:
    """Return a payee's statements paid in `year`, oldest first."""
    return list(session.scalars(
        select(ProviderStatement)
        .where(ProviderStatement.payee_kind == payee_kind, ProviderStatement.payee_id == payee_id,
               ProviderStatement.paid_on >= date(year, 1, 1), ProviderStatement.paid_on < date(year + 1, 1, 1))
        .order_by(ProviderStatement.paid_on, ProviderStatement.number)))


def find_provider(session: Session, reference: str) -> Professional | Facility:
    """Return the professional with licence `reference`, or else the facility with that code."""
    reference = reference.strip().upper()
    professional = session.scalar(select(Professional).where(Professional.licence == reference))
    facility = session.scalar(select(Facility).where(Facility.code == reference))
    if professional is not None and facility is not None:
        raise Conflict(f"{reference} is both a professional's licence and a facility's code; the registry must "
                       "tell them apart first.", field="provider")
    if professional is None and facility is None:
        raise NotFound(f"No professional licence or facility code {reference}.", field="provider")
    return professional or facility


def payee_key(provider: Professional | Facility) -> tuple[str, uuid.UUID]:
    """Return the (payee kind, id) under which care sheets and statements name `provider`."""
    return ("professional" if isinstance(provider, Professional) else "facility"), provider.id


def _late(today: date):
    """The condition of a sheet that, as seen on `today`, the fund paid after its deadline or still owed past it
    (a payment made after `today` does not count yet: seen from then, the sheet was overdue)."""
    unpaid_then = CareSheet.paid_on.is_(None) | (CareSheet.paid_on > today)
    return (CareSheet.status.in_(("accepted", "paid")) & CareSheet.payment_due_on.is_not(None)
            & or_((CareSheet.paid_on > CareSheet.payment_due_on) & (CareSheet.paid_on <= today),
                  unpaid_then & (CareSheet.payment_due_on < today)))


def late_payments(session: Session, *, payee_kind: str, payee_id: uuid.UUID, today: date,
                  since: date | None = None) -> list[CareSheet]:
    """Return the payee's care sheets the fund paid after their deadline, or has still not paid, as seen on `today`
    (those due from `since` on, if given), the oldest deadline first."""
    query = select(CareSheet).where(CareSheet.payee_kind == payee_kind, CareSheet.payee_id == payee_id, _late(today))
    if since is not None:
        query = query.where(CareSheet.payment_due_on >= since)
    return list(session.scalars(query.order_by(CareSheet.payment_due_on, CareSheet.number)))


LATE_WINDOW = timedelta(days=365)  # the late-payment report's default window: the 365 days before the day looked from


def days_late(due: date, paid_on: date | None, today: date) -> int:
    """Return how many days after its deadline `due` a sheet was paid (`paid_on`), or is still unpaid on `today`."""
    return ((paid_on if paid_on is not None and paid_on <= today else today) - due).days


@dataclass
class LatePayee:
    """How late the fund pays one payee: the sheets due from `since` to `today`, those paid late, those overdue."""

    payee_kind: str
    payee_id: uuid.UUID
    payee_identifier: str
    payee_name: str
    sheets_due: int = 0  # sheets whose deadline fell in the window, paid or not
    paid_late: int = 0
    paid_late_millimes: int = 0
    overdue: int = 0  # past their deadline and still unpaid on `today`
    overdue_millimes: int = 0
    days_late_total: int = 0
    most_days_late: int = 0

    @property
    def late(self) -> int:
        return self.paid_late + self.overdue

    @property
    def on_time_percent(self) -> Decimal:
        """The share of the sheets due in the window that were paid by their deadline (or are not yet due)."""
        if not self.sheets_due:
            return Decimal(100)
        return (Decimal(100) * (self.sheets_due - self.late) / self.sheets_due).quantize(Decimal("0.1"))

    @property
    def average_days_late(self) -> Decimal:
        return (Decimal(self.days_late_total) / self.late).quantize(Decimal("0.1")) if self.late else Decimal(0)


LATE_REPORT_COLUMNS = ("payee_kind", "payee_identifier", "payee_name", "sheets_due", "on_time_percent", "paid_late",
                       "paid_late_millimes", "overdue", "overdue_millimes", "average_days_late", "most_days_late")


def late_payment_report(session: Session, *, today: date, since: date,
                        payee_kinds: tuple[str, ...] = ("professional", "facility"),
                        payee: tuple[str, uuid.UUID] | None = None) -> list[LatePayee]:
    """Return, for each payee the fund paid late or still owes past the deadline, how late: the third-party
    payment deadlines of the rules (pharmacies 7 days, doctors 15, clinics 21), sheets due from `since` to
    `today`. The payees still owed the most come first. `payee` = (kind, id) narrows it to one.

    Two reads whatever the size: the sheets due per payee (counted by the database) and the late sheets
    themselves (streamed), whose days late are counted here, the same on every database.
    """
    if since > today:
        raise InvalidInput(f"The window starts on {since.isoformat()}, after the day looked from "
                           f"({today.isoformat()}).", field="since")
    window = [CareSheet.payment_due_on >= since, CareSheet.payment_due_on <= today,
              CareSheet.status.in_(("accepted", "paid")), CareSheet.payee_kind.in_(payee_kinds)]
    if payee is not None:
        window += [CareSheet.payee_kind == payee[0], CareSheet.payee_id == payee[1]]
    found: dict[tuple[str, uuid.UUID], LatePayee] = {}
    late = select(CareSheet.payee_kind, CareSheet.payee_id, CareSheet.payment_due_on, CareSheet.paid_on,
                  CareSheet.fund_millimes).where(*window, _late(today))
    for kind, payee_id, due, paid_on, fund in session.execute(late.execution_options(yield_per=5_000)):
        entry = found.setdefault((kind, payee_id), LatePayee(kind, payee_id, "", ""))
        days = days_late(due, paid_on, today)
        if paid_on is None or paid_on > today:
            entry.overdue, entry.overdue_millimes = entry.overdue + 1, entry.overdue_millimes + fund
        else:
            entry.paid_late, entry.paid_late_millimes = entry.paid_late + 1, entry.paid_late_millimes + fund
        entry.days_late_total += days
        entry.most_days_late = max(entry.most_days_late, days)
    if not found:
        return []
    due = (select(CareSheet.payee_kind, CareSheet.payee_id, func.count()).where(*window)
           .group_by(CareSheet.payee_kind, CareSheet.payee_id))
    for kind, payee_id, count in session.execute(due):
        if (kind, payee_id) in found:
            found[kind, payee_id].sheets_due = count
    names = _payees(session, {key: [] for key in found})
    for key, entry in found.items():
        entry.payee_identifier, entry.payee_name = names[key].identifier, names[key].name
    return sorted(found.values(), key=lambda e: (-e.overdue_millimes, -e.late, e.payee_kind, e.payee_identifier))


@dataclass(frozen=True)
class LateSheet:
    """One provider's late sheet, as the report lists it (and the API answers it: claims/schemas.py)."""

    number: str
    care_date: date
    payment_due_on: date
    paid_on: date | None
    fund_millimes: int
    days_late: int


@dataclass(frozen=True)
class LatePayments:
    """The late-payment report as the fund's finance staff read it (`labes payments late`, the API)."""

    today: date
    since: date
    payees: list[LatePayee]
    sheets: list[LateSheet]  # with a provider: its late sheets


def late_payments_seen(session: Session, *, today: date, since: date | None = None,
                       provider: str | None = None) -> LatePayments:
    """Return the report of the sheets due from `since` (default: LATE_WINDOW before `today`) to `today`, for every
    provider, or for `provider` (a licence or a facility code) with its late sheets."""
    since = since or today - LATE_WINDOW
    key = payee_key(find_provider(session, provider)) if provider else None
    sheets = late_payments(session, payee_kind=key[0], payee_id=key[1], today=today, since=since) if key else []
    return LatePayments(today, since, late_payment_report(session, today=today, since=since, payee=key), [
        LateSheet(s.number, s.care_date, s.payment_due_on, s.paid_on, s.fund_millimes,
                  days_late(s.payment_due_on, s.paid_on, today)) for s in sheets])


def late_report_rows(report: Iterable[LatePayee]) -> list[list[Any]]:
    """The report as the rows of LATE_REPORT_COLUMNS (for a CSV)."""
    return [[e.payee_kind, e.payee_identifier, e.payee_name, e.sheets_due, str(e.on_time_percent), e.paid_late,
             e.paid_late_millimes, e.overdue, e.overdue_millimes, str(e.average_days_late), e.most_days_late]
            for e in report]
