"""Provider payments: runs, statements, tax withheld at source, files, late payments, the annual certificate."""

from __future__ import annotations

import csv
import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from labes.cards.crypto import load_authority
from labes.cards.models import SmsMessage
from labes.care.models import CareSheet
from labes.care.transactions import local_day
from labes.claims import certificates
from labes.claims.models import PaymentRun, ProviderStatement
from labes.claims.payments import (
    ADVICE_COLUMNS,
    LATE_REPORT_COLUMNS,
    PAYMENT_FILE_COLUMNS,
    initials,
    late_payment_report,
    late_payments,
    parse_period,
    run_payments,
    withheld_millimes,
    write_run_files,
)
from labes.claims.payments_cli import app as payments_cli
from labes.errors import InvalidInput, NotFound
from labes.registry import providers, service
from labes.registry.models import Member, Person, Professional
from labes.registry.schemas import PersonUpdate, ProfessionalUpdate
from labes.security.models import AuditEvent
from tests import factories
from tests.care.conftest import build_world

TODAY = local_day(datetime.now(UTC))  # the day the API decides the world's care sheets (Tunisia's)
PERIOD = f"{TODAY:%Y-%m}"


@pytest.fixture
def world(session, client, keys_dir):
    """The point of care of tests/care: a clinic, a pharmacy, a health centre, doctors, a family and their cards."""
    return build_world(session, client, keys_dir)


def consultation(world, *, terminal=None, card: str = "patient", **extra) -> dict:
    content = {"kind": "consultation", "care_date": TODAY.isoformat(), "diagnoses": ["J06.9"], "lines": [{"code": "CMF"}]}
    return (terminal or world.doctor_at_clinic).send_care_sheet(world.cards[card], {**content, **extra})


def pharmacy_sheet(world) -> dict:
    prescription = world.doctor_at_clinic.prescribe(world.cards["patient"], {"lines": [{"code": "500118", "quantity": 2}]})
    answer = world.pharmacy_terminal.dispense(prescription["number"], [{"line_no": 1, "quantity": 1}],
                                              patient_card=world.cards["patient"])
    return answer["care_sheet"]


def sheet(session, number: str) -> CareSheet:
    return session.scalar(select(CareSheet).where(CareSheet.number == number).execution_options(populate_existing=True))


def pay(session, tmp_path, *, paid_on: date = TODAY, period: str = PERIOD):
    return run_payments(session, actor=factories.ACTOR, period=period, paid_on=paid_on, out_dir=tmp_path)


def read_csv(path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def month(world, session):
    """A month of care: two family-doctor consultations (actual regime), one specialist's (flat regime) on referral,
    a consultation the fund rejects, and medicines reimbursed to the insured (pharmacists' third-party payment is
    suspended)."""
    first = consultation(world, referral_to="cardiology")
    second = consultation(world)
    specialist = consultation(world, terminal=world.terminal("specialist", world.clinic), diagnoses=["I10"],
                              lines=[{"code": "CS"}])
    rejected = consultation(world, terminal=world.terminal("doctor", world.health_centre))
    medicines = pharmacy_sheet(world)
    world.specialist.tax_regime = "flat"
    session.flush()
    answers = {"first": first, "second": second, "specialist": specialist, "rejected": rejected, "medicines": medicines}
    assert [a["status"] for a in answers.values()] == ["accepted", "accepted", "accepted", "rejected", "accepted"]
    assert (first["payee"], specialist["payee"], medicines["payee"]) == ("provider", "provider", "insured")
    return answers


class TestRules:
    def test_the_tax_is_rounded_half_up_once(self):
        assert withheld_millimes(26000, Decimal(3)) == 780
        assert withheld_millimes(50, Decimal(3)) == 2  # 1.5 → 2
        assert withheld_millimes(49, Decimal(3)) == 1  # 1.47 → 1
        assert withheld_millimes(22005, Decimal(10)) == 2201  # 2200.5 → 2201
        assert withheld_millimes(0, Decimal(10)) == 0

    def test_periods_are_months(self):
        assert parse_period("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))
        for bad in ("2026-13", "2026-1", "11-2026", ""):
            with pytest.raises(InvalidInput):
                parse_period(bad)

    def test_initials_never_spell_a_name(self):
        assert initials("Mohamed", "Ben Salah") == "M.B.S."
        assert initials("Salma", None) == "S."


class TestRun:
    def test_pays_each_accepted_sheet_once_with_the_tax_of_its_payee(self, world, session, month, tmp_path):
        result = pay(session, tmp_path)

        by_payee = {s.payee_identifier: s for s in result.statements}
        social_id = session.scalar(select(Member.social_id).where(Member.id == world.member.id))
        assert set(by_payee) == {world.doctor.licence, world.specialist.licence, social_id}
        doctor = by_payee[world.doctor.licence]
        fund = month["first"]["fund_millimes"] + month["second"]["fund_millimes"]
        assert (doctor.payee_kind, doctor.tax_regime, doctor.care_sheets) == ("professional", "actual", 2)
        assert (doctor.gross_millimes, doctor.tax_withheld_millimes, doctor.net_millimes) == (
            fund, withheld_millimes(fund, Decimal(3)), fund - withheld_millimes(fund, Decimal(3)))
        assert doctor.tax_withheld_millimes == 780  # 3% of 2 × 13.000 TND
        specialist = by_payee[world.specialist.licence]
        assert (specialist.tax_regime, specialist.gross_millimes, specialist.tax_withheld_millimes,
                specialist.net_millimes) == ("flat", 22000, 2200, 19800)
        insured = by_payee[social_id]
        assert (insured.payee_kind, insured.tax_regime, insured.tax_withheld_millimes) == ("person", None, 0)
        assert insured.net_millimes == insured.gross_millimes == month["medicines"]["fund_millimes"]
        assert (result.care_sheets, result.gross_millimes) == (4, fund + 22000 + insured.gross_millimes)
        assert result.net_millimes == result.gross_millimes - result.tax_withheld_millimes == result.gross_millimes - 2980

        stored = session.scalar(select(ProviderStatement).where(ProviderStatement.number == doctor.number))
        assert (stored.tax_rate_permille, stored.paid_on, stored.late_sheets, stored.payee_tax_id) == (
            30, TODAY, 0, world.doctor.tax_id)
        assert re.fullmatch(rf"PR-{PERIOD}-\d{{4}}", result.number)
        assert all(re.fullmatch(rf"ST-{PERIOD}-\d{{7}}", s.number) for s in result.statements)
        for name in ("first", "second", "specialist", "medicines"):
            paid = sheet(session, month[name]["number"])
            assert (paid.status, paid.paid_on) == ("paid", TODAY)
            assert paid.statement_id == session.scalar(select(ProviderStatement.id).where(
                ProviderStatement.payee_id == paid.payee_id))
        rejected = sheet(session, month["rejected"]["number"])
        assert (rejected.status, rejected.statement_id, rejected.paid_on) == ("rejected", None, None)

    def test_a_second_run_pays_nothing_twice(self, session, month, tmp_path):
        first = pay(session, tmp_path)
        second = pay(session, tmp_path)

        assert len(first.statements) == 3 and second.empty
        assert (second.care_sheets, second.gross_millimes) == (0, 0)
        assert second.number != first.number
        runs = session.scalars(select(PaymentRun).order_by(PaymentRun.number)).all()
        assert [(r.number, r.statements, r.care_sheets) for r in runs] == [(first.number, 3, 4), (second.number, 0, 0)]
        assert session.scalar(select(func.count()).select_from(ProviderStatement)) == 3

    def test_late_sheets_earlier_ones_and_the_decision_day(self, world, session, month, tmp_path):
        # One sheet decided the month before and still unpaid is paid now, late; one decided after the period waits.
        start, end = parse_period(PERIOD)
        earlier = sheet(session, month["second"]["number"])
        earlier.decided_at = datetime.combine(start - timedelta(days=20), datetime.min.time(), UTC)
        earlier.payment_due_on = start - timedelta(days=5)
        later = sheet(session, month["specialist"]["number"])
        later.decided_at = datetime.combine(end, datetime.min.time(), UTC)
        session.flush()
        paid_on = TODAY + timedelta(days=16)  # after the doctors' 15 days, before the insured's 30

        result = pay(session, tmp_path, paid_on=paid_on)

        by_payee = {s.payee_identifier: s for s in result.statements}
        assert world.specialist.licence not in by_payee
        assert (by_payee[world.doctor.licence].care_sheets, by_payee[world.doctor.licence].late_sheets) == (2, 2)
        assert result.late_sheets == 2
        assert sheet(session, month["specialist"]["number"]).status == "accepted"
        next_month = f"{end:%Y-%m}"
        assert [s.payee_identifier for s in pay(session, tmp_path, period=next_month, paid_on=end).statements] == [
            world.specialist.licence]

    def test_a_payment_day_before_the_period_is_refused(self, session, tmp_path):
        with pytest.raises(InvalidInput, match="before the period"):
            pay(session, tmp_path, period=PERIOD, paid_on=parse_period(PERIOD)[0] - timedelta(days=1))

    def test_an_empty_run_is_a_run(self, session, tmp_path):
        result = pay(session, tmp_path)
        session.commit()

        assert result.empty and result.statements == ()
        assert session.scalar(select(PaymentRun.statements).where(PaymentRun.number == result.number)) == 0
        assert read_csv(result.payment_file) == []

    def test_every_write_is_audited(self, world, session, month, tmp_path):
        result = pay(session, tmp_path)
        session.commit()

        events = session.execute(select(AuditEvent.action, AuditEvent.entity_id, AuditEvent.after)
                                 .where(AuditEvent.action.like("claims:payment:%")).order_by(AuditEvent.id)).all()
        assert [e.action for e in events] == ["claims:payment:statement"] * 3 + ["claims:payment:run"]
        assert events[-1].entity_id == result.number and events[-1].after["tax_withheld"] == 2980
        assert {e.entity_id for e in events[:3]} == {s.number for s in result.statements}


class TestFiles:
    def test_the_payment_file_and_the_advice_are_written_when_the_run_commits(self, world, session, month, tmp_path):
        result = pay(session, tmp_path, paid_on=TODAY + timedelta(days=16))
        assert not result.payment_file.exists()  # nothing leaves the fund before the run is committed

        session.commit()

        rows = read_csv(result.payment_file)
        doctor = next(r for r in rows if r["payee_identifier"] == world.doctor.licence)
        fund = month["first"]["fund_millimes"] + month["second"]["fund_millimes"]
        assert doctor == {
            "statement": doctor["statement"], "payee_kind": "professional", "payee_identifier": world.doctor.licence,
            "payee_name": "Dr Sami Trabelsi", "payee_tax_id": world.doctor.tax_id or "",
            "payee_iban": world.doctor.iban, "payment_method": "transfer", "tax_regime": "actual", "tax_rate_percent": "3",
            "care_sheets": "2", "late_sheets": "2",
            "gross_millimes": str(fund), "tax_withheld_millimes": "780", "net_millimes": str(fund - 780),
            "gross_tnd": "26.000", "tax_withheld_tnd": "0.780", "net_tnd": "25.220",
        }
        assert [r["payee_kind"] for r in rows] == ["professional", "professional", "person"]
        advice = read_csv(result.directory / f"{doctor['statement']}.csv")
        assert [r["care_sheet"] for r in advice] == sorted([month["first"]["number"], month["second"]["number"]])
        assert advice[0] == {"statement": doctor["statement"], "paid_on": (TODAY + timedelta(days=16)).isoformat(),
                             "payment_method": "transfer", "account": f"{world.doctor.iban[:4]} •••• {world.doctor.iban[-4:]}",
                             "care_sheet": advice[0]["care_sheet"], "care_date": TODAY.isoformat(),
                             "kind": "consultation", "patient_initials": "M.B.S.", "fund_millimes": "13000",
                             "fund_tnd": "13.000", "payment_due_on": (TODAY + timedelta(days=15)).isoformat(),
                             "paid_late": "yes"}
        insured = next(r for r in rows if r["payee_kind"] == "person")
        insured_advice = read_csv(result.directory / f"{insured['statement']}.csv")[0]
        assert insured_advice["paid_late"] == "no"
        # The family gave no account: a postal order, and no account named.
        assert (insured_advice["payment_method"], insured_advice["account"]) == ("postal-order", "")
        everything = "".join(p.read_text(encoding="utf-8-sig") for p in result.advice_files)
        assert "Mohamed" not in everything and "Ben Salah" not in everything  # never a patient's name

    def test_the_documented_columns_are_the_files_columns(self):
        docs = (Path(__file__).parents[2] / "docs" / "csv-formats.md").read_text("utf-8")
        section = docs.split("### The payment file")[1].split("\n### ")[0]
        documented = [name for line in section.splitlines() if line.startswith("| `")
                      for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])]
        assert sorted(documented) == sorted(PAYMENT_FILE_COLUMNS)
        advice = docs.split("### The remittance advice")[1].split("\n### ")[0]
        assert all(f"`{column}`" in advice for column in ADVICE_COLUMNS)
        late = docs.split("### The late-payment report")[1]
        assert all(f"`{column}`" in late for column in LATE_REPORT_COLUMNS)

    def test_a_rolled_back_run_writes_nothing(self, session, month, tmp_path):
        result = pay(session, tmp_path)
        session.rollback()
        session.commit()

        assert not result.directory.exists()
        assert session.scalar(select(func.count()).select_from(PaymentRun)) == 0


class TestBankAccounts:
    """Money goes into the payee's account on record; a provider without one waits, an insured person gets a postal order."""

    def test_a_provider_without_an_account_is_held_back_then_paid_once_it_is_recorded(self, world, session, month,
                                                                                        tmp_path):
        world.doctor.iban = None
        session.flush()

        held = pay(session, tmp_path)
        session.commit()

        assert world.doctor.licence not in {s.payee_identifier for s in held.statements}
        assert [(h.payee_kind, h.payee_identifier, h.care_sheets, h.gross_millimes) for h in held.held] == [
            ("professional", world.doctor.licence, 2, month["first"]["fund_millimes"] + month["second"]["fund_millimes"])]
        for name in ("first", "second"):
            waiting = sheet(session, month[name]["number"])
            assert (waiting.status, waiting.statement_id, waiting.paid_on) == ("accepted", None, None)
        event = session.scalar(select(AuditEvent.after).where(AuditEvent.action == "claims:payment:run",
                                                              AuditEvent.entity_id == held.number))
        assert (event["held_for_bank_account"], event["held"]) == (1, [f"professional {world.doctor.licence}"])

        # The account is recorded as the doctor's bank prints it (a RIB), and the next run pays them, and only them.
        providers.update_professional(session, actor=factories.ACTOR, licence=world.doctor.licence,
                                      data=ProfessionalUpdate(iban="08 001 0000000000777 " + factories.iban(777)[-2:]))
        paid = pay(session, tmp_path)

        assert paid.held == ()
        [statement] = paid.statements
        assert (statement.payee_identifier, statement.care_sheets, statement.payee_iban, statement.payment_method) == (
            world.doctor.licence, 2, factories.iban(777), "transfer")
        assert pay(session, tmp_path).empty

    def test_an_insured_person_without_an_account_is_paid_by_postal_order(self, world, session, month, tmp_path):
        person = session.get(Person, world.member.person_id)
        assert person.iban is None  # the family as enrolled: no account given

        result = pay(session, tmp_path)
        session.commit()

        insured = next(s for s in result.statements if s.payee_kind == "person")
        assert (insured.payee_iban, insured.payment_method) == (None, "postal-order")
        row = next(r for r in read_csv(result.payment_file) if r["payee_kind"] == "person")
        assert (row["payee_iban"], row["payment_method"]) == ("", "postal-order")
        assert {r["payment_method"] for r in read_csv(result.payment_file) if r["payee_kind"] == "professional"} == {
            "transfer"}

    def test_an_insured_person_with_an_account_is_paid_by_transfer(self, world, session, month, tmp_path):
        account = factories.iban()
        service.update_person(session, actor=factories.ACTOR, person_id=world.member.person_id,
                              data=PersonUpdate(iban=account))

        insured = next(s for s in pay(session, tmp_path).statements if s.payee_kind == "person")

        assert (insured.payee_iban, insured.payment_method) == (account, "transfer")

    def test_a_run_made_before_accounts_were_recorded_names_no_method(self, session, month, tmp_path):
        result = pay(session, tmp_path)
        for statement in session.scalars(select(ProviderStatement)):  # as the statements of older runs are
            statement.details = {k: v for k, v in statement.details.items() if k != "payment_method"}
        session.commit()

        written = write_run_files(session, number=result.number, out_dir=tmp_path / "again")

        rows = read_csv(next(path for path in written if path.name.endswith("-payments.csv")))
        assert {r["payment_method"] for r in rows} == {""}  # not guessed: how they were paid is not on record

    def test_a_statement_keeps_the_account_it_was_paid_into(self, world, session, month, tmp_path):
        paid_into = world.doctor.iban
        result = pay(session, tmp_path)
        session.commit()
        world.doctor.iban = factories.iban()  # the doctor changes banks afterwards
        session.commit()

        written = write_run_files(session, number=result.number, out_dir=tmp_path / "again")
        session.commit()

        rows = read_csv(next(path for path in written if path.name.endswith("-payments.csv")))
        assert next(r for r in rows if r["payee_identifier"] == world.doctor.licence)["payee_iban"] == paid_into


class TestLatePayments:
    def test_sheets_paid_after_or_still_unpaid_past_their_deadline(self, world, session, month, tmp_path):
        overdue = sheet(session, month["first"]["number"])
        overdue.payment_due_on = TODAY - timedelta(days=1)
        session.flush()
        doctor = {"payee_kind": "professional", "payee_id": world.doctor.id}

        assert [s.number for s in late_payments(session, **doctor, today=TODAY)] == [overdue.number]
        assert late_payments(session, payee_kind="professional", payee_id=world.specialist.id, today=TODAY) == []

        pay(session, tmp_path, paid_on=TODAY + timedelta(days=15))  # the second sheet's due day: on time

        assert [s.number for s in late_payments(session, **doctor, today=TODAY + timedelta(days=60))] == [overdue.number]
        assert late_payments(session, payee_kind="professional", payee_id=world.specialist.id,
                             today=TODAY + timedelta(days=60)) == []


class TestReimbursementNotice:
    """An insured person paid a reimbursement hears it by SMS, in their language, once the run stands."""

    @staticmethod
    def notices(session) -> list[SmsMessage]:
        return list(session.scalars(select(SmsMessage).where(SmsMessage.purpose == "reimbursement")))

    def test_a_postal_order_is_announced_in_arabic_with_where_to_collect_it(self, world, session, month, tmp_path):
        result = pay(session, tmp_path)
        session.commit()

        insured = next(s for s in result.statements if s.payee_kind == "person")
        [notice] = self.notices(session)
        person = session.get(Person, world.member.person_id)
        # Queued with the run, sent by `labes sms dispatch` on the payment day (a gateway down holds nothing up).
        assert (notice.number, notice.direction, notice.status) == (person.phone, "out", "queued")
        assert f"{insured.net_millimes // 1000}.{insured.net_millimes % 1000:03d} د.ت" in notice.text
        assert insured.number in notice.text and "حوالة بريدية" in notice.text and "مكتب بريد" in notice.text
        assert f"ابتداءً من {TODAY:%d/%m/%Y}" in notice.text

    def test_a_transfer_is_announced_in_french_with_the_account_masked(self, world, session, month, tmp_path):
        account = factories.iban()
        service.update_person(session, actor=factories.ACTOR, person_id=world.member.person_id,
                              data=PersonUpdate(iban=account, language="fr"))

        pay(session, tmp_path, paid_on=TODAY + timedelta(days=3))
        session.commit()

        [notice] = self.notices(session)
        assert f"est viré sur votre compte {account[:4]} •••• {account[-4:]} le {TODAY + timedelta(days=3):%d/%m/%Y}" \
            in notice.text
        assert f"{account[:4]} •••• {account[-4:]}" in notice.text and account not in notice.text

    def test_a_rolled_back_run_sends_nothing(self, session, month, tmp_path):
        pay(session, tmp_path)
        session.rollback()
        session.commit()

        assert self.notices(session) == []

    def test_no_phone_no_notice(self, world, session, month, tmp_path):
        service.update_person(session, actor=factories.ACTOR, person_id=world.member.person_id,
                              data=PersonUpdate(phone=None))

        result = pay(session, tmp_path)
        session.commit()

        assert any(s.payee_kind == "person" for s in result.statements) and self.notices(session) == []


class TestLatePaymentReport:
    """Per provider: the sheets the fund paid after its deadline or still owes past it."""

    def test_a_provider_paid_after_its_deadline_and_one_paid_on_time(self, world, session, month, tmp_path):
        pay(session, tmp_path, paid_on=TODAY + timedelta(days=16))  # a day after the doctors' 15: both late
        later = TODAY + timedelta(days=40)

        report = late_payment_report(session, today=later, since=TODAY)

        [doctor] = [e for e in report if e.payee_identifier == world.doctor.licence]
        assert (doctor.payee_kind, doctor.payee_name, doctor.sheets_due, doctor.paid_late, doctor.overdue) == (
            "professional", "Dr Sami Trabelsi", 2, 2, 0)
        assert doctor.paid_late_millimes == month["first"]["fund_millimes"] + month["second"]["fund_millimes"]
        assert (doctor.on_time_percent, doctor.average_days_late, doctor.most_days_late) == (0, 1, 1)
        assert world.specialist.licence in {e.payee_identifier for e in report}  # also a doctor's 15 days
        assert all(e.payee_kind != "person" for e in report)  # reimbursements are not third-party payments

    def test_sheets_still_unpaid_past_their_deadline_come_first(self, world, session, month, tmp_path):
        world.doctor.iban = None  # held back by every run: still owed
        session.flush()
        pay(session, tmp_path, paid_on=TODAY + timedelta(days=16))
        later = TODAY + timedelta(days=20)

        report = late_payment_report(session, today=later, since=TODAY)

        assert report[0].payee_identifier == world.doctor.licence
        assert (report[0].overdue, report[0].paid_late, report[0].most_days_late) == (2, 0, 5)
        assert report[0].overdue_millimes == month["first"]["fund_millimes"] + month["second"]["fund_millimes"]
        assert [e.payee_identifier for e in late_payment_report(session, today=later, since=TODAY,
                                                               payee=("professional", world.specialist.id))] == [
            world.specialist.licence]

    def test_a_payment_made_after_the_day_looked_from_does_not_count_yet(self, world, session, month, tmp_path):
        pay(session, tmp_path, paid_on=TODAY + timedelta(days=30))  # the doctor's two sheets were due at 15 days
        doctor = ("professional", world.doctor.id)

        [then] = late_payment_report(session, today=TODAY + timedelta(days=20), since=TODAY, payee=doctor)
        [after] = late_payment_report(session, today=TODAY + timedelta(days=40), since=TODAY, payee=doctor)

        assert (then.overdue, then.paid_late, then.most_days_late) == (2, 0, 5)  # seen on day 20: still owed
        assert (after.overdue, after.paid_late, after.most_days_late) == (0, 2, 15)
        assert len(late_payments(session, payee_kind="professional", payee_id=world.doctor.id,
                                 today=TODAY + timedelta(days=20))) == 2
        assert late_payments(session, payee_kind="professional", payee_id=world.doctor.id,
                             today=TODAY + timedelta(days=10)) == []

    def test_nothing_is_late_before_the_deadlines(self, session, month, tmp_path):
        pay(session, tmp_path)
        assert late_payment_report(session, today=TODAY + timedelta(days=60), since=TODAY) == []
        assert late_payment_report(session, today=TODAY, since=TODAY - timedelta(days=30)) == []  # unpaid, not due

    def test_a_window_that_ends_before_it_starts_is_refused(self, session):
        with pytest.raises(InvalidInput, match="after the day looked from"):
            late_payment_report(session, today=TODAY, since=TODAY + timedelta(days=1))

    def test_the_api_reports_to_whoever_may_read_payments(self, world, session, client, month, tmp_path):
        world.doctor.iban = None
        session.flush()
        pay(session, tmp_path)
        finance, clerk = factories.agent_token(session, "finance"), factories.agent_token(session, "registry_clerk")
        session.commit()
        later = (TODAY + timedelta(days=20)).isoformat()

        everyone = client.get("/api/v1/claims/late-payments", params={"on": later, "since": TODAY.isoformat()},
                              headers={"Authorization": f"Bearer {finance}"})
        one = client.get("/api/v1/claims/late-payments", params={"on": later, "provider": world.doctor.licence},
                         headers={"Authorization": f"Bearer {finance}"})

        assert everyone.status_code == 200, everyone.text
        top = everyone.json()["payees"][0]
        assert (top["payee_identifier"], top["overdue"], top["most_days_late"], top["on_time_percent"]) == (
            world.doctor.licence, 2, 5, 0.0)
        assert everyone.json()["sheets"] == []
        assert one.status_code == 200, one.text
        assert sorted(s["number"] for s in one.json()["sheets"]) == sorted(
            [month["first"]["number"], month["second"]["number"]])
        assert {(s["paid_on"], s["days_late"]) for s in one.json()["sheets"]} == {(None, 5)}
        assert client.get("/api/v1/claims/late-payments",
                          headers={"Authorization": f"Bearer {clerk}"}).status_code == 403
        unknown = client.get("/api/v1/claims/late-payments", params={"provider": "NOBODY"},
                             headers={"Authorization": f"Bearer {finance}"})
        assert unknown.status_code == 404
        backwards = client.get("/api/v1/claims/late-payments", params={"on": TODAY.isoformat(), "since": later},
                               headers={"Authorization": f"Bearer {finance}"})
        assert backwards.status_code == 400 and "after the day looked from" in backwards.text


class TestCertificate:
    def test_the_certificate_has_the_year_and_its_seal_verifies(self, world, session, month, keys_dir, tmp_path):
        pay(session, tmp_path)
        consultation(world)
        second = pay(session, tmp_path)
        seal = load_authority(keys_dir, "seal")
        path = tmp_path / "certificate.pdf"

        issued, code = certificates.issue_certificate(session, provider=world.doctor.licence.lower(), year=TODAY.year,
                                                      seal=seal, path=path, issued_on=TODAY)

        pdf = path.read_bytes()
        assert pdf.startswith(b"%PDF") and b"DejaVu" in pdf  # the font with Arabic glyphs is embedded
        data = json.loads(certificates.attached_data(pdf))
        assert data == issued.data()
        assert len(data["statements"]) == 2 and data["statements"][1]["number"] == second.statements[0].number
        assert data["totals"] == {"gross": 39000, "withheld": 1170, "net": 37830}
        assert data["payee"]["identifier"] == world.doctor.licence and data["payer"]["name"].startswith("Caisse")
        assert code.startswith(f"LBTX1|RS-{TODAY.year}-{world.doctor.licence}|")
        assert certificates.verify_certificate_code(seal.public_key, code, data) == issued.id
        assert certificates.verify_certificate_code(seal.public_key, code, certificates.attached_data(pdf)) == issued.id

    def test_a_changed_figure_or_another_key_fails(self, world, session, month, keys_dir, tmp_path):
        pay(session, tmp_path)
        seal = load_authority(keys_dir, "seal")
        issued, code = certificates.issue_certificate(session, provider=world.doctor.licence, year=TODAY.year,
                                                      seal=seal, path=tmp_path / "c.pdf", issued_on=TODAY)
        tampered = json.loads(json.dumps(issued.data()))
        tampered["totals"]["withheld"] -= 1

        with pytest.raises(ValueError, match="does not match"):
            certificates.verify_certificate_code(seal.public_key, code, tampered)
        tampered = issued.data() | {"statements": [{**issued.data()["statements"][0], "gross": 1}]}
        with pytest.raises(ValueError, match="does not match"):
            certificates.verify_certificate_code(seal.public_key, code, tampered)
        with pytest.raises(ValueError, match="does not match"):
            certificates.verify_certificate_code(load_authority(keys_dir, "card-ca").public_key, code, issued.data())
        with pytest.raises(ValueError, match="is for certificate"):
            certificates.verify_certificate_code(seal.public_key, code, issued.data() | {"certificate": "RS-2026-X"})
        with pytest.raises(ValueError, match="not a Labes tax certificate"):
            certificates.verify_certificate_code(seal.public_key, "LB1|x|y", issued.data())

    def test_a_facility_is_certified_at_the_actual_rate(self, world, session, keys_dir, tmp_path):
        public = factories.member(session, scheme="public")
        world.card_for("public", person_id=public.person_id)
        answer = consultation(world, terminal=world.terminal("doctor", world.health_centre), card="public")
        assert answer["payee"] == "facility"
        pay(session, tmp_path)

        issued, _ = certificates.issue_certificate(session, provider=world.health_centre.code, year=TODAY.year,
                                                   seal=load_authority(keys_dir, "seal"), path=tmp_path / "f.pdf",
                                                   issued_on=TODAY)

        assert (issued.payee_kind, issued.tax_regime) == ("facility", "actual")
        assert issued.withheld_millimes == withheld_millimes(answer["fund_millimes"], Decimal(3))

    def test_no_payment_no_certificate(self, world, session, keys_dir, tmp_path):
        seal = load_authority(keys_dir, "seal")
        with pytest.raises(NotFound, match="nothing in"):
            certificates.issue_certificate(session, provider=world.doctor.licence, year=TODAY.year, seal=seal,
                                           path=tmp_path / "c.pdf", issued_on=TODAY)
        with pytest.raises(NotFound, match="No professional licence or facility code"):
            certificates.issue_certificate(session, provider="NOBODY", year=TODAY.year, seal=seal,
                                           path=tmp_path / "c.pdf", issued_on=TODAY)


# ---------------------------------------------------------------- committed data: concurrency and the command line


def committed_sheets(session, count: int, *, fund: int = 13000) -> tuple[list[str], str]:
    """Store `count` accepted care sheets decided today for one doctor, as if adjudicated; return numbers and licence."""
    doctor = factories.professional(session)
    clinic = factories.facility(session, kind="private_clinic", sector="private")
    member = factories.member(session, scheme="private", doctor=doctor.licence)
    now = datetime.now(UTC)
    numbers = []
    for _ in range(count):
        number = f"CS-T-{uuid.uuid4().hex[:12]}"
        session.add(CareSheet(
            number=number, client_key=uuid.uuid4().hex, kind="consultation", status="accepted",
            patient_person_id=member.person_id, member_id=member.id, professional_id=doctor.id, facility_id=clinic.id,
            care_date=now.date(), last_care_date=now.date(), signed_at=now, received_at=now, decided_at=now,
            content={}, content_digest="sha256:test", signed_transaction={}, billed_millimes=18000,
            fund_millimes=fund, patient_millimes=18000 - fund, payee="provider", payee_kind="professional",
            payee_id=doctor.id, payment_due_on=now.date() + timedelta(days=15), reasons=[]))
        numbers.append(number)
    session.flush()
    return numbers, doctor.licence


def test_a_sheet_another_run_holds_is_left_to_it(committed, db_url, tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers at BEGIN IMMEDIATE: two runs never overlap")
    with committed() as setup:
        numbers, _ = committed_sheets(setup, 3)
        setup.commit()
    holder, runner = committed(), committed()
    try:
        holder.execute(select(CareSheet.id).where(CareSheet.number == numbers[0]).with_for_update())
        runner.execute(text("SET LOCAL lock_timeout = '5s'"))  # waiting on the held row would be a failure, not a hang

        first = run_payments(runner, actor=factories.ACTOR, period=PERIOD, paid_on=TODAY, out_dir=tmp_path)
        runner.commit()
        holder.rollback()
        second = run_payments(runner, actor=factories.ACTOR, period=PERIOD, paid_on=TODAY, out_dir=tmp_path)
        runner.commit()
    finally:
        holder.close()
        runner.close()

    assert (first.care_sheets, second.care_sheets) == (2, 1)
    with committed() as check:
        assert check.scalar(select(CareSheet.statement_id).where(CareSheet.number == numbers[0])) == \
            check.scalar(select(ProviderStatement.id).where(ProviderStatement.number == second.statements[0].number))


class TestCommandLine:
    def test_run_then_certificate(self, cli_runner, committed, keys_dir, monkeypatch, tmp_path):
        monkeypatch.setenv("LABES_KEYS_DIR", str(keys_dir))
        with committed() as session:
            _, licence = committed_sheets(session, 2)
            session.commit()

        ran = cli_runner.invoke(payments_cli, ["run", "--period", PERIOD, "--paid-on", TODAY.isoformat(),
                                               "--out", str(tmp_path / "payments")])

        assert ran.exit_code == 0, ran.output
        number = re.search(rf"PR-{PERIOD}-\d{{4}}", ran.output)[0]
        assert "26.000 TND" in ran.output and "0.780 TND" in ran.output and "25.220 TND" in ran.output
        with committed() as session:
            account = session.scalar(select(Professional.iban).where(Professional.licence == licence))
        assert f"transfer {account[:4]} •••• {account[-4:]}" in ran.output and account not in ran.output
        assert "payment file:" in ran.output and "remittance advice: 1 files" in ran.output
        assert (tmp_path / "payments" / number / f"{number}-payments.csv").is_file()
        again = cli_runner.invoke(payments_cli, ["run", "--period", PERIOD, "--out", str(tmp_path / "payments")])
        assert again.exit_code == 0 and "nothing to pay" in again.output, again.output

        pdf = tmp_path / "certificate.pdf"
        issued = cli_runner.invoke(payments_cli, ["certificate", "--provider", licence, "--year", str(TODAY.year),
                                                  "--out", str(pdf)])

        assert issued.exit_code == 0, issued.output
        assert "withheld 0.780 TND" in issued.output
        code = re.search(r"seal code: (\S+)", issued.output)[1]
        seal = load_authority(keys_dir, "seal")
        assert certificates.verify_certificate_code(seal.public_key, code,
                                                    certificates.attached_data(pdf.read_bytes())).startswith("RS-")

    def test_files_that_could_not_be_written_are_written_again(self, cli_runner, committed, tmp_path):
        with committed() as session:
            committed_sheets(session, 1)
            session.commit()
        blocked = tmp_path / "blocked"
        blocked.write_text("a file where the directory should be")

        ran = cli_runner.invoke(payments_cli, ["run", "--period", PERIOD, "--out", str(blocked)])

        assert ran.exit_code == 1 and "is committed, but its files could not be written" in ran.output, ran.output
        number = re.search(rf"PR-{PERIOD}-\d{{4}}", ran.output)[0]
        with committed() as session:
            assert session.scalar(select(PaymentRun.care_sheets).where(PaymentRun.number == number)) == 1
        again = cli_runner.invoke(payments_cli, ["files", number, "--out", str(tmp_path / "out")])
        assert again.exit_code == 0 and "2 files written" in again.output, again.output
        [row] = read_csv(tmp_path / "out" / number / f"{number}-payments.csv")
        assert (row["gross_tnd"], row["tax_withheld_tnd"], row["net_tnd"]) == ("13.000", "0.390", "12.610")
        missing = cli_runner.invoke(payments_cli, ["files", "PR-1999-01-0001"])
        assert missing.exit_code == 1 and "No payment run PR-1999-01-0001" in missing.output

    def test_a_run_lists_the_providers_it_holds_back(self, cli_runner, committed, tmp_path):
        with committed() as session:
            _, licence = committed_sheets(session, 2)
            session.execute(text("UPDATE professional SET iban = NULL WHERE licence = :licence"), {"licence": licence})
            session.commit()

        ran = cli_runner.invoke(payments_cli, ["run", "--period", PERIOD, "--out", str(tmp_path)])

        assert ran.exit_code == 0, ran.output
        assert "Held back: 1 providers have no bank account on record" in ran.output
        assert f"professional {licence}" in ran.output and "2 sheets, 26.000 TND" in ran.output
        assert "nothing paid" in ran.output and "every payee waiting is held back" in ran.output
        assert "TOTAL" not in ran.output  # no empty table of statements after it

    def test_late_payments_per_provider(self, cli_runner, committed, tmp_path):
        with committed() as session:
            numbers, licence = committed_sheets(session, 2)
            session.execute(text("UPDATE care_sheet SET payment_due_on = :due"), {"due": TODAY - timedelta(days=3)})
            session.commit()
        report = tmp_path / "late.csv"

        everyone = cli_runner.invoke(payments_cli, ["late", "--since", (TODAY - timedelta(days=30)).isoformat(),
                                                    "--csv", str(report)])
        one = cli_runner.invoke(payments_cli, ["late", "--provider", licence.lower(),
                                               "--since", (TODAY - timedelta(days=30)).isoformat()])

        assert everyone.exit_code == 0, everyone.output
        assert licence in everyone.output and "26.000 TND" in everyone.output
        [row] = read_csv(report)
        assert (row["payee_identifier"], row["overdue"], row["overdue_millimes"], row["most_days_late"]) == (
            licence, "2", "26000", "3")
        assert one.exit_code == 0, one.output
        assert all(f"{number} of" in one.output for number in numbers) and "unpaid, 3 days late" in one.output
        nobody = cli_runner.invoke(payments_cli, ["late", "--provider", "NOBODY"])
        assert nobody.exit_code == 1 and "No professional licence or facility code NOBODY" in nobody.output

    def test_mistakes_exit_1_with_a_message(self, cli_runner, keys_dir, monkeypatch, tmp_path):
        monkeypatch.setenv("LABES_KEYS_DIR", str(keys_dir))
        bad_period = cli_runner.invoke(payments_cli, ["run", "--period", "2026-13", "--out", str(tmp_path)])
        assert bad_period.exit_code == 1 and "YYYY-MM" in bad_period.output
        bad_day = cli_runner.invoke(payments_cli, ["run", "--period", PERIOD, "--paid-on", "tomorrow"])
        assert bad_day.exit_code == 1 and "YYYY-MM-DD" in bad_day.output
        unknown = cli_runner.invoke(payments_cli, ["certificate", "--provider", "NOBODY", "--year", "2026",
                                                   "--out", str(tmp_path / "x.pdf")])
        assert unknown.exit_code == 1 and "No professional licence or facility code NOBODY" in unknown.output


def test_a_sheet_decided_just_after_midnight_in_tunis_is_the_new_months(world, session, tmp_path):
    # 00:30 on the 1st in Tunis is 23:30 UTC on the last day of the month before: the fund's months are Tunisia's.
    sent = consultation(world)
    start, end = parse_period(PERIOD)
    sheet(session, sent["number"]).decided_at = datetime.combine(end, datetime.min.time(), UTC) - timedelta(minutes=30)
    session.flush()
    assert pay(session, tmp_path, paid_on=end - timedelta(days=1)).statements == ()  # not this month's
    assert [s.care_sheets for s in pay(session, tmp_path, period=f"{end:%Y-%m}", paid_on=end).statements] == [1]
