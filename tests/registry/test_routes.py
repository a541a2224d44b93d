"""The registry over HTTP, as a regional centre's clerk uses it."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from labes.registry.models import Dependant, Facility, Person, Professional
from labes.security import service as security_service
from labes.security.models import AuditEvent
from tests import factories

IBAN = "TN5910006035183598478831"
RIB = "10006035183598478831"
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
EASTERN_ARABIC_INDIC = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Production argon2 costs ~0.2 s a hash; every test here logs a clerk in."""
    monkeypatch.setattr(security_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def clerk(session) -> dict[str, str]:
    token = factories.agent_token(session, "registry_clerk")
    session.commit()
    return {"Authorization": f"Bearer {token}"}


def tag() -> str:
    """Return letters no other test's names contain, so searches see only this test's people."""
    return uuid.uuid4().hex[:8].translate(str.maketrans("0123456789", "ghijklmnop")).title()


def arabic_tag() -> str:
    return uuid.uuid4().hex[:6].translate(str.maketrans("0123456789abcdef", "بتثجحخدذرزسشصضطظ"))


def person_json(**overrides) -> dict:
    values = {"cin": factories.cin(), "first_name_ar": "هند", "last_name_ar": "الجزيري", "first_name_lat": "Hind",
              "last_name_lat": "Jaziri", "birth_date": "1988-11-20", "sex": "F", "phone": "98 123 456",
              "governorate": "TUN", "delegation": "El Menzah", "address": "5 Rue de Marseille"}
    return values | overrides


def member_json(person: dict | None = None, **overrides) -> dict:
    values = {"person": person or person_json(), "social_id": factories.social_id(), "regime": "CNRPS",
              "employer": "Ministère de la Santé", "affiliation_start": "2012-09-01", "care_scheme": "public",
              "scheme_since": "2012-09-01"}
    return values | overrides


def child_json(**person) -> dict:
    values = {"cin": None, "first_name_ar": "يوسف", "last_name_ar": "الجزيري", "first_name_lat": "Youssef",
              "last_name_lat": "Jaziri", "birth_date": "2016-04-09", "sex": "M", "governorate": "TUN"}
    return {"person": values | person, "relationship": "child"}


def years_ago(years: int) -> date:
    today = date.today()
    return date(today.year - years, today.month, 1)


def problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith(f"/{kind}"), body
    return body


def audit_count(session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent))


# ---------------------------------------------------------------- members


class TestFamilyReadIsAudited:
    def test_reading_a_family_leaves_an_audit_event_by_the_reader(self, client, session, clerk):
        body = member_json()
        assert client.post("/api/v1/members", json=body, headers=clerk).status_code == 201

        assert client.get(f"/api/v1/families/{body['social_id']}", headers=clerk).status_code == 200

        reads = session.scalars(select(AuditEvent).where(AuditEvent.action == "registry:family:read",
                                                         AuditEvent.entity_id == body["social_id"])).all()
        assert len(reads) == 1 and reads[0].actor.startswith("agent:")


class TestEnrolment:
    def test_member_is_enrolled_and_covered(self, client, clerk):
        body = member_json()

        created = client.post("/api/v1/members", json=body, headers=clerk)
        family = client.get(f"/api/v1/families/{body['social_id']}", headers=clerk)

        assert created.status_code == 201, created.text
        assert created.json()["social_id"] == body["social_id"]
        assert created.json()["person"]["phone"] == "+21698123456"
        assert family.status_code == 200, family.text
        view = family.json()
        assert view["care_scheme"]["scheme"] == "public"
        assert view["beneficiaries_covered"] == 1
        (insured,) = view["people"]
        assert insured["role"] == "insured"
        assert insured["person"]["cin"] == body["person"]["cin"]
        assert insured["rights"]["covered"] is True

    @pytest.mark.parametrize("cin", ["1234567", "123456789", "1234567a", "ABCDEFGH", ""])
    def test_malformed_cin_is_refused_naming_the_field(self, client, clerk, cin):
        response = client.post("/api/v1/members", json=member_json(person_json(cin=cin)), headers=clerk)

        body = problem(response, 422, "malformed-request")
        assert body["errors"][0]["field"] == "person.cin"
        assert "8 digits" in body["errors"][0]["message"]

    def test_social_id_with_wrong_check_digits_is_refused(self, client, clerk):
        good = factories.social_id()
        bad = good[:9] + f"{(int(good[9:]) + 1) % 100:02d}"

        response = client.post("/api/v1/members", json=member_json(social_id=bad), headers=clerk)

        body = problem(response, 422, "malformed-request")
        assert body["errors"][0]["field"] == "social_id"
        assert "check digits" in body["errors"][0]["message"]

    @pytest.mark.parametrize("digits", [ARABIC_INDIC, EASTERN_ARABIC_INDIC], ids=["arabic-indic", "eastern-arabic-indic"])
    def test_arabic_indic_digits_are_stored_as_ascii(self, client, session, clerk, digits):
        cin = factories.cin()
        social_id = factories.social_id()

        response = client.post("/api/v1/members", headers=clerk,
                               json=member_json(person_json(cin=cin.translate(digits)), social_id=social_id.translate(digits)))

        assert response.status_code == 201, response.text
        assert (response.json()["person"]["cin"], response.json()["social_id"]) == (cin, social_id)
        assert session.scalar(select(Person.cin).where(Person.cin == cin)) == cin
        assert client.get(f"/api/v1/families/{cin.translate(digits)}", headers=clerk).json()["social_id"] == social_id

    def test_social_id_enrolled_twice_is_a_conflict(self, client, clerk):
        first = member_json()
        assert client.post("/api/v1/members", json=first, headers=clerk).status_code == 201

        response = client.post("/api/v1/members", json=member_json(social_id=first["social_id"]), headers=clerk)

        assert problem(response, 409, "conflict")["errors"][0]["field"] == "social_id"

    def test_cin_registered_twice_is_a_conflict(self, client, clerk):
        first = member_json()
        assert client.post("/api/v1/members", json=first, headers=clerk).status_code == 201

        response = client.post("/api/v1/members", json=member_json(person_json(cin=first["person"]["cin"])), headers=clerk)

        problem(response, 409, "conflict")

    def test_private_scheme_without_a_family_doctor_is_refused(self, client, clerk):
        body = member_json(care_scheme="private")

        response = client.post("/api/v1/members", json=body, headers=clerk)

        assert problem(response, 422, "rule-violation")["errors"][0]["field"] == "family_doctor_licence"
        assert client.get(f"/api/v1/members/{body['social_id']}", headers=clerk).status_code == 404

    def test_private_scheme_with_a_family_doctor(self, client, session, clerk):
        doctor = factories.professional(session, family_doctor=True)
        session.commit()
        body = member_json(care_scheme="private", family_doctor_licence=doctor.licence)

        created = client.post("/api/v1/members", json=body, headers=clerk)
        family = client.get(f"/api/v1/families/{body['social_id']}", headers=clerk).json()

        assert created.status_code == 201, created.text
        assert family["care_scheme"] | {"start_date": None} == {
            "scheme": "private", "start_date": None, "family_doctor_licence": doctor.licence,
            "family_doctor_name": "Dr Sami Trabelsi", "reason": "enrolment"}

    def test_private_scheme_with_a_doctor_who_is_not_a_family_doctor(self, client, session, clerk):
        doctor = factories.professional(session, family_doctor=False)
        session.commit()

        response = client.post("/api/v1/members", json=member_json(care_scheme="private", family_doctor_licence=doctor.licence),
                               headers=clerk)

        problem(response, 422, "rule-violation")

    def test_member_update_refuses_a_null_for_a_required_field(self, client, session, clerk):
        member = factories.member(session)
        session.commit()

        response = client.patch(f"/api/v1/members/{member.social_id}", json={"regime": None}, headers=clerk)

        assert problem(response, 422, "malformed-request")["errors"][0]["field"] == "regime"
        assert client.get(f"/api/v1/members/{member.social_id}", headers=clerk).json()["regime"] == "CNSS"

    def test_member_update_may_clear_an_optional_field(self, client, session, clerk):
        member = factories.member(session)
        session.commit()

        response = client.patch(f"/api/v1/members/{member.social_id}", json={"employer": None}, headers=clerk)

        assert response.status_code == 200, response.text
        assert response.json()["employer"] is None


# ---------------------------------------------------------------- dependants


@pytest.fixture
def member(session):
    member = factories.member(session)
    session.commit()
    return member


class TestDependants:
    def test_child_is_added_and_covered(self, client, clerk, member):
        response = client.post(f"/api/v1/members/{member.social_id}/dependants", json=child_json(), headers=clerk)

        assert response.status_code == 201, response.text
        assert (response.json()["relationship"], response.json()["rank"]) == ("child", 1)
        assert response.json()["rights"]["covered"] is True
        people = client.get(f"/api/v1/families/{member.social_id}", headers=clerk).json()["people"]
        assert [p["role"] for p in people] == ["insured", "child"]

    def test_adult_child_without_evidence_is_refused_and_nothing_is_written(self, client, session, clerk, member):
        name = tag()
        before = audit_count(session)

        response = client.post(f"/api/v1/members/{member.social_id}/dependants", headers=clerk,
                               json=child_json(first_name_lat=name, birth_date=years_ago(30).isoformat()))

        body = problem(response, 422, "rule-violation")
        assert "age limit" in body["detail"]
        assert session.scalar(select(Person).where(Person.first_name_lat == name)) is None
        assert session.scalar(select(func.count()).select_from(Dependant).where(Dependant.member_id == member.id)) == 0
        assert audit_count(session) == before

    def test_disabled_adult_child_with_evidence_is_covered(self, client, clerk, member):
        body = child_json(birth_date=years_ago(30).isoformat()) | {"disabled": True, "evidence": "CIH-2019-0042"}

        response = client.post(f"/api/v1/members/{member.social_id}/dependants", json=body, headers=clerk)

        assert response.status_code == 201, response.text
        assert response.json()["rights"]["covered"] is True
        assert "disability" in response.json()["rights"]["reason"]

    def test_disabled_child_without_evidence_is_malformed(self, client, clerk, member):
        body = child_json(birth_date=years_ago(30).isoformat()) | {"disabled": True}

        response = client.post(f"/api/v1/members/{member.social_id}/dependants", json=body, headers=clerk)

        problem(response, 422, "malformed-request")

    def test_second_active_spouse_is_a_conflict(self, client, clerk, member):
        spouse = {"person": person_json(first_name_lat="Amel", birth_date="1982-03-03"), "relationship": "spouse"}
        assert client.post(f"/api/v1/members/{member.social_id}/dependants", json=spouse, headers=clerk).status_code == 201
        another = {"person": person_json(first_name_lat="Rim", birth_date="1985-07-07"), "relationship": "spouse"}

        response = client.post(f"/api/v1/members/{member.social_id}/dependants", json=another, headers=clerk)

        assert problem(response, 409, "conflict")["errors"][0]["field"] == "relationship"

    def test_dependant_cannot_be_changed_through_another_family(self, client, session, clerk, member):
        child = factories.dependant(session, member.social_id)
        stranger = factories.member(session)
        session.commit()

        response = client.patch(f"/api/v1/members/{stranger.social_id}/dependants/{child.id}",
                                json={"end_date": "2020-01-01"}, headers=clerk)

        problem(response, 404, "not-found")
        session.refresh(child)
        assert child.end_date is None
        (kid,) = [p for p in client.get(f"/api/v1/families/{member.social_id}", headers=clerk).json()["people"]
                  if p["role"] == "child"]
        assert kid["rights"]["covered"] is True

    def test_dependant_is_updated_through_its_own_family(self, client, session, clerk, member):
        child = factories.dependant(session, member.social_id)
        session.commit()

        response = client.patch(f"/api/v1/members/{member.social_id}/dependants/{child.id}",
                                json={"end_date": "2020-01-01"}, headers=clerk)

        assert response.status_code == 200, response.text
        assert response.json()["rights"]["covered"] is False

    def test_dependant_update_refuses_a_null_flag(self, client, session, clerk, member):
        child = factories.dependant(session, member.social_id)
        session.commit()

        response = client.patch(f"/api/v1/members/{member.social_id}/dependants/{child.id}",
                                json={"disabled": None}, headers=clerk)

        assert problem(response, 422, "malformed-request")["errors"][0]["field"] == "disabled"


# ---------------------------------------------------------------- families and search


class TestFamilyView:
    def test_found_through_a_dependants_cin(self, client, session, clerk, member):
        child_cin = factories.cin()
        factories.dependant(session, member.social_id, person={"cin": child_cin, "birth_date": years_ago(18)})
        session.commit()

        response = client.get(f"/api/v1/families/{child_cin}", headers=clerk)

        assert response.status_code == 200, response.text
        assert response.json()["social_id"] == member.social_id
        assert [p["person"]["cin"] for p in response.json()["people"]][1] == child_cin

    def test_unknown_cin_is_404_and_a_malformed_key_400(self, client, clerk):
        problem(client.get("/api/v1/families/99999998", headers=clerk), 404, "not-found")
        problem(client.get("/api/v1/families/12ab", headers=clerk), 400, "invalid-input")

    def test_suspended_members_family_is_not_covered(self, client, session, clerk):
        suspended = factories.member(session, status="suspended")
        factories.dependant(session, suspended.social_id)
        factories.dependant(session, suspended.social_id, relationship="spouse",
                            person={"first_name_lat": "Amel", "sex": "F", "birth_date": date(1982, 3, 3)})
        session.commit()

        view = client.get(f"/api/v1/families/{suspended.social_id}", headers=clerk).json()

        assert view["beneficiaries_covered"] == 0
        assert len(view["people"]) == 3
        assert all(p["rights"]["covered"] is False and p["rights"]["reason"] for p in view["people"])
        insured, *dependants = view["people"]
        assert "suspended" in insured["rights"]["reason"]
        assert all(p["rights"]["reason"].startswith("The insured member is not covered") for p in dependants)


class TestSearch:
    def search(self, client, clerk, q: str, **params) -> dict:
        response = client.get("/api/v1/persons", params={"q": q, **params}, headers=clerk)
        assert response.status_code == 200, response.text
        return response.json()

    def ids(self, client, clerk, q: str) -> list[str]:
        return [hit["id"] for hit in self.search(client, clerk, q, page_size=100)["items"]]

    def test_latin_name_ignores_case_and_accents(self, client, session, clerk):
        first = tag()
        found = factories.member(session, person_overrides={"first_name_lat": first, "last_name_lat": "Ben Salah"})
        factories.member(session, person_overrides={"first_name_lat": first, "last_name_lat": "Trabelsi"})
        session.commit()

        assert self.ids(client, clerk, f"BEN SÄLAH {first.upper()}") == [str(found.person_id)]
        assert self.ids(client, clerk, f"ben-salah {first.lower()}") == [str(found.person_id)]

    def test_first_name_before_last_name(self, client, session, clerk):
        first = tag()
        found = factories.member(session, person_overrides={"first_name_lat": first, "last_name_lat": "Ben Salah"})
        session.commit()

        assert self.ids(client, clerk, f"{first} Ben Salah") == [str(found.person_id)]

    @pytest.mark.parametrize("spelling", ["{tag} أحمد", "{tag} احمد", "أَحْمَد {tag}", "إحمد {tag}", "{tag}"],
                             ids=["hamza", "bare-alef", "diacritics-first-last", "hamza-below", "last-name-only"])
    def test_arabic_name_ignores_diacritics_and_alef_forms(self, client, session, clerk, spelling):
        last = arabic_tag()
        found = factories.member(session, person_overrides={"first_name_ar": "أحمد", "last_name_ar": last})
        factories.member(session, person_overrides={"first_name_ar": "محمد", "last_name_ar": last + "ي"})
        session.commit()

        ids = self.ids(client, clerk, spelling.format(tag=last))

        assert str(found.person_id) in ids
        assert len(ids) == (2 if spelling == "{tag}" else 1)

    def test_by_cin_and_by_social_id(self, client, session, clerk, member):
        child_cin = factories.cin()
        child = factories.dependant(session, member.social_id, person={"cin": child_cin, "birth_date": years_ago(18)})
        session.commit()
        cin = session.get(Person, member.person_id).cin

        by_cin = self.search(client, clerk, cin)["items"]
        by_arabic_digits = self.search(client, clerk, cin.translate(ARABIC_INDIC))["items"]
        by_social_id = self.search(client, clerk, member.social_id)["items"]
        by_child_cin = self.search(client, clerk, child_cin)["items"]

        assert [(h["id"], h["family_social_id"], h["role"]) for h in by_cin] == [
            (str(member.person_id), member.social_id, "insured")]
        assert by_arabic_digits == by_cin
        assert by_social_id == by_cin
        assert [(h["id"], h["family_social_id"], h["role"]) for h in by_child_cin] == [
            (str(child.person_id), member.social_id, "child")]

    def test_one_letter_is_refused(self, client, clerk):
        problem(client.get("/api/v1/persons", params={"q": "b"}, headers=clerk), 400, "invalid-input")

    def test_pages_do_not_overlap(self, client, session, clerk):
        family_name = f"Gharbi {tag()}"
        created = {str(factories.member(session, person_overrides={"last_name_lat": family_name, "first_name_lat": first}).person_id)
                   for first in ("Ali", "Bassem", "Chiraz", "Dorra", "Emna")}
        session.commit()

        pages = [self.search(client, clerk, family_name, page=page, page_size=2) for page in (1, 2, 3)]

        assert [p["has_more"] for p in pages] == [True, True, False]
        assert [len(p["items"]) for p in pages] == [2, 2, 1]
        seen = [hit["id"] for p in pages for hit in p["items"]]
        assert len(seen) == len(set(seen)) == 5
        assert set(seen) == created
        assert [h["first_name_lat"] for p in pages for h in p["items"]] == ["Ali", "Bassem", "Chiraz", "Dorra", "Emna"]


# ---------------------------------------------------------------- care scheme, chronic conditions, Amen


class TestCareScheme:
    def test_change_must_start_after_the_latest(self, client, clerk, member):
        path = f"/api/v1/members/{member.social_id}/care-scheme"

        same_day = client.post(path, json={"scheme": "reimbursement", "start_date": "2020-01-01"}, headers=clerk)
        earlier = client.post(path, json={"scheme": "reimbursement", "start_date": "2019-06-01"}, headers=clerk)
        later = client.post(path, json={"scheme": "reimbursement", "start_date": "2020-01-02", "reason": "member's choice"},
                            headers=clerk)

        assert problem(same_day, 409, "conflict")["errors"][0]["field"] == "start_date"
        problem(earlier, 409, "conflict")
        assert later.status_code == 201, later.text
        assert [(c["scheme"], c["start_date"]) for c in later.json()] == [("reimbursement", "2020-01-02"),
                                                                         ("public", "2020-01-01")]

    def test_family_view_shows_the_scheme_in_force_on_a_day(self, client, clerk, member):
        client.post(f"/api/v1/members/{member.social_id}/care-scheme",
                    json={"scheme": "reimbursement", "start_date": "2024-01-01"}, headers=clerk)

        def scheme_on(day: str) -> str:
            return client.get(f"/api/v1/families/{member.social_id}", params={"on": day}, headers=clerk).json()["care_scheme"]["scheme"]

        assert (scheme_on("2023-12-31"), scheme_on("2024-01-01")) == ("public", "reimbursement")


class TestChronicConditions:
    def test_code_outside_the_official_list_is_refused(self, client, clerk, member):
        response = client.post(f"/api/v1/persons/{member.person_id}/chronic-conditions",
                               json={"code": "25", "icd10": "E11", "valid_from": "2024-01-01"}, headers=clerk)

        assert "25" in problem(response, 422, "malformed-request")["detail"]

    def test_condition_is_recorded_and_shown_in_the_family(self, client, clerk, member):
        response = client.post(f"/api/v1/persons/{member.person_id}/chronic-conditions",
                               json={"code": "01", "icd10": "E11", "valid_from": "2024-01-01"}, headers=clerk)

        assert response.status_code == 201, response.text
        assert (response.json()["name"], response.json()["active"]) == ("Diabète", True)
        insured = client.get(f"/api/v1/families/{member.social_id}", headers=clerk).json()["people"][0]
        assert [c["code"] for c in insured["chronic_conditions"]] == ["01"]


class TestAmen:
    def test_household_is_created_and_read(self, client, session, clerk, member):
        cin = session.get(Person, member.person_id).cin
        number = tag()[:8].upper()
        body = {"number": number, "level": "free", "valid_from": "2024-01-01", "governorate": "SFX", "member_cins": [cin]}

        created = client.post("/api/v1/amen-households", json=body, headers=clerk)
        read = client.get(f"/api/v1/amen-households/{number}", headers=clerk)

        assert created.status_code == 201, created.text
        assert read.status_code == 200
        assert read.json() == created.json()
        assert [p["cin"] for p in read.json()["members"]] == [cin]
        assert read.json()["rights"]["covered"] is True
        assert client.get(f"/api/v1/families/{member.social_id}", headers=clerk).json()["amen"]["number"] == number

    def test_expired_household_is_not_covered(self, client, clerk):
        number = tag()[:8].upper()
        client.post("/api/v1/amen-households", json={"number": number, "level": "reduced", "valid_from": "2020-01-01",
                                                     "valid_to": "2021-12-31", "governorate": "KAI"}, headers=clerk)

        rights = client.get(f"/api/v1/amen-households/{number}", headers=clerk).json()["rights"]

        assert rights["covered"] is False
        assert "2021-12-31" in rights["reason"]

    def test_a_cin_listed_twice_is_malformed(self, client, session, clerk, member):
        cin = session.get(Person, member.person_id).cin
        number = tag()[:8].upper()
        body = {"number": number, "level": "free", "valid_from": "2024-01-01", "governorate": "SFX",
                "member_cins": [cin, cin.translate(ARABIC_INDIC)]}

        response = client.post("/api/v1/amen-households", json=body, headers=clerk)

        assert problem(response, 422, "malformed-request")["errors"][0]["field"] == "member_cins"
        assert client.get(f"/api/v1/amen-households/{number}", headers=clerk).status_code == 404

    def test_unknown_household_is_404(self, client, clerk):
        problem(client.get("/api/v1/amen-households/NOPE0000", headers=clerk), 404, "not-found")


# ---------------------------------------------------------------- providers


def facility_json(**overrides) -> dict:
    values = {"code": f"F{tag()}".upper(), "kind": "regional_hospital", "name_ar": "المستشفى الجهوي بقابس",
              "name_lat": f"Hôpital Régional {tag()}", "governorate": "GAB", "sector": "public",
              "contract_number": "C-2024-17", "contract_start": "2024-01-01", "contract_status": "active"}
    return values | overrides


def professional_json(**overrides) -> dict:
    values = {"licence": f"L{tag()}".upper(), "kind": "general_practitioner", "family_doctor": True,
              "name_ar": "د. منية الشابي", "name_lat": f"Dr Mounia {tag()}", "governorate": "NAB", "sector": "private",
              "tax_regime": "actual"}
    return values | overrides


class TestFacilities:
    def test_create_read_search_and_update(self, client, clerk):
        body = facility_json()
        created = client.post("/api/v1/facilities", json=body, headers=clerk)
        assert created.status_code == 201, created.text

        read = client.get(f"/api/v1/facilities/{body['code']}", headers=clerk)
        by_name = client.get("/api/v1/facilities", params={"q": body["name_lat"].upper().replace("Ô", "O")}, headers=clerk)
        other_kind = client.get("/api/v1/facilities", params={"q": body["name_lat"], "kind": "pharmacy"}, headers=clerk)
        renamed = client.patch(f"/api/v1/facilities/{body['code']}", json={"name_lat": "CHU Habib Bourguiba"},
                               headers=clerk)

        assert read.json()["name_lat"] == body["name_lat"]
        assert [f["code"] for f in by_name.json()["items"]] == [body["code"]]
        assert other_kind.json()["items"] == []
        assert renamed.status_code == 200, renamed.text
        assert client.get("/api/v1/facilities", params={"q": body["name_lat"]}, headers=clerk).json()["items"] == []
        assert body["code"] in [f["code"] for f in client.get("/api/v1/facilities", params={"q": "chu habib", "page_size": 100},
                                                             headers=clerk).json()["items"]]

    def test_search_by_arabic_name_and_governorate(self, client, clerk):
        name = f"مصحة {arabic_tag()}"
        body = facility_json(name_ar=name, kind="private_clinic", sector="private")
        client.post("/api/v1/facilities", json=body, headers=clerk)

        by_arabic = client.get("/api/v1/facilities", params={"q": name}, headers=clerk).json()["items"]
        wrong_region = client.get("/api/v1/facilities", params={"q": name, "governorate": "TUN"}, headers=clerk).json()["items"]

        assert [f["code"] for f in by_arabic] == [body["code"]]
        assert wrong_region == []

    def test_duplicate_code_is_a_conflict(self, client, clerk):
        body = facility_json()
        client.post("/api/v1/facilities", json=body, headers=clerk)

        problem(client.post("/api/v1/facilities", json=body, headers=clerk), 409, "conflict")

    def test_contract_ending_before_it_starts_is_refused(self, client, clerk):
        body = facility_json(contract_start="2024-01-01", contract_end="2023-12-31")

        response = client.post("/api/v1/facilities", json=body, headers=clerk)

        assert problem(response, 400, "invalid-input")["errors"][0]["field"] == "contract_end"
        assert client.get(f"/api/v1/facilities/{body['code']}", headers=clerk).status_code == 404

    def test_update_refuses_a_null_name(self, client, clerk):
        body = facility_json()
        client.post("/api/v1/facilities", json=body, headers=clerk)

        response = client.patch(f"/api/v1/facilities/{body['code']}", json={"name_lat": None}, headers=clerk)

        assert problem(response, 422, "malformed-request")["errors"][0]["field"] == "name_lat"


class TestProfessionals:
    def test_create_read_search_and_update(self, client, clerk):
        body = professional_json()
        created = client.post("/api/v1/professionals", json=body, headers=clerk)
        assert created.status_code == 201, created.text

        read = client.get(f"/api/v1/professionals/{body['licence']}", headers=clerk)
        found = client.get("/api/v1/professionals", params={"q": body["name_lat"].lower(), "kind": "general_practitioner"},
                           headers=clerk)
        changed = client.patch(f"/api/v1/professionals/{body['licence']}",
                               json={"family_doctor": False, "contract_status": "suspended"}, headers=clerk)

        assert read.json() | {"id": None} == body | {"id": None, "specialty": None, "cin": None, "delegation": None,
                                                     "address": None, "tax_id": None, "iban": None, "contract_number": None,
                                                     "contract_start": None, "contract_end": None,
                                                     "contract_status": None, "facilities": []}
        assert [p["licence"] for p in found.json()["items"]] == [body["licence"]]
        assert changed.status_code == 200, changed.text
        assert (changed.json()["family_doctor"], changed.json()["contract_status"]) == (False, "suspended")

    def test_specialist_needs_a_specialty(self, client, clerk):
        body = professional_json(kind="specialist", family_doctor=False)

        problem(client.post("/api/v1/professionals", json=body, headers=clerk), 422, "malformed-request")
        assert client.post("/api/v1/professionals", json=body | {"specialty": "cardiology"}, headers=clerk).status_code == 201

    def test_only_a_general_practitioner_is_a_family_doctor(self, client, clerk):
        body = professional_json(kind="dentist", family_doctor=True)

        problem(client.post("/api/v1/professionals", json=body, headers=clerk), 422, "malformed-request")

    def test_update_cannot_make_a_dentist_a_family_doctor(self, client, clerk):
        body = professional_json(kind="dentist", family_doctor=False)
        client.post("/api/v1/professionals", json=body, headers=clerk)

        response = client.patch(f"/api/v1/professionals/{body['licence']}", json={"family_doctor": True}, headers=clerk)

        assert problem(response, 400, "invalid-input")["errors"][0]["field"] == "family_doctor"
        assert client.get(f"/api/v1/professionals/{body['licence']}", headers=clerk).json()["family_doctor"] is False

    def test_practice_at_a_facility(self, client, clerk):
        doctor, facility = professional_json(), facility_json()
        client.post("/api/v1/professionals", json=doctor, headers=clerk)
        client.post("/api/v1/facilities", json=facility, headers=clerk)
        path = f"/api/v1/professionals/{doctor['licence']}/facilities/{facility['code']}"

        first = client.put(path, headers=clerk)
        again = client.put(path, headers=clerk)
        unknown = client.put(f"/api/v1/professionals/{doctor['licence']}/facilities/NOPE", headers=clerk)

        assert first.status_code == 200, first.text
        assert first.json()["facilities"] == [facility["code"]]
        problem(again, 409, "conflict")
        problem(unknown, 404, "not-found")
        assert client.get(f"/api/v1/professionals/{doctor['licence']}", headers=clerk).json()["facilities"] == [facility["code"]]


class TestBankAccounts:
    BAD = (("TN5910006035183598478832", "IBAN check digits"), ("10006035183598478832", "RIB key"),
           ("FR7630006000011234567890189", "Tunisian accounts only"))

    @staticmethod
    def update_event(session, action: str, entity_id: str) -> AuditEvent:
        return session.scalars(select(AuditEvent).where(AuditEvent.action == action, AuditEvent.entity_id == entity_id)
                               .order_by(AuditEvent.id.desc())).first()

    def test_a_professionals_account_is_stored_compact_returned_and_audited(self, client, session, clerk):
        body = professional_json()
        client.post("/api/v1/professionals", json=body, headers=clerk)

        response = client.patch(f"/api/v1/professionals/{body['licence']}", json={"iban": "TN59 1000 6035 1835 9847 8831"},
                                headers=clerk)

        assert response.status_code == 200, response.text
        assert response.json()["iban"] == IBAN
        assert session.scalar(select(Professional.iban).where(Professional.licence == body["licence"])) == IBAN
        assert client.get(f"/api/v1/professionals/{body['licence']}", headers=clerk).json()["iban"] == IBAN
        event = self.update_event(session, "registry:professional:update", body["licence"])
        assert (event.before["iban"], event.after["iban"]) == (None, IBAN)

    def test_a_facilitys_rib_is_stored_as_its_iban_and_audited(self, client, session, clerk):
        body = facility_json(kind="private_clinic", sector="private")
        client.post("/api/v1/facilities", json=body, headers=clerk)

        response = client.patch(f"/api/v1/facilities/{body['code']}", json={"iban": RIB.translate(ARABIC_INDIC)},
                                headers=clerk)

        assert response.status_code == 200, response.text
        assert response.json()["iban"] == IBAN
        assert session.scalar(select(Facility.iban).where(Facility.code == body["code"])) == IBAN
        event = self.update_event(session, "registry:facility:update", body["code"])
        assert (event.before["iban"], event.after["iban"]) == (None, IBAN)

    def test_providers_are_registered_with_their_account(self, client, session, clerk):
        doctor, facility = professional_json(iban=RIB), facility_json(iban="tn59 1000 6035 1835 9847 8831")

        created = [client.post("/api/v1/professionals", json=doctor, headers=clerk),
                   client.post("/api/v1/facilities", json=facility, headers=clerk)]

        assert [r.status_code for r in created] == [201, 201], [r.text for r in created]
        assert [r.json()["iban"] for r in created] == [IBAN, IBAN]
        assert session.scalar(select(Professional.iban).where(Professional.licence == doctor["licence"])) == IBAN
        assert session.scalar(select(Facility.iban).where(Facility.code == facility["code"])) == IBAN

    @pytest.mark.parametrize(("bad", "hint"), BAD, ids=["iban-check-digits", "rib-key", "foreign"])
    def test_an_invalid_account_is_refused_and_the_one_on_record_stays(self, client, session, clerk, bad, hint):
        doctor, facility = factories.professional(session), factories.facility(session)
        session.commit()
        before = audit_count(session)

        for path in (f"/api/v1/professionals/{doctor.licence}", f"/api/v1/facilities/{facility.code}"):
            response = client.patch(path, json={"iban": bad, "address": "12 Rue de Rome"}, headers=clerk)

            error = problem(response, 422, "malformed-request")["errors"][0]
            assert error["field"] == "iban"
            assert hint in error["message"]
        assert session.scalar(select(Professional.iban).where(Professional.licence == doctor.licence)) == doctor.iban
        assert session.scalar(select(Facility.iban).where(Facility.code == facility.code)) == facility.iban
        assert session.scalar(select(Facility.address).where(Facility.code == facility.code)) is None
        assert audit_count(session) == before

    def test_a_persons_account_is_set_then_removed_with_null(self, client, session, clerk, member):
        url = f"/api/v1/persons/{member.person_id}"

        set_ = client.patch(url, json={"iban": "TN59 1000 6035 1835 9847 8831"}, headers=clerk)
        stored = session.scalar(select(Person.iban).where(Person.id == member.person_id))
        removed = client.patch(url, json={"iban": None}, headers=clerk)

        assert set_.status_code == 200, set_.text
        assert stored == IBAN and set_.json()["iban"] == "TN59 •••• 8831"  # a registry reader sees it masked
        assert removed.status_code == 200, removed.text
        assert removed.json()["iban"] is None
        assert session.scalar(select(Person.iban).where(Person.id == member.person_id)) is None
        assert client.get(url, headers=clerk).json()["iban"] is None
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "registry:person:update",
                                                          AuditEvent.entity_id == str(member.person_id))
                                 .order_by(AuditEvent.id)).all()
        assert [(e.before["iban"], e.after["iban"]) for e in events] == [(None, IBAN), (IBAN, None)]

    def test_a_person_update_without_iban_keeps_the_account(self, client, session, clerk, member):
        url = f"/api/v1/persons/{member.person_id}"
        client.patch(url, json={"iban": RIB}, headers=clerk)

        response = client.patch(url, json={"address": "3 Rue de Carthage"}, headers=clerk)

        assert response.status_code == 200, response.text
        assert response.json()["iban"] == "TN59 •••• 8831"
        assert session.scalar(select(Person.iban).where(Person.id == member.person_id)) == IBAN

    @pytest.mark.parametrize(("bad", "hint"), BAD, ids=["iban-check-digits", "rib-key", "foreign"])
    def test_an_invalid_person_account_is_refused_and_nothing_changes(self, client, session, clerk, member, bad, hint):
        url = f"/api/v1/persons/{member.person_id}"
        client.patch(url, json={"iban": IBAN}, headers=clerk)
        before = audit_count(session)

        response = client.patch(url, json={"iban": bad}, headers=clerk)

        error = problem(response, 422, "malformed-request")["errors"][0]
        assert error["field"] == "iban" and hint in error["message"]
        assert session.scalar(select(Person.iban).where(Person.id == member.person_id)) == IBAN
        assert audit_count(session) == before


# ---------------------------------------------------------------- the HTTP envelope


class TestEnvelope:
    def test_malformed_json_is_a_problem(self, client, clerk):
        response = client.post("/api/v1/members", content=b'{"person": {', headers={**clerk, "content-type": "application/json"})

        problem(response, 422, "malformed-request")

    def test_unknown_route_is_a_problem(self, client):
        body = problem(client.get("/api/v1/nowhere"), 404, "not-found")

        assert body["instance"] == "/api/v1/nowhere"

    def test_wrong_method_is_a_problem(self, client, clerk):
        problem(client.delete("/api/v1/members", headers=clerk), 405, "method-not-allowed")

    @pytest.mark.parametrize(("method", "path", "authenticated"), [
        ("GET", "/healthz", False),
        ("GET", "/api/v1/persons?q=ben", True),
        ("GET", "/api/v1/persons?q=ben", False),
        ("GET", "/api/v1/nowhere", False),
        ("POST", "/api/v1/members", True),
    ], ids=["200", "200-api", "401", "404", "422"])
    def test_every_response_carries_a_request_id(self, client, clerk, method, path, authenticated):
        headers = clerk if authenticated else {}

        generated = client.request(method, path, headers=headers, json={} if method == "POST" else None)
        echoed = client.request(method, path, headers={**headers, "x-request-id": "centre-sfax-0042"},
                                json={} if method == "POST" else None)

        assert len(generated.headers["x-request-id"]) == 32
        assert echoed.headers["x-request-id"] == "centre-sfax-0042"

    def test_an_unusable_request_id_is_replaced(self, client, session, member, clerk):
        sent = "r" * 65

        response = client.patch(f"/api/v1/members/{member.social_id}", json={"employer": "Tunisair"},
                                headers={**clerk, "x-request-id": sent})

        assert response.status_code == 200, response.text
        used = response.headers["x-request-id"]
        assert used != sent
        assert session.scalar(select(AuditEvent.action).where(AuditEvent.request_id == used)) == "registry:member:update"

    def test_an_unexpected_error_is_a_problem_with_the_request_id(self, app_for, factory):
        app = app_for(factory)

        def fail() -> None:
            raise RuntimeError("disk full")

        app.add_api_route("/boom", fail)
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/boom", headers={"x-request-id": "centre-sfax-0043"})

        body = problem(response, 500, "internal-error")
        assert "disk full" not in response.text
        assert body["request_id"] == response.headers["x-request-id"] == "centre-sfax-0043"


class TestPersonUpdateChecks:
    def test_future_birth_death_before_birth_and_a_members_cin_are_refused(self, client, session):
        token = factories.agent_token(session, "registry_clerk")
        member = factories.member(session)
        session.commit()
        headers = {"Authorization": f"Bearer {token}"}
        url = f"/api/v1/persons/{member.person_id}"
        for body, field in (({"birth_date": "2999-01-01"}, "birth_date"),
                            ({"death_date": "1900-01-01"}, "death_date"),
                            ({"cin": None}, "cin")):
            response = client.patch(url, json=body, headers=headers)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["errors"][0]["field"] == field
        assert client.get(url, headers=headers).json()["cin"] == member_cin(session, member)


def member_cin(session, member):
    from labes.registry.models import Person

    return session.get(Person, member.person_id).cin
