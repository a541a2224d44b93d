"""The insured reads their care sheets with their own card alone: statuses, amounts, reasons and payments of
their family's sheets (the insured member) or their own (a dependant); never another family's, never unsigned."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from labes.cards import service as cards
from labes.care import protocol
from labes.care.models import UsedChallenge
from labes.security.models import AuditEvent
from labes.terminal import Insured, Refused
from tests import factories
from tests.care.helpers import problem
from tests.care.test_care_sheets import API, DEADLINE, send, sheet

PATH = f"{API}/insured/care-sheets"


@pytest.fixture
def family(world, session):
    """The member, their spouse and child (each with a card), another family, and a care sheet for each person."""
    spouse = factories.dependant(session, world.member.social_id, relationship="spouse",
                                 person={"first_name_lat": "Amel", "sex": "F", "birth_date": date(1985, 6, 1)})
    child = factories.dependant(session, world.member.social_id)
    stranger = factories.member(session)
    session.flush()
    world.card_for("spouse", person_id=spouse.person_id)
    world.card_for("child", person_id=child.person_id)
    world.card_for("stranger", person_id=stranger.person_id)
    doctor = world.doctor_at_clinic
    numbers = {}
    for name, content in (("patient", sheet("CMF")), ("spouse", sheet("C")), ("child", sheet("C", days_ago=75)),
                          ("stranger", sheet("C"))):
        answer = send(world, doctor, content, patient=world.cards[name])
        assert answer.status_code == 201, answer.text
        numbers[name] = answer.json()["number"]
    return numbers


def read(world, card: str, content: dict | None = None):
    insured = Insured(client=world.client, card=world.cards[card])
    body = insured.sign("insured-care-sheets", content or {}, challenge=insured.challenge())
    return world.client.post(PATH, json=body)


def audit_count(session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent))


class TestWhatTheInsuredSees:
    def test_the_insured_member_sees_the_whole_familys_sheets_and_no_other(self, world, family):
        answer = Insured(client=world.client, card=world.cards["patient"]).care_sheets()

        assert answer["family"] is True
        assert {item["number"] for item in answer["items"]} == {family["patient"], family["spouse"], family["child"]}
        by_number = {item["number"]: item for item in answer["items"]}
        spouse = by_number[family["spouse"]]
        assert spouse["patient"]["name_lat"].startswith("Amel")
        assert spouse["status"] == "accepted" and spouse["fund_millimes"] > 0
        assert spouse["billed_millimes"] == spouse["fund_millimes"] + spouse["patient_millimes"]
        assert spouse["facility"]["code"] == world.clinic.code and spouse["professional"] == "Dr Sami Trabelsi"

    def test_a_rejected_sheet_carries_its_published_reason_in_three_languages(self, world, family):
        answer = Insured(client=world.client, card=world.cards["patient"]).care_sheets()

        late = next(item for item in answer["items"] if item["number"] == family["child"])
        assert late["status"] == "rejected" and late["fund_millimes"] == 0
        [reason] = [r for r in late["reasons"] if r["code"] == DEADLINE]
        assert reason["label_fr"] and reason["label_ar"] and "deadline" in reason["label_en"]

    def test_a_dependant_sees_only_their_own_sheets(self, world, family):
        answer = read(world, "spouse")

        assert answer.status_code == 200, answer.text
        assert answer.json()["family"] is False
        assert [item["number"] for item in answer.json()["items"]] == [family["spouse"]]

    def test_another_family_sees_only_its_own(self, world, family):
        assert [item["number"] for item in read(world, "stranger").json()["items"]] == [family["stranger"]]

    def test_since_leaves_out_older_care(self, world, family):
        since = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
        answer = read(world, "patient", {"since": since})

        assert {item["number"] for item in answer.json()["items"]} == {family["patient"], family["spouse"]}

    def test_the_reading_is_audited_under_the_card(self, world, family, session):
        read(world, "spouse")

        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "care:care-sheet:insured-read")).one()
        assert event.actor == f"insured:card {world.cards['spouse'].serial}"
        assert event.after["sheets"] == 1 and event.after["family"] is False


class TestRefused:
    def test_a_professionals_card_cannot_read_as_an_insured(self, world, family, session):
        before = audit_count(session)
        answer = read(world, "doctor")

        problem(answer, 403, "invalid-transaction")
        assert "professional" in answer.json()["detail"]
        assert audit_count(session) == before

    def test_a_transaction_naming_a_professional_or_a_facility_is_refused(self, world, family):
        insured = Insured(client=world.client, card=world.cards["patient"])
        transaction = protocol.Transaction(
            action="insured-care-sheets", professional_card=world.cards["doctor"].serial, facility=world.clinic.code,
            time=datetime.now(UTC).replace(microsecond=0), content_digest=protocol.content_digest({}),
            patient_card=world.cards["patient"].serial, challenge=insured.challenge())
        body = protocol.envelope(transaction, {}, [world.cards["patient"], world.cards["doctor"]])

        assert problem(world.client.post(PATH, json=body), 400, "invalid-input")["errors"][0]["field"] == \
            "transaction.payload.professional_card"

    def test_a_replayed_challenge_is_refused(self, world, family, session):
        insured = Insured(client=world.client, card=world.cards["patient"])
        body = insured.sign("insured-care-sheets", {}, challenge=insured.challenge())
        assert world.client.post(PATH, json=body).status_code == 200
        used = session.scalar(select(func.count()).select_from(UsedChallenge))

        problem(world.client.post(PATH, json=body), 403, "invalid-transaction")
        assert session.scalar(select(func.count()).select_from(UsedChallenge)) == used

    def test_a_signature_by_another_card_is_refused(self, world, family):
        # The stranger's card signs a transaction that names the member's card (its kid forged to match).
        insured = Insured(client=world.client, card=world.cards["patient"])
        transaction = protocol.Transaction(
            action="insured-care-sheets", professional_card=None, facility=None,
            time=datetime.now(UTC).replace(microsecond=0), content_digest=protocol.content_digest({}),
            patient_card=world.cards["patient"].serial, challenge=insured.challenge())
        body = protocol.envelope(transaction, {}, [world.cards["stranger"]])
        forged = dict(body["transaction"])
        signature = dict(forged["signatures"][0])
        signature["protected"] = protocol.b64url(protocol.canonical({"alg": "ES256", "kid": world.cards["patient"].serial}))
        body["transaction"] = {**forged, "signatures": [signature]}

        problem(world.client.post(PATH, json=body), 403, "invalid-transaction")

    def test_a_blocked_card_is_refused(self, world, family, session):
        cards.block(session, actor=factories.ACTOR, serial=world.cards["spouse"].serial, reason="lost")

        with pytest.raises(Refused) as refused:
            Insured(client=world.client, card=world.cards["spouse"]).care_sheets()
        assert refused.value.status == 403 and refused.value.code == "card-refused"

    def test_an_insured_signature_opens_no_point_of_care_action(self, world, family):
        insured = Insured(client=world.client, card=world.cards["patient"])
        body = insured.sign("insured-care-sheets", {}, challenge=insured.challenge())

        problem(world.client.post(f"{API}/rights-checks", json=body), 403, "invalid-transaction")

    def test_the_point_of_care_gate_and_the_insureds_gate_do_not_stand_in_for_each_other(self, world, session):
        from labes.care import transactions
        from labes.errors import InvalidInput

        with pytest.raises(InvalidInput):
            transactions.accept(session, body={}, action="insured-care-sheets", secret=b"x" * 32)
        with pytest.raises(InvalidInput):
            transactions.accept_insured(session, body={}, action="rights-check", secret=b"x" * 32)

    def test_an_unknown_content_field_is_refused(self, world, family):
        problem(read(world, "patient", {"since": "2026-01-01", "all_families": True}), 422, "malformed-request")
