"""Care sheets at the point of care: exactly once, within the deadline, along the care pathway, corrected, queued offline,
with prior approvals, and seen only by the facility that sent them."""

from __future__ import annotations

import csv
import uuid
from datetime import UTC, datetime, time, timedelta
from importlib import resources

import httpx2
import pytest
from sqlalchemy import select, update

from labes.cards import service as cards
from labes.cards.distribution import TUNIS
from labes.care import sheets, transactions
from labes.care.models import CareSheet, CareSheetRevision, Dispensation, Prescription, UsedChallenge, Visit
from labes.care.schemas import CareSheetContent
from labes.claims.models import PriorApproval
from labes.registry import providers
from labes.terminal import FundUnreachable, OfflineQueue, Refused, Terminal
from tests import factories
from tests.care.helpers import problem, row_counts

API = "/api/v1/care"
TABLES = (CareSheet, CareSheetRevision, Visit, Prescription, Dispensation, PriorApproval, UsedChallenge)


def counts(session) -> dict[str, int]:
    return row_counts(session, TABLES)



def reason(label_en: str) -> str:
    """Return the code of the rejection reason whose English label contains `label_en` (rejection_reasons.csv)."""
    with resources.files("labes.rules").joinpath("rejection_reasons.csv").open(encoding="utf-8-sig") as handle:
        [code] = [row["code"] for row in csv.DictReader(handle) if label_en.lower() in row["label_en"].lower()]
    return code


DEADLINE = reason("after the deadline")
NO_REFERRAL = reason("specialist consulted without a referral")
NO_APPROVAL = reason("prior approval")


def utc_now() -> datetime:
    return datetime.now(UTC)


def today():
    """Today in Tunisia: the day a care sheet is for."""
    return utc_now().astimezone(TUNIS).date()


def sheet(code: str = "CMF", *, days_ago: int = 0, **overrides) -> dict:
    content = {"client_key": uuid.uuid4().hex, "kind": "consultation",
               "care_date": (today() - timedelta(days=days_ago)).isoformat(), "diagnoses": ["J06.9"],
               "lines": [{"code": code, "quantity": 1}]}
    content.update(overrides)
    return content


def send(world, terminal: Terminal, content: dict, *, patient=None, path: str = f"{API}/care-sheets",
         action: str = "care-sheet"):
    """Post `content` signed online (with a challenge) by `terminal` and the patient's card."""
    body = terminal.sign(action, content, patient_card=patient or world.cards["patient"], challenge=terminal.challenge(),
                         client_key=content["client_key"])
    return world.client.post(path, json=body)


def send_offline(world, terminal: Terminal, content: dict, *, signed_at: datetime | None = None):
    """Post `content` signed offline: with its client key and no challenge, at `signed_at`."""
    body = terminal.sign("care-sheet", content, patient_card=world.cards["patient"], client_key=content["client_key"],
                         now=signed_at)
    return world.client.post(f"{API}/care-sheets", json=body)


def stored(session, number: str) -> CareSheet:
    session.expire_all()
    return session.scalar(select(CareSheet).where(CareSheet.number == number))


@pytest.fixture
def specialist(world) -> Terminal:
    return world.terminal("specialist", world.clinic)


class TestExactlyOnce:
    def test_the_same_client_key_answers_200_with_the_same_sheet(self, world, session):
        before = counts(session)
        content = sheet()
        first = send(world, world.doctor_at_clinic, content)
        assert first.status_code == 201, first.text
        again = send(world, world.doctor_at_clinic, content)
        assert again.status_code == 200, again.text
        assert again.json()["number"] == first.json()["number"]
        assert again.json()["decision"] == first.json()["decision"]
        assert again.json()["acknowledgement"] == first.json()["acknowledgement"]
        assert again.json()["status"] == first.json()["status"] == "accepted"
        assert counts(session)["care_sheet"] == before["care_sheet"] + 1
        assert counts(session)["visit"] == before["visit"] + 1

    def test_an_offline_body_sent_twice_is_stored_once(self, world, session):
        before = counts(session)
        content = sheet()
        first = send_offline(world, world.doctor_at_clinic, content)
        again = send_offline(world, world.doctor_at_clinic, content)
        assert (first.status_code, again.status_code) == (201, 200), again.text
        assert again.json()["number"] == first.json()["number"]
        assert counts(session)["care_sheet"] == before["care_sheet"] + 1

    def test_the_same_client_key_with_other_content_is_a_conflict(self, world, session):
        content = sheet()
        number = send(world, world.doctor_at_clinic, content).json()["number"]
        before = counts(session)
        answer = problem(send(world, world.doctor_at_clinic, {**content, "diagnoses": ["J02.9"]}), 409, "conflict")
        assert number in answer["detail"]
        assert answer["errors"][0]["field"] == "content.client_key"
        assert counts(session) == before
        assert stored(session, number).content["diagnoses"] == ["J06.9"]

    def test_another_providers_client_key_is_a_conflict(self, world, session, specialist):
        content = sheet()
        assert send(world, world.doctor_at_clinic, content).status_code == 201
        before = counts(session)
        problem(send(world, specialist, {**content, "lines": [{"code": "CS", "quantity": 1}]}), 409, "conflict")
        problem(send(world, specialist, content), 409, "conflict")
        assert counts(session) == before

    def test_the_same_client_key_and_content_for_another_patient_is_a_conflict(self, world, session):
        member = factories.member(session, scheme="private", doctor=world.doctor.licence)
        session.flush()
        other = world.card_for("other_patient", person_id=member.person_id)
        content = sheet()
        number = send(world, world.doctor_at_clinic, content).json()["number"]
        before = counts(session)
        problem(send(world, world.doctor_at_clinic, content, patient=other), 409, "conflict")
        assert counts(session) == before
        assert stored(session, number).patient_person_id == world.member.person_id

    def test_a_client_key_signed_apart_from_the_content_must_be_the_contents(self, world, session):
        before = counts(session)
        content = sheet()
        body = world.doctor_at_clinic.sign("care-sheet", content, patient_card=world.cards["patient"],
                                           client_key=uuid.uuid4().hex)
        problem(world.client.post(f"{API}/care-sheets", json=body), 400, "invalid-input")
        assert counts(session) == before


class TestDeadline:
    def test_day_61_is_stored_rejected_for_the_deadline(self, world, session):
        before = counts(session)
        content = sheet(days_ago=61)
        response = send_offline(world, world.doctor_at_clinic, content, signed_at=utc_now() - timedelta(days=61))
        assert response.status_code == 201, response.text
        answer = response.json()
        assert (answer["status"], answer["reasons"]) == ("rejected", [DEADLINE])
        assert (answer["fund_millimes"], answer["payee"], answer["payment_due_on"]) == (0, None, None)
        assert stored(session, answer["number"]).status == "rejected"
        assert counts(session)["care_sheet"] == before["care_sheet"] + 1

    def test_day_60_is_accepted(self, world, session):
        content = sheet(days_ago=60)
        response = send_offline(world, world.doctor_at_clinic, content, signed_at=utc_now() - timedelta(days=60))
        assert response.status_code == 201, response.text
        assert (response.json()["status"], response.json()["reasons"]) == ("accepted", [])

    def test_the_deadline_runs_from_the_last_date_of_care(self, world, session):
        content = sheet(days_ago=75, last_care_date=(today() - timedelta(days=60)).isoformat())
        response = send_offline(world, world.doctor_at_clinic, content, signed_at=utc_now() - timedelta(days=60))
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "accepted"

    def test_a_sheet_dated_after_its_signature_is_refused(self, world, session):
        before = counts(session)
        content = sheet(days_ago=-1)
        answer = problem(send(world, world.doctor_at_clinic, content), 400, "invalid-input")
        assert answer["errors"][0]["field"] == "content.care_date"
        assert counts(session) == before


class TestLocalDay:
    """Dates of care are Tunisian dates (UTC+1): the hour after local midnight is already the new day."""

    def test_a_sheet_signed_just_after_local_midnight_is_for_that_day(self, world, session):
        day = today() - timedelta(days=2)
        content = sheet(care_date=day.isoformat())
        signed_at = datetime.combine(day, time(0, 30), TUNIS)  # 23:30 UTC the day before
        response = send_offline(world, world.doctor_at_clinic, content, signed_at=signed_at)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "accepted"

    def test_a_sheet_sent_just_after_local_midnight_is_not_dated_after_its_submission(self, world, session, keys_dir):
        day = today() - timedelta(days=2)
        moment = datetime.combine(day, time(0, 30), TUNIS).astimezone(UTC)
        content = sheet(care_date=day.isoformat())
        body = world.doctor_at_clinic.sign("care-sheet", content, patient_card=world.cards["patient"],
                                           client_key=content["client_key"], now=moment)
        verified = transactions.accept(session, body=body, action="care-sheet", now=moment,
                                       secret=transactions.challenge_secret(keys_dir.resolve()),
                                       freshness="challenge-or-client-key")
        stored_sheet = sheets.submit(session, verified=verified, content=CareSheetContent.model_validate(content))
        assert (stored_sheet.status, stored_sheet.reasons) == ("accepted", [])


class TestCarePathway:
    def test_a_specialist_without_referral_is_rejected_then_accepted_after_the_family_doctors_referral(
            self, world, session, specialist):
        before = counts(session)
        refused = send(world, specialist, sheet("CS"))
        assert refused.status_code == 201, refused.text
        assert (refused.json()["status"], refused.json()["reasons"]) == ("rejected", [NO_REFERRAL])

        referral = send(world, world.doctor_at_clinic, sheet(referral_to="cardiology"))
        assert referral.json()["status"] == "accepted"

        accepted = send(world, specialist, sheet("CS"))
        assert (accepted.json()["status"], accepted.json()["reasons"]) == ("accepted", [])
        assert accepted.json()["payee"] == "provider" and accepted.json()["fund_millimes"] > 0
        assert counts(session)["care_sheet"] == before["care_sheet"] + 3

    @pytest.mark.parametrize(("days", "reasons"), [(0, []), (90, []), (91, [NO_REFERRAL])])
    def test_a_referral_is_good_for_90_days(self, world, session, specialist, days, reasons):
        number = send(world, world.doctor_at_clinic, sheet(referral_to="cardiology")).json()["number"]
        session.execute(update(Visit).where(Visit.number == number.replace("CS-", "VS-", 1))
                        .values(care_date=today() - timedelta(days=days)))
        session.flush()
        assert send(world, specialist, sheet("CS")).json()["reasons"] == reasons

    def test_a_referral_opens_the_specialist_only_after_it(self, world, session, specialist):
        assert send(world, world.doctor_at_clinic, sheet(referral_to="cardiology")).json()["status"] == "accepted"
        earlier = sheet("CS", days_ago=3)
        answer = specialist.sign("care-sheet", earlier, patient_card=world.cards["patient"],
                                 client_key=earlier["client_key"], now=utc_now() - timedelta(days=3))
        assert world.client.post(f"{API}/care-sheets", json=answer).json()["reasons"] == [NO_REFERRAL]

    def test_a_referral_to_another_specialty_does_not_open_cardiology(self, world, session, specialist):
        assert send(world, world.doctor_at_clinic, sheet(referral_to="dermatology")).json()["status"] == "accepted"
        answer = send(world, specialist, sheet("CS")).json()
        assert (answer["status"], answer["reasons"]) == ("rejected", [NO_REFERRAL])

    def test_a_rejected_sheets_referral_refers_no_one(self, world, session, specialist):
        assert send(world, world.doctor_at_clinic, sheet("CX9", referral_to="cardiology")).json()["status"] == "rejected"
        assert send(world, specialist, sheet("CS")).json()["reasons"] == [NO_REFERRAL]

    def test_a_consultation_without_referral_opens_nothing(self, world, session, specialist):
        assert send(world, world.doctor_at_clinic, sheet()).json()["status"] == "accepted"
        assert send(world, specialist, sheet("CS")).json()["reasons"] == [NO_REFERRAL]

    def test_a_referral_by_a_doctor_who_is_not_the_family_doctor_does_not_count(self, world, session, specialist):
        other = factories.professional(session, name_lat="Dr Hedi Mansour")
        providers.add_practice(session, actor=factories.ACTOR, licence=other.licence, facility_code=world.clinic.code)
        world.card_for("other_gp", licence=other.licence, pin="1357")
        session.flush()
        answer = send(world, world.terminal("other_gp", world.clinic), sheet("C", referral_to="cardiology")).json()
        assert answer["status"] == "rejected"  # not the family doctor: R13
        assert send(world, specialist, sheet("CS")).json()["reasons"] == [NO_REFERRAL]


class TestCorrection:
    def rejected(self, world) -> dict:
        # A GP billing the specialist consultation: rejected, to be corrected.
        answer = send(world, world.doctor_at_clinic, sheet("CS")).json()
        assert answer["status"] == "rejected", answer
        return answer

    def test_a_rejected_sheet_is_corrected_under_its_own_number(self, world, session):
        first = self.rejected(world)
        before = counts(session)
        corrected = send(world, world.doctor_at_clinic, sheet("CMF"),
                         path=f"{API}/care-sheets/{first['number']}/corrections",
                         action="care-sheet-correction")
        assert corrected.status_code == 200, corrected.text
        answer = corrected.json()
        assert (answer["number"], answer["version"], answer["status"]) == (first["number"], 2, "accepted")
        assert counts(session)["care_sheet"] == before["care_sheet"]
        assert counts(session)["care_sheet_revision"] == before["care_sheet_revision"] + 1
        current = stored(session, first["number"])
        revision = session.scalar(select(CareSheetRevision).where(CareSheetRevision.care_sheet_id == current.id))
        assert (revision.version, revision.status, revision.reasons) == (1, "rejected", first["reasons"])
        assert revision.client_key == first["acknowledgement"]["client_key"]
        assert revision.content["lines"] == [{"code": "CS", "quantity": 1}]

    def test_a_sheet_rejected_again_is_corrected_again(self, world, session):
        first = self.rejected(world)
        path = f"{API}/care-sheets/{first['number']}/corrections"
        second = send(world, world.doctor_at_clinic, sheet("CS", diagnoses=["J02.9"]), path=path,
                      action="care-sheet-correction").json()
        assert (second["version"], second["status"]) == (2, "rejected")
        third = send(world, world.doctor_at_clinic, sheet("CMF"), path=path, action="care-sheet-correction").json()
        assert (third["number"], third["version"], third["status"]) == (first["number"], 3, "accepted")
        current = stored(session, first["number"])
        versions = session.scalars(select(CareSheetRevision.version).where(CareSheetRevision.care_sheet_id == current.id)
                                   .order_by(CareSheetRevision.version))
        assert list(versions) == [1, 2]

    def test_a_correction_sent_offline_is_accepted_once(self, world, session):
        first = self.rejected(world)
        content = sheet("CMF")
        body = world.doctor_at_clinic.sign("care-sheet-correction", content, patient_card=world.cards["patient"],
                                           client_key=content["client_key"])
        path = f"{API}/care-sheets/{first['number']}/corrections"
        once, twice = world.client.post(path, json=body), world.client.post(path, json=body)
        assert (once.status_code, twice.status_code) == (200, 200), twice.text
        assert once.json()["version"] == twice.json()["version"] == 2
        assert counts(session)["care_sheet_revision"] == 1

    def test_a_correction_whose_signed_client_key_is_not_the_contents_is_refused(self, world, session):
        first = self.rejected(world)
        before = counts(session)
        body = world.doctor_at_clinic.sign("care-sheet-correction", sheet("CMF"), patient_card=world.cards["patient"],
                                           client_key=uuid.uuid4().hex)
        problem(world.client.post(f"{API}/care-sheets/{first['number']}/corrections", json=body), 400, "invalid-input")
        assert counts(session) == before

    def test_the_correction_carries_its_referral(self, world, session, specialist):
        first = self.rejected(world)
        corrected = send(world, world.doctor_at_clinic, sheet("CMF", referral_to="cardiology"),
                         path=f"{API}/care-sheets/{first['number']}/corrections", action="care-sheet-correction")
        assert corrected.json()["status"] == "accepted"
        answer = send(world, specialist, sheet("CS")).json()
        assert (answer["status"], answer["reasons"]) == ("accepted", [])

    def test_an_accepted_sheet_cannot_be_corrected(self, world, session):
        accepted = send(world, world.doctor_at_clinic, sheet()).json()
        assert accepted["status"] == "accepted"
        before = counts(session)
        answer = problem(send(world, world.doctor_at_clinic, sheet(diagnoses=["J02.9"]),
                              path=f"{API}/care-sheets/{accepted['number']}/corrections", action="care-sheet-correction"),
                         422, "rule-violation")
        assert "accepted" in answer["detail"]
        assert counts(session) == before
        assert stored(session, accepted["number"]).version == 1

    def test_only_the_provider_who_sent_it_corrects_it(self, world, session, specialist):
        first = self.rejected(world)
        before = counts(session)
        problem(send(world, specialist, sheet("CS"), path=f"{API}/care-sheets/{first['number']}/corrections",
                     action="care-sheet-correction"), 403, "not-permitted")
        assert counts(session) == before

    def test_a_correction_keeps_the_kind(self, world, session):
        first = self.rejected(world)
        before = counts(session)
        problem(send(world, world.doctor_at_clinic, sheet("CD", kind="dental"),
                     path=f"{API}/care-sheets/{first['number']}/corrections", action="care-sheet-correction"),
                400, "invalid-input")
        assert counts(session) == before

    def test_a_correction_with_the_original_client_key_is_a_conflict(self, world, session):
        first = self.rejected(world)
        before = counts(session)
        content = sheet("CMF", client_key=first["acknowledgement"]["client_key"])
        problem(send(world, world.doctor_at_clinic, content, path=f"{API}/care-sheets/{first['number']}/corrections",
                     action="care-sheet-correction"), 409, "conflict")
        assert counts(session) == before

    def test_an_unknown_sheet_cannot_be_corrected(self, world, session):
        before = counts(session)
        problem(send(world, world.doctor_at_clinic, sheet(), path=f"{API}/care-sheets/CS-1999-00000001/corrections",
                     action="care-sheet-correction"), 404, "not-found")
        assert counts(session) == before


def unreachable(request):
    raise httpx2.ConnectError("network is unreachable", request=request)


class TestOfflineQueue:
    @pytest.fixture
    def queue(self, tmp_path) -> OfflineQueue:
        return OfflineQueue(tmp_path / "queue.sqlite")

    def offline(self, world, queue) -> Terminal:
        down = httpx2.Client(transport=httpx2.MockTransport(unreachable), base_url="http://fund.invalid")
        return Terminal(facility=world.clinic.code, card=world.cards["doctor"], client=down, queue=queue)

    def test_a_sheet_queued_offline_is_sent_exactly_once(self, world, session, queue):
        before = counts(session)
        receipt = self.offline(world, queue).send_care_sheet(world.cards["patient"], sheet())
        assert receipt["queued"] is True and len(queue) == 1
        assert counts(session) == before

        online = world.terminal("doctor", world.clinic, queue=queue)
        [answer] = online.flush()
        assert answer["acknowledgement"]["client_key"] == receipt["client_key"] and answer["status"] == "accepted"
        assert len(queue) == 0 and queue.refused() == []
        assert online.flush() == []
        assert counts(session)["care_sheet"] == before["care_sheet"] + 1
        assert counts(session)["used_challenge"] == before["used_challenge"]  # sent with its client key, no challenge

    def test_a_lost_answer_is_sent_again_and_still_stored_once(self, world, session, queue):
        def answer_lost(request):
            world.client.post(request.url.path, content=request.content, headers={"content-type": "application/json"})
            raise httpx2.ConnectError("connection reset by peer", request=request)

        before = counts(session)
        receipt = self.offline(world, queue).send_care_sheet(world.cards["patient"], sheet())
        flaky = Terminal(facility=world.clinic.code, card=world.cards["doctor"], queue=queue,
                         client=httpx2.Client(transport=httpx2.MockTransport(answer_lost), base_url="http://fund"))
        assert flaky.flush() == []
        assert len(queue) == 1 and queue.waiting()[0].attempts == 1
        assert counts(session)["care_sheet"] == before["care_sheet"] + 1  # the fund has it; the terminal does not know

        [answer] = world.terminal("doctor", world.clinic, queue=queue).flush()
        assert answer["acknowledgement"]["client_key"] == receipt["client_key"]
        assert len(queue) == 0
        assert counts(session)["care_sheet"] == before["care_sheet"] + 1

    def test_several_queued_sheets_are_each_sent_once(self, world, session, queue):
        before = counts(session)
        offline = self.offline(world, queue)
        keys = {offline.send_care_sheet(world.cards["patient"], sheet())["client_key"] for _ in range(3)}
        online = world.terminal("doctor", world.clinic, queue=queue)
        answers = online.flush()
        assert {a["acknowledgement"]["client_key"] for a in answers} == keys
        assert len({a["number"] for a in answers}) == 3
        online.flush()
        assert counts(session)["care_sheet"] == before["care_sheet"] + 3

    def test_a_queued_sheet_the_fund_refuses_stays_aside(self, world, session, queue):
        before = counts(session)
        offline = self.offline(world, queue)
        bad = offline.send_care_sheet(world.cards["patient"], sheet(diagnoses=["flu"]))  # no check offline
        good = offline.send_care_sheet(world.cards["patient"], sheet())
        online = world.terminal("doctor", world.clinic, queue=queue)
        answers = {a.get("client_key") or a["acknowledgement"]["client_key"]: a for a in online.flush()}
        assert answers[bad["client_key"]]["refused"]["type"].endswith("/malformed-request")
        assert answers[good["client_key"]]["status"] == "accepted"
        assert [q.client_key for q in queue.refused()] == [bad["client_key"]]
        assert len(queue) == 0
        assert online.flush() == []
        assert counts(session)["care_sheet"] == before["care_sheet"] + 1

    def test_a_queued_sheet_whose_card_was_blocked_meanwhile_stays_aside(self, world, session, queue):
        receipt = self.offline(world, queue).send_care_sheet(world.cards["patient"], sheet())
        cards.block(session, actor=factories.ACTOR, serial=world.cards["patient"].serial, reason="stolen")
        session.flush()
        before = counts(session)
        [answer] = world.terminal("doctor", world.clinic, queue=queue).flush()
        assert answer["refused"]["type"].endswith("/card-refused")
        assert [q.client_key for q in queue.refused()] == [receipt["client_key"]]
        assert counts(session) == before

    def test_without_a_queue_the_terminal_says_the_fund_is_unreachable(self, world, session):
        down = httpx2.Client(transport=httpx2.MockTransport(unreachable), base_url="http://fund.invalid")
        terminal = Terminal(facility=world.clinic.code, card=world.cards["doctor"], client=down)
        with pytest.raises(FundUnreachable):
            terminal.send_care_sheet(world.cards["patient"], sheet())


class TestPriorApproval:
    def angioplasty(self, approval: str | None = None) -> dict:
        content = sheet("ANGIO-COR", kind="hospital", diagnoses=["I20.0"])
        if approval:
            content["approval"] = approval
        return content

    def decide(self, world, session, number: str, **decision):
        token = factories.agent_token(session, "reviewer")
        session.flush()
        return world.client.post(f"/api/v1/claims/approvals/{number}/decision", json=decision,
                                 headers={"Authorization": f"Bearer {token}"})

    def test_an_act_needing_approval_is_accepted_once_approved(self, world, session, specialist):
        refused = send(world, specialist, self.angioplasty()).json()
        assert (refused["status"], refused["reasons"]) == ("rejected", [NO_APPROVAL])

        requested = specialist.request_approval(world.cards["patient"], code="ANGIO-COR", diagnoses=["I20.0"],
                                                justification="Angor instable, sténose serrée de l'IVA")
        assert requested["state"] == "requested"
        pending = send(world, specialist, self.angioplasty(requested["number"])).json()
        assert pending["reasons"] == [NO_APPROVAL]  # asked is not approved

        decided = self.decide(world, session, requested["number"], approve=True)
        assert decided.status_code == 200, decided.text
        assert decided.json()["state"] == "approved" and decided.json()["valid_to"] is not None

        accepted = send(world, specialist, self.angioplasty(requested["number"])).json()
        assert (accepted["status"], accepted["reasons"]) == ("accepted", [])
        assert accepted["fund_millimes"] > 0

    def test_an_approval_is_used_once_and_for_the_quantity_approved(self, world, session, specialist):
        requested = specialist.request_approval(world.cards["patient"], code="ANGIO-COR", diagnoses=["I20.0"],
                                                justification="Angor instable, sténose serrée de l'IVA")
        assert self.decide(world, session, requested["number"], approve=True).status_code == 200
        three = self.angioplasty(requested["number"])
        three["lines"][0]["quantity"] = 3

        assert send(world, specialist, three).json()["reasons"] == [NO_APPROVAL]  # 1 approved, 3 billed
        assert send(world, specialist, self.angioplasty(requested["number"])).json()["status"] == "accepted"
        again = send(world, specialist, self.angioplasty(requested["number"])).json()

        assert (again["status"], again["reasons"]) == ("rejected", [NO_APPROVAL])
        assert session.scalar(select(PriorApproval.state).where(PriorApproval.number == requested["number"])) == "used"

    def test_a_sheet_citing_no_number_stays_rejected_even_with_an_approval_on_file(self, world, session, specialist):
        requested = specialist.request_approval(world.cards["patient"], code="ANGIO-COR",
                                                justification="Angor instable, sténose serrée de l'IVA")
        assert self.decide(world, session, requested["number"], approve=True).status_code == 200
        assert send(world, specialist, self.angioplasty()).json()["reasons"] == [NO_APPROVAL]

    def test_a_refused_approval_does_not_open_the_act(self, world, session, specialist):
        requested = specialist.request_approval(world.cards["patient"], code="ANGIO-COR",
                                                justification="Angor stable, pas d'ischémie documentée")
        problem(self.decide(world, session, requested["number"], approve=False), 400, "invalid-input")  # say why
        refused = self.decide(world, session, requested["number"], approve=False, note="Ischémie non documentée")
        assert refused.status_code == 200 and refused.json()["state"] == "refused"
        assert send(world, specialist, self.angioplasty(requested["number"])).json()["reasons"] == [NO_APPROVAL]

    def test_a_decision_is_taken_once(self, world, session, specialist):
        requested = specialist.request_approval(world.cards["patient"], code="ANGIO-COR",
                                                justification="Angor instable, sténose serrée de l'IVA")
        assert self.decide(world, session, requested["number"], approve=True).status_code == 200
        problem(self.decide(world, session, requested["number"], approve=False, note="Second thoughts"),
                422, "rule-violation")
        session.expire_all()
        assert session.scalar(select(PriorApproval.state).where(PriorApproval.number == requested["number"])) == "approved"

    def test_only_a_reviewer_decides(self, world, session, specialist):
        requested = specialist.request_approval(world.cards["patient"], code="ANGIO-COR",
                                                justification="Angor instable, sténose serrée de l'IVA")
        token = factories.agent_token(session, "registry_clerk")
        session.flush()
        response = world.client.post(f"/api/v1/claims/approvals/{requested['number']}/decision",
                                     json={"approve": True}, headers={"Authorization": f"Bearer {token}"})
        problem(response, 403, "not-permitted")
        problem(world.client.post(f"/api/v1/claims/approvals/{requested['number']}/decision", json={"approve": True}),
                401, "not-authenticated")
        session.expire_all()
        assert session.scalar(select(PriorApproval.state).where(PriorApproval.number == requested["number"])) == "requested"

    def test_an_act_that_needs_no_approval_cannot_be_asked_for(self, world, session, specialist):
        before = counts(session)
        with pytest.raises(Refused) as refused:
            specialist.request_approval(world.cards["patient"], code="CS", justification="Consultation de contrôle")
        assert (refused.value.status, refused.value.code) == (422, "rule-violation")
        assert counts(session) == before

    def test_an_approval_for_another_patient_does_not_count(self, world, session, specialist):
        member = factories.member(session, scheme="private", doctor=world.doctor.licence)
        session.flush()
        other = world.card_for("other_patient", person_id=member.person_id)
        requested = specialist.request_approval(other, code="ANGIO-COR",
                                                justification="Angor instable, sténose serrée de l'IVA")
        assert self.decide(world, session, requested["number"], approve=True).status_code == 200
        assert send(world, specialist, self.angioplasty(requested["number"])).json()["reasons"] == [NO_APPROVAL]


class TestStatus:
    def test_a_provider_sees_only_its_facilitys_sheets(self, world, session, specialist):
        at_clinic = send(world, world.doctor_at_clinic, sheet()).json()["number"]
        by_specialist = send(world, specialist, sheet("CS")).json()["number"]
        at_centre = send(world, world.terminal("doctor", world.health_centre), sheet("CMF")).json()["number"]
        issued = world.doctor_at_clinic.prescribe(world.cards["patient"], {"lines": [{"code": "500118"}]})
        at_pharmacy = world.pharmacy_terminal.dispense(issued["number"], [{"line_no": 1, "quantity": 1}],
                                                       patient_card=world.cards["patient"])["care_sheet"]["number"]
        everything = [at_clinic, by_specialist, at_centre, at_pharmacy]

        clinic = world.doctor_at_clinic
        assert {item["number"] for item in clinic.care_sheet_status(everything)} == {at_clinic, by_specialist}
        assert {item["number"] for item in clinic.care_sheet_status()} == {at_clinic, by_specialist}
        assert {item["number"] for item in world.pharmacy_terminal.care_sheet_status(everything)} == {at_pharmacy}
        assert {item["number"] for item in world.terminal("second_pharmacist", world.second_pharmacy)
                .care_sheet_status(everything)} == set()
        assert {item["number"] for item in world.terminal("doctor", world.health_centre)
                .care_sheet_status(everything)} == {at_centre}

    def test_the_status_says_the_decision_and_the_payment_deadline(self, world, session):
        number = send(world, world.doctor_at_clinic, sheet()).json()["number"]
        [item] = world.doctor_at_clinic.care_sheet_status([number.lower()])
        assert (item["number"], item["status"], item["late"]) == (number, "accepted", False)
        assert item["payment_due_on"] == (today() + timedelta(days=15)).isoformat()

    def test_since_filters_by_day_received(self, world, session):
        number = send(world, world.doctor_at_clinic, sheet()).json()["number"]
        sheet_row = stored(session, number)
        sheet_row.received_at = datetime.combine(today() - timedelta(days=3), time(12), UTC)
        session.flush()
        clinic = world.doctor_at_clinic
        def seen_since(days: int) -> set[str]:
            return {i["number"] for i in clinic.care_sheet_status(since=(today() - timedelta(days=days)).isoformat())}

        assert number in seen_since(3) and number not in seen_since(2)


class TestCorrectingADispensingsSheet:
    """A pharmacy's sheet rejected for want of a prior approval is corrected once the approval is granted; the
    correction bills what was dispensed, no more and nothing else."""

    TRASTUZUMAB = "502914"  # a specific medicine: prior approval (drugs.csv)

    def dispensed_without_approval(self, world):
        number = world.doctor_at_clinic.prescribe(world.cards["patient"], {
            "diagnoses": ["C50.9"], "lines": [{"code": self.TRASTUZUMAB, "quantity": 2}]})["number"]
        dispensed = world.pharmacy_terminal.dispense(number, [{"line_no": 1, "quantity": 2}], patient_card=world.cards["patient"])
        assert dispensed["care_sheet"]["status"] == "rejected" and NO_APPROVAL in dispensed["care_sheet"]["reasons"]
        return dispensed["care_sheet"]["number"]

    def approved(self, world, session, quantity: int = 2) -> str:
        requested = world.doctor_at_clinic.request_approval(world.cards["patient"], code=self.TRASTUZUMAB, quantity=quantity,
                                                            diagnoses=["C50.9"], justification="HER2+ breast cancer")
        token = factories.agent_token(session, "reviewer")
        session.flush()
        decided = world.client.post(f"/api/v1/claims/approvals/{requested['number']}/decision", json={"approve": True},
                                    headers={"Authorization": f"Bearer {token}"})
        assert decided.status_code == 200, decided.text
        return requested["number"]

    def correction(self, approval: str, *, code: str = TRASTUZUMAB, quantity: int = 2) -> dict:
        return {"kind": "pharmacy", "care_date": today().isoformat(), "lines": [{"code": code, "quantity": quantity}],
                "approval": approval}

    def test_the_approved_correction_is_accepted_under_the_same_number(self, world, session):
        number = self.dispensed_without_approval(world)
        approval = self.approved(world, session)

        corrected = world.pharmacy_terminal.correct_care_sheet(number, world.cards["patient"], self.correction(approval))

        assert (corrected["number"], corrected["version"], corrected["status"]) == (number, 2, "accepted")
        # Reimbursed to the insured: pharmacies' third-party payment is suspended since 08/12/2025 (claims.json).
        assert corrected["fund_millimes"] > 0 and corrected["payee"] == "insured"

    @pytest.mark.parametrize(("code", "quantity"), [(TRASTUZUMAB, 3), ("502925", 2)])
    def test_a_correction_billing_other_than_was_dispensed_is_refused(self, world, session, code, quantity):
        number = self.dispensed_without_approval(world)
        approval = self.approved(world, session, quantity=3)

        with pytest.raises(Refused) as refused:
            world.pharmacy_terminal.correct_care_sheet(number, world.cards["patient"],
                                                       self.correction(approval, code=code, quantity=quantity))
        assert refused.value.status == 422 and "dispensed" in refused.value.problem["detail"]
        assert stored(session, number).version == 1


@pytest.mark.parametrize("given", ["every column", "defaults left out"])
def test_a_sheet_row_is_written_whole_whichever_way_it_goes(world, session, given):
    # With every defaulted column given, the INSERT goes straight to the driver (labes.db.write on PostgreSQL);
    # with some left out, SQLAlchemy writes it and fills them in. Either way the row reads back the same.
    from datetime import UTC, datetime

    from labes.care.models import CareSheet
    from labes.care.sheets import _insert
    from labes.care.transactions import utc  # SQLite reads times back naive

    now = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    values = dict(number=f"CS-2026-9{uuid.uuid4().int % 10**7:07d}", client_key=uuid.uuid4().hex, kind="consultation",
                  status="accepted", patient_person_id=world.member.person_id, member_id=world.member.id,
                  professional_id=world.doctor.id, facility_id=world.clinic.id, care_date=now.date(),
                  last_care_date=now.date(), signed_at=now, received_at=now, content={"lines": [{"code": "C"}]},
                  content_digest="sha-256:x", signed_transaction={"payload": "p"})
    if given == "every column":
        values.update(version=1, billed_millimes=45000, fund_millimes=31500, patient_millimes=13500,
                      ceiling_charged_millimes=31500, copay_charged_millimes=0, reasons=["R1"])
    sheet = CareSheet(**values)
    _insert(session, sheet)
    stored = session.get(CareSheet, sheet.id)
    expected = {"version": 1, "billed_millimes": 45000, "reasons": ["R1"]} if given == "every column" else \
        {"version": 1, "billed_millimes": 0, "reasons": []}
    assert {key: getattr(stored, key) for key in expected} == expected
    assert (stored.content, utc(stored.signed_at), stored.member_id) == ({"lines": [{"code": "C"}]}, now, world.member.id)
