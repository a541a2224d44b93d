"""Card distribution: pick-up points, destinations, batches and manifests, shipment and reception, the delivery
desk (holder and proxy), unclaimed cards, permissions, and the command line."""

from __future__ import annotations

import csv
import logging
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from labes import pdf
from labes.cards import distribution, manifests, points, service
from labes.cards.desk_routes import router as desk_router
from labes.cards.distribution import choose_destination
from labes.cards.models import Batch, Card, PickupPoint, SmsMessage
from labes.cards.serials import display
from labes.errors import InvalidInput, RuleViolation
from labes.registry import service as registry
from labes.registry.bulk import FileError
from labes.registry.schemas import AmenHouseholdCreate
from labes.rules import load_reference
from labes.security import service as security_service
from labes.security.models import AuditEvent
from tests import factories
from tests.factories import ACTOR

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def kas(session) -> dict[str, PickupPoint]:
    """The generated pick-up points of Kasserine, by French name."""
    points.save_points(session, points.generate_points(["KAS"]), actor=ACTOR, source="test")
    return {p.name_fr: p for p in session.scalars(select(PickupPoint).where(PickupPoint.governorate == "KAS"))}


def member(session, delegation="Sbeïtla", **person):
    values = {"governorate": "KAS", "delegation": delegation} | person
    created = factories.member(session, person_overrides=values)
    return created, registry.get_person_or_raise(session, person_id=created.person_id)


def child(session, social_id, **person):
    values = {"governorate": "KAS", "delegation": "Sbeïtla", "phone": None, "first_name_lat": "Salma",
              "first_name_ar": "سلمى"} | person
    return factories.dependant(session, social_id, person=values, today=NOW.date())


def issue(session, authority, *, card_type="labes", **holder):
    found = service.resolve_holder(session, card_type=card_type, **holder)
    pin = "4821" if card_type == "professional" else None
    return service.issue_card(session, actor=ACTOR, authority=authority, holder=found, pin=pin, now=NOW).card


def pro_card(session, authority, doctor):
    """A professional card of a doctor practising in Kasserine."""
    doctor.governorate = "KAS"
    return issue(session, authority, card_type="professional", licence=doctor.licence)


def bare_card(session, person, *, card_type="labes"):
    """A card row without the cryptography (volume tests of batches and manifests)."""
    [serial] = service.allocate_serials(session, card_type=card_type, count=1)
    card = Card(serial=serial, card_type=card_type, holder_person_id=person.id, governorate=person.governorate,
                holder_name=f"{person.first_name_lat} {person.last_name_lat}", state="printed", issued_at=NOW,
                printed_on=NOW.date(), public_key=b"k", certificate=b"c", printed_code="LB1|test")
    session.add(card)
    session.flush()
    return card


def at_point(session, *cards, now=NOW):
    """Pack, ship and receive `cards`; return their batches."""
    run = distribution.build_batches(session, actor=ACTOR, now=now)
    for batch in run.batches:
        distribution.ship_batch(session, actor=ACTOR, number=batch.number, now=now)
        distribution.receive_batch(session, actor=ACTOR, number=batch.number, now=now)
    for card in cards:
        assert card.state == "at_point"
    return run.batches


def events(session, card):
    return [e.event for e in service.history(session, card)]


def sms(session, purpose):
    return list(session.scalars(select(SmsMessage).where(SmsMessage.purpose == purpose).order_by(SmsMessage.id)))


def point(code, kind, delegation=None):
    return PickupPoint(code=code, kind=kind, name_ar="-", name_fr=code, governorate="KAS", delegation=delegation)


# ---------------------------------------------------------------- where a card goes (pure)


class TestDestination:
    POINTS = [point("PKAS11", "post_office", "Sbeïtla"), point("PKAS08", "post_office", "Kasserine Nord"),
              point("CKAS01", "fund_centre", "Kasserine Nord"), point("DKAS01", "health_directorate", "Kasserine Nord"),
              point("MKAS01", "mobile_centre", "Thala")]

    def choose(self, points=None, *, card_type="labes", delegation=None, seat="Kasserine Nord"):
        chosen = choose_destination(card_type=card_type, delegation=delegation, seat=seat,
                                    points=self.POINTS if points is None else points)
        return chosen.code if chosen is not None else None

    def test_a_labes_or_amen_card_goes_to_the_post_office_of_the_holders_delegation(self):
        assert self.choose(delegation="Sbeïtla") == "PKAS11"
        assert self.choose(card_type="amen", delegation="SBEITLA") == "PKAS11"  # spelling-insensitive

    def test_without_a_post_office_in_the_delegation_the_main_post_office(self):
        assert self.choose(delegation="Thala") == "PKAS08"
        assert self.choose(delegation=None) == "PKAS08"

    def test_without_a_main_post_office_the_fund_centre_even_if_other_post_offices_exist(self):
        assert self.choose(delegation="Thala", seat="Fériana") == "CKAS01"
        assert self.choose(delegation="Thala", seat=None) == "CKAS01"

    def test_a_professional_card_goes_to_the_health_directorate_else_the_fund_centre(self):
        assert self.choose(card_type="professional", delegation="Sbeïtla") == "DKAS01"
        assert self.choose([p for p in self.POINTS if p.kind != "health_directorate"], card_type="professional") == "CKAS01"

    def test_a_mobile_centre_never_receives_a_shipment(self):
        assert self.choose([p for p in self.POINTS if p.kind == "mobile_centre"], delegation="Thala") is None
        assert self.choose([], card_type="professional") is None

    def test_among_equals_the_lowest_code_wins_whatever_the_order(self):
        twins = [point("PKAS99", "post_office", "Thala"), point("PKAS12", "post_office", "Thala")]
        assert self.choose(twins, delegation="Thala") == "PKAS12"
        assert self.choose(list(reversed(twins)), delegation="Thala") == "PKAS12"

    def test_destination_for_reads_the_holders_delegation(self, session, authority, kas):
        _, person = member(session, delegation="Thala")
        card = issue(session, authority, cin=person.cin)
        assert distribution.destination_for(session, card) is kas["Bureau de poste Thala"]


# ---------------------------------------------------------------- pick-up points


class TestPoints:
    def test_the_generated_national_set(self):
        rows = points.generate_points()
        governorates = load_reference("governorates")
        assert len({r["code"] for r in rows}) == len(rows)
        for gov in governorates:
            mine = [r for r in rows if r["governorate"] == gov["code"]]
            kinds = [r["kind"] for r in mine]
            assert kinds.count("fund_centre") == kinds.count("health_directorate") == kinds.count("mobile_centre") == 1
            assert kinds.count("post_office") == len(gov["delegations"].split(";"))
            assert sum(r["name_fr"].startswith("Recette principale") for r in mine) == 1
        sbeitla = next(r for r in rows if r["name_fr"] == "Bureau de poste Sbeïtla")
        assert sbeitla["name_ar"] == "مكتب بريد سبيطلة" and sbeitla["delegation"] == "Sbeïtla"
        assert sbeitla["hours_ar"].startswith("الاثنين-الجمعة 8:00-17:00") and sbeitla["hours_fr"].startswith("Lun-Ven 8h-17h")
        assert next(r for r in rows if r["code"] == "DKEF01")["name_fr"] == "Direction régionale de la santé du Kef"
        assert all(points._point_values(r) == r for r in rows)  # the generator passes the importer's checks

    def test_import_upserts_by_code_and_reports_bad_rows(self, session, tmp_path):
        rows = points.generate_points(["TOZ"])
        path = tmp_path / "points.csv"
        points.write_points_csv(rows, path)
        with path.open("a", encoding="utf-8", newline="") as handle:
            bad = csv.writer(handle)
            bad.writerow(["PXXX01", "post_office", "مكتب", "Bureau", "XXX", "", "", "", "", ""])
            bad.writerow(["PTOZ77", "kiosk", "مكتب", "Bureau", "TOZ", "", "", "", "", ""])
            bad.writerow(["PTOZ78", "post_office", "مكتب", "Bureau", "TOZ", "Sbeïtla", "", "", "", ""])
            bad.writerow([rows[0]["code"], "post_office", "مكتب", "Bureau", "TOZ", "", "", "", "", ""])
            bad.writerow(["PTOZ79", "post_office", "", "Bureau", "TOZ", "", "", "", "", ""])
        first = points.import_points(session, path, actor=ACTOR)
        assert (first.rows, first.loaded, first.rejected) == (len(rows) + 5, len(rows), 5)
        assert first.counts == {"created": len(rows), "updated": 0, "unchanged": 0}
        with first.errors_path.open(encoding="utf-8") as handle:
            reported = [(r["field"], r["reason"]) for r in csv.DictReader(handle)]
        assert [field for field, _ in reported] == ["governorate", "kind", "delegation", "code", "name_ar"]
        assert "not a delegation of TOZ" in reported[2][1] and "line 2" in reported[3][1]

        points.write_points_csv([rows[0] | {"hours_fr": "Lun-Sam 8h-13h"}, *rows[1:]], path)
        again = points.import_points(session, path, actor=ACTOR)
        assert again.counts == {"created": 0, "updated": 1, "unchanged": len(rows) - 1} and again.errors_path is None
        assert service.point_by_code(session, rows[0]["code"]).hours_fr == "Lun-Sam 8h-13h"

    def test_a_file_with_the_wrong_header_is_refused_whole(self, session, tmp_path):
        path = tmp_path / "points.csv"
        path.write_text("code,name\nX,Y\n", encoding="utf-8")
        with pytest.raises(FileError, match="missing: kind"):
            points.import_points(session, path)
        assert session.scalar(select(func.count()).select_from(PickupPoint)) == 0

    def test_update_keeps_the_code_and_checks_the_place(self, session, kas):
        updated = points.update_point(session, actor=ACTOR, code="pkas11", changes={"hours_fr": "Lun-Ven 8h-13h"})
        assert updated.hours_fr == "Lun-Ven 8h-13h" and updated.name_fr == "Bureau de poste Sbeïtla"
        with pytest.raises(InvalidInput, match="not a delegation of KAS"):
            points.update_point(session, actor=ACTOR, code="PKAS11", changes={"delegation": "Nefta"})
        with pytest.raises(InvalidInput, match="never changes"):
            points.update_point(session, actor=ACTOR, code="PKAS11", changes={"code": "PKAS99"})


# ---------------------------------------------------------------- batches and manifests


class TestBatches:
    def test_cards_are_grouped_by_destination(self, session, authority, kas, doctor):
        m1, p1 = member(session)
        m2, p2 = member(session, delegation="Thala")
        kid = child(session, m1.social_id)
        cards = [issue(session, authority, cin=p1.cin), issue(session, authority, person_id=kid.person_id),
                 issue(session, authority, cin=p2.cin), pro_card(session, authority, doctor)]
        run = distribution.build_batches(session, actor=ACTOR, now=NOW)
        got = {session.get(PickupPoint, b.point_id).name_fr: sorted(c.serial for c in session.scalars(
            select(Card).where(Card.batch_id == b.id))) for b in run.batches}
        assert got == {"Bureau de poste Sbeïtla": sorted([cards[0].serial, cards[1].serial]),
                       "Bureau de poste Thala": [cards[2].serial],
                       "Direction régionale de la santé de Kasserine": [cards[3].serial]}
        assert sorted(b.number for b in run.batches) == [f"B-KAS-20261123-000{i}" for i in (1, 2, 3)]
        assert all(c.state == "batched" and c.batch_id is not None for c in cards)
        last = service.history(session, cards[0])[-1]
        assert (last.event, last.point_id, last.details) == ("batch", kas["Bureau de poste Sbeïtla"].id,
                                                             {"batch": next(b.number for b in run.batches if b.cards == 2)})
        session.commit()
        assert session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "card:status:batch")) == 4
        assert distribution.build_batches(session, actor=ACTOR, now=NOW).batches == []  # nothing left to pack

    def test_numbers_continue_through_the_day_and_bags_are_split(self, session, kas):
        _, person = member(session)
        for _ in range(5):
            bare_card(session, person)
        assert [b.number for b in distribution.build_batches(session, actor=ACTOR, now=NOW, limit=1).batches] == \
            ["B-KAS-20261123-0001"]
        run = distribution.build_batches(session, actor=ACTOR, now=NOW, max_cards=3)
        assert [(b.number, b.cards) for b in run.batches] == [("B-KAS-20261123-0002", 3), ("B-KAS-20261123-0003", 1)]

    def test_a_governorate_without_points_leaves_its_cards_printed(self, session, kas):
        _, person = member(session, governorate="TOZ", delegation="Nefta")
        card = bare_card(session, person)
        run = distribution.build_batches(session, actor=ACTOR, now=NOW)
        assert run.batches == [] and run.unrouted == {"TOZ": 1} and card.state == "printed"
        with pytest.raises(InvalidInput, match="governorate"):
            distribution.build_batches(session, actor=ACTOR, governorate="XYZ", now=NOW)

    def test_the_manifest_lists_every_card(self, session, authority, kas, tmp_path):
        m1, p1 = member(session, first_name_ar="هند", last_name_ar="الجزيري")
        kid = child(session, m1.social_id)
        cards = [issue(session, authority, cin=p1.cin), issue(session, authority, person_id=kid.person_id)]
        [batch] = distribution.build_batches(session, actor=ACTOR, now=NOW).batches
        csv_path, pdf_path = manifests.write_manifest(session, batch, tmp_path)
        with csv_path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert rows == [{"serial": display(c.serial), "holder_name": c.holder_name, "card_type": "labes",
                         "governorate": "KAS"} for c in sorted(cards, key=lambda c: c.serial)]
        pdf = pdf_path.read_bytes()
        assert pdf.startswith(b"%PDF") and pdf_page_count(pdf) == 1 == len(manifests.page_rows(2))
        assert b"DejaVu" in pdf  # the font with Arabic glyphs is embedded

    def test_a_long_manifest_runs_over_pages(self, session, kas, tmp_path):
        _, person = member(session)
        for _ in range(30):
            bare_card(session, person)
        [batch] = distribution.build_batches(session, actor=ACTOR, now=NOW).batches
        _, pdf_path = manifests.write_manifest(session, batch, tmp_path)
        assert pdf_page_count(pdf_path.read_bytes()) == 2 == len(manifests.page_rows(30))

    def test_without_the_font_the_manifest_is_latin_only_and_says_so(self, session, kas, tmp_path, monkeypatch, caplog):
        _, person = member(session)
        bare_card(session, person)
        [batch] = distribution.build_batches(session, actor=ACTOR, now=NOW).batches
        monkeypatch.setenv("LABES_PDF_FONT", str(tmp_path / "missing.ttf"))
        pdf.fonts.cache_clear()
        try:
            with caplog.at_level(logging.WARNING, logger="labes.pdf"):
                _, pdf_path = manifests.write_manifest(session, batch, tmp_path)
        finally:
            pdf.fonts.cache_clear()
        assert pdf_path.read_bytes().startswith(b"%PDF") and b"DejaVu" not in pdf_path.read_bytes()
        assert "Latin script only" in caplog.text

    @pytest.mark.parametrize(("cards", "pages"), [(1, [1]), (16, [16]), (17, [17, 0]), (26, [26, 0]),
                                                  (27, [26, 1]), (54, [26, 28]), (55, [26, 29, 0])])
    def test_pagination_leaves_room_for_the_signature_box(self, cards, pages):
        assert manifests.page_rows(cards) == pages


def pdf_page_count(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf))


# ---------------------------------------------------------------- shipment and reception


class TestShipAndReceive:
    def test_a_batch_travels_and_every_holder_is_told_in_their_language(self, session, authority, kas):
        m1, p1 = member(session, phone="+21698000001", language="ar")
        m2, p2 = member(session, phone="+21698000002", language="fr")
        kid = child(session, m2.social_id, first_name_lat="Youssef", first_name_ar="يوسف")
        cards = [issue(session, authority, cin=p1.cin), issue(session, authority, cin=p2.cin),
                 issue(session, authority, person_id=kid.person_id)]
        [batch] = distribution.build_batches(session, actor=ACTOR, now=NOW).batches
        with pytest.raises(RuleViolation, match="not been shipped"):
            distribution.receive_batch(session, actor=ACTOR, number=batch.number, now=NOW)
        assert {c.state for c in cards} == {"batched"} and sms(session, "card_ready") == []

        distribution.ship_batch(session, actor=ACTOR, number=batch.number, now=NOW)
        assert batch.state == "shipped" and {c.state for c in cards} == {"shipped"}
        with pytest.raises(RuleViolation, match="already shipped"):
            distribution.ship_batch(session, actor=ACTOR, number=batch.number, now=NOW)
        with pytest.raises(RuleViolation, match="addressed to Bureau de poste Sbeïtla"):
            distribution.receive_batch(session, actor=ACTOR, number=batch.number, point_code="PKAS13", now=NOW)

        distribution.receive_batch(session, actor=ACTOR, number=batch.number, point_code="pkas11", now=NOW + DAY)
        assert batch.state == "received" and {c.state for c in cards} == {"at_point"}
        assert events(session, cards[0]) == ["issue", "batch", "ship", "receive"]
        texts = {m.number: m.text for m in sms(session, "card_ready")}
        assert len(sms(session, "card_ready")) == 3
        arabic, french = texts["+21698000001"], [m.text for m in sms(session, "card_ready") if m.number == "+21698000002"]
        assert "بطاقة لاباس الخاصة بك جاهزة" in arabic and "مكتب بريد سبيطلة" in arabic and "الاثنين-الجمعة" in arabic
        assert any(t.startswith("CNAM: Votre carte Labes est prête. Retrait: Bureau de poste Sbeïtla, Avenue") and
                   "Lun-Ven 8h-17h" in t for t in french)
        assert any("La carte Labes de Youssef" in t for t in french)  # the child has no phone: the member is told
        with pytest.raises(RuleViolation, match="already received"):
            distribution.receive_batch(session, actor=ACTOR, number=batch.number, now=NOW)

    def test_a_card_blocked_in_the_bag_stays_blocked(self, session, authority, kas):
        _, p1 = member(session)
        _, p2 = member(session)
        keep, lost = issue(session, authority, cin=p1.cin), issue(session, authority, cin=p2.cin)
        [batch] = distribution.build_batches(session, actor=ACTOR, now=NOW).batches
        service.block(session, actor=ACTOR, serial=lost.serial, reason="lost", now=NOW)
        distribution.ship_batch(session, actor=ACTOR, number=batch.number, now=NOW)
        distribution.receive_batch(session, actor=ACTOR, number=batch.number, now=NOW)
        assert (keep.state, lost.state, batch.cards) == ("at_point", "blocked", 1)
        assert len(sms(session, "card_ready")) == 1

    def test_a_professional_card_reaches_the_directorate_without_an_sms(self, session, authority, kas, doctor):
        card = pro_card(session, authority, doctor)
        at_point(session, card)
        assert card.point_id == kas["Direction régionale de la santé de Kasserine"].id
        assert sms(session, "card_ready") == []


# ---------------------------------------------------------------- the delivery desk


DESK_FIELDS = {"serial", "serial_display", "card_type", "state", "first_name", "last_name", "name_ar", "cin_last3",
               "waiting_since", "collect_as"}


@pytest.fixture
def family_at_sbeitla(session, authority, kas):
    """A member and their child, both cards waiting at the Sbeïtla post office."""
    m, person = member(session, first_name_lat="Hedi", last_name_lat="Jaziri")
    kid = child(session, m.social_id, last_name_lat="Jaziri")
    cards = issue(session, authority, cin=person.cin), issue(session, authority, person_id=kid.person_id)
    at_point(session, *cards)
    return person, cards


class TestDesk:
    def test_find_by_serial_or_by_the_parents_cin(self, session, family_at_sbeitla):
        parent, (own, kids) = family_at_sbeitla
        [found] = distribution.find_at_point(session, point_code="PKAS11", serial=display(own.serial))
        assert set(found) == DESK_FIELDS
        assert (found["first_name"], found["last_name"], found["cin_last3"]) == ("Hedi", "Jaziri", parent.cin[-3:])
        assert found["waiting_since"] == date(2026, 11, 23)
        by_cin = distribution.find_at_point(session, point_code="PKAS11", cin=parent.cin)
        assert [(c["serial"], c["collect_as"]) for c in by_cin] == sorted([(own.serial, "holder"), (kids.serial, "proxy")])
        assert next(c for c in by_cin if c["serial"] == kids.serial)["cin_last3"] is None
        assert distribution.find_at_point(session, point_code="PKAS13", serial=own.serial) == []
        assert distribution.find_at_point(session, point_code="PKAS11", cin=factories.cin()) == []
        with pytest.raises(InvalidInput, match="either"):
            distribution.find_at_point(session, point_code="PKAS11")

    def test_the_holder_collects_their_card_against_their_cin(self, session, family_at_sbeitla):
        parent, (own, _) = family_at_sbeitla
        delivered = distribution.deliver(session, actor=ACTOR, serial=own.serial, point_code="PKAS11",
                                         presented_cin=parent.cin, to="holder", now=NOW + 2 * DAY)
        assert (delivered.state, delivered.delivered_on) == ("delivered", date(2026, 11, 25))
        last = service.history(session, own)[-1]
        assert (last.event, last.actor, last.point_id, last.details) == (
            "deliver", ACTOR.label, own.point_id, {"to": "holder", "point": "PKAS11"})
        with pytest.raises(RuleViolation, match="handed to its holder"):
            distribution.deliver(session, actor=ACTOR, serial=own.serial, point_code="PKAS11",
                                 presented_cin=parent.cin, to="holder")

    def test_a_wrong_cin_or_the_wrong_point_is_refused_and_nothing_changes(self, session, family_at_sbeitla):
        parent, (own, _) = family_at_sbeitla
        with pytest.raises(RuleViolation, match="not the holder's"):
            distribution.deliver(session, actor=ACTOR, serial=own.serial, point_code="PKAS11",
                                 presented_cin=factories.cin(), to="holder")
        with pytest.raises(RuleViolation, match="not waiting at Bureau de poste Thala"):
            distribution.deliver(session, actor=ACTOR, serial=own.serial, point_code="PKAS13",
                                 presented_cin=parent.cin, to="holder")
        with pytest.raises(InvalidInput, match="8 digits"):
            distribution.deliver(session, actor=ACTOR, serial=own.serial, point_code="PKAS11", presented_cin="12",
                                 to="holder")
        assert own.state == "at_point" and own.delivered_on is None
        assert "deliver" not in events(session, own)

    def test_the_member_collects_a_childs_card_as_proxy(self, session, family_at_sbeitla):
        parent, (_, kids) = family_at_sbeitla
        with pytest.raises(RuleViolation, match="no national ID on record"):
            distribution.deliver(session, actor=ACTOR, serial=kids.serial, point_code="PKAS11",
                                 presented_cin=parent.cin, to="holder")
        with pytest.raises(InvalidInput, match="proxy's full name"):
            distribution.deliver(session, actor=ACTOR, serial=kids.serial, point_code="PKAS11",
                                 presented_cin=parent.cin, to="proxy")
        distribution.deliver(session, actor=ACTOR, serial=kids.serial, point_code="PKAS11", presented_cin=parent.cin,
                             to="proxy", proxy_name="Hedi Jaziri")
        assert kids.state == "delivered"
        assert service.history(session, kids)[-1].details == {"to": "proxy", "proxy_name": "Hedi Jaziri",
                                                             "proxy_cin": parent.cin, "point": "PKAS11"}

    def test_nobody_else_is_a_proxy(self, session, authority, family_at_sbeitla, doctor):
        parent, (own, kids) = family_at_sbeitla
        _, stranger = member(session)
        with pytest.raises(RuleViolation, match="insured member of the holder's family"):
            distribution.deliver(session, actor=ACTOR, serial=kids.serial, point_code="PKAS11",
                                 presented_cin=stranger.cin, to="proxy", proxy_name="Someone Else")
        # The member is nobody's dependant: no one collects their card for them, not even themself "as proxy".
        with pytest.raises(RuleViolation, match="not a dependant"):
            distribution.deliver(session, actor=ACTOR, serial=own.serial, point_code="PKAS11",
                                 presented_cin=parent.cin, to="proxy", proxy_name="Hedi Jaziri")
        pro = pro_card(session, authority, doctor)
        at_point(session, pro)
        with pytest.raises(RuleViolation, match="professional, in person"):
            distribution.deliver(session, actor=ACTOR, serial=pro.serial, point_code="DKAS01",
                                 presented_cin=parent.cin, to="proxy", proxy_name="Hedi Jaziri")
        distribution.deliver(session, actor=ACTOR, serial=pro.serial, point_code="DKAS01", presented_cin="05123456",
                             to="holder")
        assert (own.state, kids.state, pro.state) == ("at_point", "at_point", "delivered")

    def test_the_amen_head_collects_for_the_household(self, session, authority, kas):
        _, head = member(session)
        _, other = member(session)
        registry.create_amen_household(session, actor=ACTOR, data=AmenHouseholdCreate(
            number=f"A{head.cin}", level="free", valid_from=date(2024, 1, 1), governorate="KAS",
            member_cins=[head.cin, other.cin]))
        card = issue(session, authority, card_type="amen", cin=other.cin)
        at_point(session, card)
        with pytest.raises(RuleViolation, match="head of the holder's Amen household"):
            distribution.deliver(session, actor=ACTOR, serial=card.serial, point_code="PKAS11",
                                 presented_cin=other.cin, to="proxy", proxy_name="Self")
        assert [c["collect_as"] for c in distribution.find_at_point(session, point_code="PKAS11", cin=head.cin)] == ["proxy"]
        distribution.deliver(session, actor=ACTOR, serial=card.serial, point_code="PKAS11", presented_cin=head.cin,
                             to="proxy", proxy_name="Head of household")
        assert card.state == "delivered"

    def test_awaiting_pickup_is_paginated(self, session, family_at_sbeitla):
        first, more = distribution.awaiting_pickup(session, point_code="PKAS11", page_size=1)
        second, after = distribution.awaiting_pickup(session, point_code="PKAS11", page=2, page_size=1)
        assert (len(first), more, len(second), after) == (1, True, 1, False)
        assert first[0]["serial"] < second[0]["serial"]


# ---------------------------------------------------------------- unclaimed cards


class TestUnclaimed:
    def test_a_card_waiting_longer_than_the_limit_goes_back_and_out_again(self, session, family_at_sbeitla):
        _, (own, kids) = family_at_sbeitla
        assert distribution.return_overdue(session, actor=ACTOR, now=NOW + 90 * DAY, days=90) == []
        returned = distribution.return_overdue(session, actor=ACTOR, now=NOW + 90 * DAY + timedelta(minutes=1), days=90)
        assert sorted(returned) == sorted([own.serial, kids.serial]) and own.state == "returned"
        assert events(session, own)[-1] == "return_undelivered"
        [batch] = distribution.build_batches(session, actor=ACTOR, now=NOW + 91 * DAY).batches
        assert batch.number == "B-KAS-20270222-0001" and own.state == "batched"

    def test_the_default_limit_comes_from_the_environment(self, session, family_at_sbeitla, monkeypatch, request):
        from labes.config import get_settings

        monkeypatch.setenv("LABES_CARD_RETURN_DAYS", "10")
        get_settings.cache_clear()  # settings are read once per process
        request.addfinalizer(get_settings.cache_clear)
        assert distribution.return_overdue(session, actor=ACTOR, now=NOW + 9 * DAY) == []
        assert len(distribution.return_overdue(session, actor=ACTOR, now=NOW + 11 * DAY)) == 2

    def test_one_reminder_per_card_before_the_return(self, session, family_at_sbeitla):
        parent, (own, kids) = family_at_sbeitla
        assert distribution.remind_before_return(session, now=NOW + 74 * DAY, days=90).sent == 0
        run = distribution.remind_before_return(session, now=NOW + 76 * DAY, days=90)
        assert (run.sent, run.no_phone) == (2, 0)  # the child's reminder goes to the member's phone
        assert distribution.remind_before_return(session, now=NOW + 80 * DAY, days=90).sent == 0
        reminders = sms(session, "card_reminder")
        assert len(reminders) == 2 and {m.number for m in reminders} == {parent.phone}
        assert all("21/02/2027" in m.text and "مكتب بريد سبيطلة" in m.text for m in reminders)
        assert events(session, own)[-1] == "remind_pickup" and own.state == "at_point"
        # Returned and received again, the card is a new stay at the point: one new reminder.
        distribution.return_overdue(session, actor=ACTOR, now=NOW + 91 * DAY, days=90)
        later = NOW + 92 * DAY
        at_point(session, own, kids, now=later)
        assert distribution.remind_before_return(session, now=later + 76 * DAY, days=90).sent == 2
        assert distribution.remind_before_return(session, now=later + 77 * DAY, days=90).sent == 0


# ---------------------------------------------------------------- HTTP and permissions


@pytest.fixture
def api(app_for, factory, monkeypatch):
    """The API with the distribution routes (included here until app.py wires them)."""
    monkeypatch.setattr(security_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    app = app_for(factory)
    if not any(getattr(r, "path", "").startswith("/api/v1/desk/") for r in app.routes):
        app.include_router(desk_router)
    with TestClient(app) as client:
        yield client


def bearer(session, role):
    token = factories.agent_token(session, role)
    session.commit()
    return {"Authorization": f"Bearer {token}"}


class TestRoutes:
    def test_the_clerk_works_the_desk_and_sees_no_family(self, api, session, family_at_sbeitla):
        parent, (own, kids) = family_at_sbeitla
        session.commit()
        clerk = bearer(session, "post_office_clerk")

        found = api.get("/api/v1/desk/points/PKAS11/cards", params={"cin": parent.cin}, headers=clerk)
        assert found.status_code == 200, found.text
        assert [set(c) for c in found.json()] == [DESK_FIELDS, DESK_FIELDS]
        assert parent.cin not in found.text and "birth" not in found.text and "phone" not in found.text
        page = api.get("/api/v1/desk/points/PKAS11/awaiting", params={"page_size": 1}, headers=clerk).json()
        assert len(page["items"]) == 1 and page["has_more"] is True

        wrong = api.post(f"/api/v1/desk/cards/{own.serial}/deliver", headers=clerk,
                         json={"point": "PKAS11", "presented_cin": factories.cin(), "to": "holder"})
        assert wrong.status_code == 422 and wrong.json()["type"].endswith("/rule-violation")
        done = api.post(f"/api/v1/desk/cards/{own.serial}/deliver", headers=clerk,
                        json={"point": "PKAS11", "presented_cin": parent.cin, "to": "holder"})
        assert done.status_code == 200 and done.json()["state"] == "delivered"
        assert service.history(session, own)[-1].actor.startswith("agent:")

        for path in (f"/api/v1/families/{parent.cin}", f"/api/v1/cards/{own.serial}", "/api/v1/pickup-points"):
            refused = api.get(path, headers=clerk)
            assert refused.status_code == 403, path

    def test_the_clerk_receives_a_shipment_at_their_point(self, api, session, authority, kas):
        _, person = member(session)
        card = issue(session, authority, cin=person.cin)
        [batch] = distribution.build_batches(session, actor=ACTOR, now=NOW).batches
        distribution.ship_batch(session, actor=ACTOR, number=batch.number, now=NOW)
        session.commit()
        clerk = bearer(session, "post_office_clerk")
        elsewhere = api.post(f"/api/v1/desk/batches/{batch.number}/receive", json={"point": "PKAS13"}, headers=clerk)
        assert elsewhere.status_code == 422
        received = api.post(f"/api/v1/desk/batches/{batch.number}/receive", json={"point": "PKAS11"}, headers=clerk)
        assert received.status_code == 200 and received.json()["state"] == "received"
        session.refresh(card)
        assert card.state == "at_point"

    @pytest.mark.parametrize("role", ["registry_clerk", "reviewer", "admin", "finance"])
    def test_only_the_desk_role_uses_the_desk(self, api, session, role):
        # Separation of duties: who issues and packs cards (registry_clerk) never marks them handed over.
        headers = bearer(session, role)
        response = api.get("/api/v1/desk/points/PKAS11/awaiting", headers=headers)
        assert response.status_code == 403 and "desk:deliver" in response.json()["detail"]
        deliver = api.post("/api/v1/desk/cards/100000000016/deliver", headers=headers,
                           json={"point": "PKAS11", "presented_cin": "12345678", "to": "holder"})
        assert deliver.status_code == 403

    def test_pickup_points_over_http(self, api, session, kas):
        clerk, desk = bearer(session, "registry_clerk"), bearer(session, "post_office_clerk")
        listed = api.get("/api/v1/pickup-points", params={"governorate": "kas", "kind": "post_office"}, headers=clerk)
        assert listed.status_code == 200 and len(listed.json()["items"]) == 13
        body = {"code": "MKAS02", "kind": "mobile_centre", "name_ar": "المركز المتنقل بتالة", "name_fr": "Centre mobile Thala",
                "governorate": "KAS", "delegation": "thala"}
        assert api.post("/api/v1/pickup-points", json=body, headers=desk).status_code == 403
        created = api.post("/api/v1/pickup-points", json=body, headers=clerk)
        assert created.status_code == 201 and created.json()["delegation"] == "Thala"
        assert api.post("/api/v1/pickup-points", json=body, headers=clerk).status_code == 409
        patched = api.patch("/api/v1/pickup-points/MKAS02", json={"hours_fr": "Mardi 9h-12h"}, headers=clerk)
        assert patched.status_code == 200 and patched.json()["hours_fr"] == "Mardi 9h-12h"
        assert api.patch("/api/v1/pickup-points/MKAS02", json={"hours_fr": "x"}, headers=desk).status_code == 403


# ---------------------------------------------------------------- command line


def test_the_command_line_runs_a_shipment_end_to_end(committed, authority, monkeypatch, tmp_path):
    from labes import db
    from labes.cards.distribution_cli import app

    monkeypatch.setattr(db, "get_sessionmaker", lambda: committed)
    runner = CliRunner()
    generated = runner.invoke(app, ["points", "generate", "--governorate", "KAS"])
    assert generated.exit_code == 0 and "16 created" in generated.output, generated.output
    assert "16 unchanged" in runner.invoke(app, ["points", "generate", "--governorate", "KAS"]).output
    with committed() as session:
        _, person = member(session)
        serial = issue(session, authority, cin=person.cin).serial
        session.commit()

    packed = runner.invoke(app, ["batch", "--governorate", "KAS", "--out", str(tmp_path)])
    assert packed.exit_code == 0, packed.output
    [number] = re.findall(r"B-KAS-\d{8}-\d{4}", packed.output)[:1]
    assert (tmp_path / f"{number}.pdf").is_file() and (tmp_path / f"{number}.csv").is_file()
    assert runner.invoke(app, ["receive", number]).exit_code == 1  # not shipped yet
    assert runner.invoke(app, ["ship", number]).exit_code == 0
    assert "1 cards waiting" in runner.invoke(app, ["receive", number, "--point", "PKAS11"]).output
    returned = runner.invoke(app, ["return-overdue", "--days", "0"])
    assert returned.exit_code == 0 and returned.output.startswith("1 cards returned")
    missing = runner.invoke(app, ["ship", "B-KAS-19990101-0001"])
    assert missing.exit_code == 1 and "No shipment" in missing.output
    with committed() as session:
        assert session.scalar(select(Card.state).where(Card.serial == serial)) == "returned"
        assert session.scalar(select(func.count()).select_from(Batch)) == 1
